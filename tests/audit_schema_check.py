"""Every audit record the test suite writes must match ``aip/shared/audit/schema.json``.

A pytest plugin (registered in tests/conftest.py): at session end it finds every audit log
under the session's base temp dir (files whose first line is a ``genesis`` record, rotated
files included) and validates each line; tests can also call ``assert_valid_log`` directly.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

import aip.shared.audit.record

SCHEMA_PATH = Path(aip.shared.audit.record.__file__).with_name("schema.json")
_checked: set[Path] = set()
_late_errors: list[str] = []  # from check_later(): reported at the end of the session


@functools.cache
def validator() -> jsonschema.Draft202012Validator:
    schema = orjson.loads(SCHEMA_PATH.read_bytes())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def record_errors(record: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<record>'}: {e.message}"
        for e in validator().iter_errors(record)
    ]


def log_errors(path: Path) -> list[str]:
    """Schema errors of every complete line (a torn last line is the writer's to repair)."""
    errors: list[str] = []
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.endswith(b"\n"):
                break
            try:
                record = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                errors.append(f"{path}:{lineno}: not JSON: {exc}")
                continue
            errors.extend(f"{path}:{lineno}: {err}" for err in record_errors(record))
    _checked.add(path.resolve())
    return errors


def assert_valid_log(path: Path) -> int:
    """Validate every line of one log file; the number of records."""
    errors = log_errors(path)
    assert not errors, "\n".join(errors[:20])
    with path.open("rb") as lines:
        return sum(1 for _ in lines)


def check_later(log: Path) -> None:
    """For fixtures whose logs live outside the session's temp dir (and are deleted with
    it): validate the log and its rotated files now, report at the end of the session."""
    if not log.is_file():
        return
    for path in [*sorted(log.parent.glob(log.name + ".[0-9]*")), log]:
        if path.resolve() not in _checked and is_audit_log(path):
            _late_errors.extend(log_errors(path))


def is_audit_log(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            first = fh.readline(65536)
        record = orjson.loads(first)
    except (OSError, orjson.JSONDecodeError):
        return False
    return isinstance(record, dict) and record.get("event") == "genesis" and "chain_id" in record


def find_logs(root: Path) -> Iterator[Path]:
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and is_audit_log(path):
            yield path


@pytest.fixture(scope="session")
def audit_schema() -> jsonschema.Draft202012Validator:
    """The schema validator (session scoped); also proves the schema itself is valid."""
    return validator()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Check the logs under this process's base temp dir. Under pytest-xdist each worker
    checks its own (its base temp dir is a folder of the controller's) and hands its count
    and errors to the controller (``workeroutput``), which reports them and fails the run:
    a worker's own exit status does not reach the controller."""
    config = session.config
    workers = getattr(config, "_aip_audit_from_workers", None)
    if workers is not None:  # the xdist controller: the workers checked every log
        count, errors = workers
    else:
        count, errors = _check_own_logs(config)
    output = getattr(config, "workeroutput", None)
    if output is not None:  # an xdist worker: the controller reports
        output["aip_audit_schema"] = (count, errors[:50])
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and count:
        reporter.ensure_newline()
        reporter.write_line(f"audit schema: {count} audit log file(s) checked")
    if errors:
        if reporter is not None:
            reporter.write_line("audit schema violations:\n" + "\n".join(errors[:50]), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _check_own_logs(config: pytest.Config) -> tuple[int, list[str]]:
    factory = getattr(config, "_tmp_path_factory", None)
    errors: list[str] = list(_late_errors)
    count = len(_checked)
    if factory is None:
        return count, errors
    try:
        base = factory.getbasetemp()
    except (OSError, ValueError):
        return count, errors
    for path in find_logs(base):
        if path.resolve() not in _checked:
            count += 1
            errors.extend(log_errors(path))
    return count, errors


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist (controller): a worker finished; add its audit-schema results."""
    config = node.config
    count, errors = getattr(config, "_aip_audit_from_workers", (0, []))
    got = getattr(node, "workeroutput", {}).get("aip_audit_schema", (0, []))
    config._aip_audit_from_workers = (count + got[0], [*errors, *got[1]])
