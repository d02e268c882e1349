"""aip.shared.logs: the lines aip-proxy writes itself (``direct``) are the lines logging's
handler writes in the approver, byte for byte; levels, redaction, the tag and the pid stand-in
act on both; a broken stream or redactor never raises into the caller; a direct process never
loads ``logging`` (issue 16: its import was ~6-8 ms of every proxy start)."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from aip.shared import logs, own_pid
from tests.support.freshpy import python_c

NOW = 1_764_900_000.0625  # a fixed clock: both ways stamp the same millisecond


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("AIP_LOG_LEVEL", raising=False)
    monkeypatch.setattr("time.time", lambda: NOW)
    logs.reset()
    yield
    logs.reset()
    own_pid._stand_in = None


def _say(log: logs.Logger) -> None:
    """Every kind of call the modules make."""
    log.info("plain")
    log.warning("id=%r tool=%s", "a'b", "echo")
    log.error("%(who)s said %(what)s", {"who": "server", "what": "no"})
    log.debug("traced %d", 3)
    log.info("100% literal, no args")
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        log.exception("failed on %s", "x")
    log.exception("outside an except")  # noqa: LOG004  (logging prints "NoneType: None")


def _lines(direct: bool, **kw: object) -> str:
    out = io.StringIO()
    logs.configure("aip-proxy", tag="srv", stream=out, direct=direct, **kw)  # type: ignore[arg-type]
    _say(logs.get("aip.proxy.thing"))
    return out.getvalue()


@pytest.mark.parametrize("verbose", [False, True])
def test_direct_lines_are_the_logging_handlers_lines(verbose: bool) -> None:
    direct = _lines(True, verbose=verbose)
    through_logging = _lines(False, verbose=verbose)
    assert direct == through_logging
    assert f'aip-proxy[{os.getpid()}] srv: WARNING aip.proxy.thing: id="a\'b" tool=echo' in direct
    assert "ERROR aip.proxy.thing: server said no\n" in direct
    assert "100% literal, no args" in direct
    assert 'raise ValueError("bad\\nvalue")\nValueError: bad\nvalue\n' in direct
    assert "ERROR aip.proxy.thing: outside an except\nNoneType: None\n" in direct
    assert ("traced 3" in direct) is verbose


@pytest.mark.parametrize("name", ["ERROR", "warning", "DEBUG", "Info"])
def test_the_level_from_the_environment(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv("AIP_LOG_LEVEL", name)
    floor = logs.LEVELS[name.upper()]
    for direct in (True, False):
        text = _lines(direct)
        for level, value in logs.LEVELS.items():
            if level in ("DEBUG", "INFO", "WARNING", "ERROR"):
                assert (f" {level} aip.proxy.thing" in text) is (value >= floor), (direct, level)


def test_notset_and_unknown_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIP_LOG_LEVEL", "NOTSET")  # the root's WARNING, as logging would
    assert logs.level_for(verbose=True) == logs.WARNING
    assert _lines(True) == _lines(False)
    monkeypatch.setenv("AIP_LOG_LEVEL", "chatty")
    assert logs.level_for(verbose=False) == logs.INFO
    assert logs.level_for(verbose=True) == logs.DEBUG


@pytest.mark.parametrize("direct", [True, False])
def test_redactor_tag_and_the_launchers_pid(direct: bool) -> None:
    out = io.StringIO()
    logs.configure("aip-proxy", tag="one", stream=out, direct=direct)
    log = logs.get("aip.proxy.runner")
    logs.set_redactor(lambda text: text.replace("sk-secret", "[REDACTED:key]"))
    logs.set_tag("two")
    own_pid.stand_in_for(4242)
    log.info("token sk-secret seen")
    logs.set_tag("")
    log.info("untagged")
    assert (
        out.getvalue()
        .splitlines()[0]
        .endswith("aip-proxy[4242] two: INFO aip.proxy.runner: token [REDACTED:key] seen")
    )
    assert "aip-proxy[4242] INFO aip.proxy.runner: untagged" in out.getvalue()


@pytest.mark.parametrize("direct", [True, False])
def test_a_redactor_that_fails_withholds_the_line(direct: bool) -> None:
    def broken(text: str) -> str:
        raise RuntimeError("scanner gone")

    out = io.StringIO()
    logs.configure("aip-proxy", stream=out, direct=direct)
    logs.set_redactor(broken)
    logs.get("aip.x").warning("secret %s", "sk-secret")
    assert out.getvalue() == "WARNING aip.x: [log line withheld: DLP scan failed]\n"


def test_a_broken_stream_or_message_never_raises(capsys: pytest.CaptureFixture[str]) -> None:
    class Gone(io.StringIO):
        def write(self, s: str) -> int:
            raise BrokenPipeError("reader left")

    logs.configure("aip-proxy", stream=Gone(), direct=True)
    log = logs.get("aip.proxy.stdio")
    log.warning("lost")
    out = io.StringIO()
    logs.configure("aip-proxy", stream=out, direct=True)
    log.warning("%d calls", "not a number")  # a format error, as logging's handleError
    log.info("after")
    assert capsys.readouterr().err.count("--- Logging error in aip.proxy.stdio ---") == 2
    assert out.getvalue().endswith("INFO aip.proxy.stdio: after\n")


@pytest.mark.parametrize("direct", [True, False])
def test_a_log_file_is_appended_to(tmp_path: Path, direct: bool) -> None:
    path = tmp_path / "aip.log"
    path.write_text("earlier\n")
    logs.configure("approver", path=str(path), direct=direct)
    logs.get("aip.approver.x").info("first")
    logs.reset()  # closes what it opened
    logs.get("aip.approver.x").info("not written: no sink, no handler")
    text = path.read_text()
    assert text.startswith("earlier\n")
    assert text.endswith(f"approver[{os.getpid()}] INFO aip.approver.x: first\n")
    assert "not written" not in text


def test_without_configure_calls_reach_logging(caplog: pytest.LogCaptureFixture) -> None:
    """Tests, aipctl and the approver before its configure: logging's own machinery."""
    with caplog.at_level(logging.INFO, logger="aip"):
        logs.get("aip.shared.audit.spool").warning("cannot spool %d record(s)", 2)
    assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records] == [
        ("aip.shared.audit.spool", "WARNING", "cannot spool 2 record(s)")
    ]
    assert logs.get("aip.x").isEnabledFor(logs.INFO)


def test_enabled_for_follows_the_direct_level() -> None:
    logs.configure("aip-proxy", stream=io.StringIO(), direct=True)
    log = logs.get("aip.proxy.relay.upstream")
    assert log.isEnabledFor(logs.INFO)
    assert not log.isEnabledFor(logs.DEBUG)
    logs.configure("aip-proxy", stream=io.StringIO(), verbose=True, direct=True)
    assert log.isEnabledFor(logs.DEBUG)


def test_a_direct_process_never_loads_logging() -> None:
    code = (
        "import sys; from aip.shared import logs;"
        "logs.configure('aip-proxy', tag='t', direct=True);"
        "log = logs.get('aip.proxy.x'); log.info('hello %s', 'there');"
        "exec('try:\\n 1/0\\nexcept ZeroDivisionError:\\n log.exception(\"boom\")');"
        "logs.flush(); print('logging' in sys.modules)"
    )
    assert python_c(code) == "False"
