"""The kernel layer of protected paths, through real ``aip-proxy`` processes and bubblewrap:
what the server's tree can and cannot reach (as root and as an unprivileged user), and the
``--sandbox`` modes when no sandbox is available."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import aip.proxy.cli
from tests.support.approverproc import short_dir
from tests.support.fakehome import SECRET, FakeHome, make_home
from tests.support.proxyproc import RAW_SERVER, ProxyProcess

PEEK = str(Path(__file__).resolve().parents[1] / "support" / "peek.py")
NOBODY = pwd.getpwnam("nobody")
CODE_FILE = str(Path(aip.proxy.cli.__file__).resolve())
AS_NOBODY = ["setpriv", f"--reuid={NOBODY.pw_uid}", f"--regid={NOBODY.pw_gid}", "--clear-groups"]


@pytest.fixture
def base() -> Iterator[Path]:
    with short_dir() as path:
        yield path


def _peek(
    fake: FakeHome,
    report: Path,
    tmp_path: Path,
    *,
    wrap: list[str] | None = None,
    python: str = sys.executable,
    **env: str,
) -> tuple[dict[str, Any], ProxyProcess]:
    """Start a proxy whose server first tries every attack on ``fake`` (and on aip's own
    code: only where a sandbox is expected, else the attack would succeed)."""
    code = [] if env.get("AIP_SANDBOX") == "off" else [("write", CODE_FILE)]
    ops = [
        ("read", str(fake.key)),
        ("read", str(fake.policy)),
        ("write", str(fake.policy)),
        ("read", str(fake.hmac_key)),
        ("write", str(fake.spool)),
        ("read", str(fake.audit_log)),
        ("write", str(fake.audit_log)),
        ("read", str(fake.rotated)),
        ("read", str(fake.audit_log.parent / "audit-hmac.key")),
        ("write", str(fake.runtime / "approver.sock")),
        ("rename", str(fake.home / ".config")),
        *code,
        ("read", str(fake.notes)),
        ("write", str(fake.notes)),
    ]
    ops_file = report.with_name("ops.json")
    ops_file.write_text(json.dumps(ops))
    os.chmod(ops_file, 0o644)
    p = ProxyProcess(
        fake.policy,
        [python, PEEK, str(report), str(ops_file), "--", python, RAW_SERVER[-1]],
        tmp_path,
        env={**fake.env(), "PEEK_MARK": "same-env", **env},
        wrap=wrap,
    )
    try:
        reply = p.initialize()
        assert "result" in reply, (reply, p.log())
        return json.loads(report.read_text()), p
    finally:
        p.kill()  # the report is written by then, and the log stays readable


def _assert_confined(seen: dict[str, Any], fake: FakeHome) -> None:
    def at(op: str, path: Path | str) -> Any:
        return seen[f"{op} {path}"]

    # Hidden folders are empty and read-only; a hidden file cannot be opened at all.
    assert at("read", fake.key) == "ENOENT"
    assert at("read", fake.policy) == "ENOENT"
    assert at("write", fake.policy) == "EROFS"
    assert at("read", fake.hmac_key) == "ENOENT"
    assert at("write", fake.spool) == "ENOENT"  # its folder is not there
    assert at("read", fake.audit_log) == "EACCES"
    assert at("write", fake.audit_log) == "EACCES"
    assert at("read", fake.rotated) == "EACCES"  # the <log>.* family
    assert at("read", fake.audit_log.parent / "audit-hmac.key") == "EACCES"
    assert at("write", fake.runtime / "approver.sock") == "EROFS"
    assert at("rename", fake.home / ".config") == "EBUSY"  # an ancestor is pinned
    # Read-only for its owner (root here); nobody may not write root's files anyway.
    assert at("write", CODE_FILE) == ("EROFS" if seen["uid"] == 0 else "EACCES")
    # Everything else as before.
    assert at("read", fake.notes) == "hello\n"
    assert at("write", fake.notes) == "ok"
    assert seen["cwd"] == os.getcwd()
    assert seen["env"]["PEEK_MARK"] == "same-env"
    assert seen["pid"] < 10  # own PID namespace
    assert os.getpid() not in seen["pids"]
    # Nothing changed on the real files.
    assert fake.key.read_text() == SECRET
    assert "planted" not in fake.policy.read_text()
    assert fake.spool.read_text() == '{"rseq": 1}\n'
    assert fake.audit_log.read_text() == '{"seq": 1}\n'
    assert fake.notes.read_text() == "hello\nplanted by the server\n"


def test_server_tree_cannot_reach_protected_paths_as_root(base: Path, tmp_path: Path) -> None:
    fake = make_home(base)
    seen, p = _peek(fake, base / "report.json", tmp_path)
    _assert_confined(seen, fake)
    assert "kernel sandbox bwrap" in p.log()


def _userns_allowed() -> bool:
    probe = subprocess.run(
        [*AS_NOBODY, "unshare", "--user", "true"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to nobody")
def test_server_tree_cannot_reach_protected_paths_as_a_normal_user(
    base: Path, tmp_path: Path
) -> None:
    if not _userns_allowed():  # the kernel forbids it: the refusal is tested below instead
        pytest.skip("unprivileged user namespaces are disabled on this kernel")
    fake = make_home(base, uid=NOBODY.pw_uid)
    # The system interpreter: the suite's may live where nobody cannot enter.
    python = "/usr/bin/python3"
    seen, _ = _peek(fake, base / "report.json", tmp_path, wrap=AS_NOBODY, python=python)
    assert seen["uid"] == NOBODY.pw_uid
    _assert_confined(seen, fake)


def _run(
    tmp_path: Path, fake: FakeHome, *args: str, start: bool = False, **env: str
) -> subprocess.CompletedProcess[Any]:
    """Run a proxy (and initialize when ``start``); its exit code, reply and log."""
    p = ProxyProcess(fake.policy, RAW_SERVER, tmp_path, extra_args=list(args), env=env)
    try:
        reply = p.initialize() if start else None
        p.close_stdin()
        code = p.wait()
    finally:
        p.kill()
    return subprocess.CompletedProcess(args, code, stdout=reply, stderr=p.log())


@pytest.fixture
def failing_bwrap(tmp_path: Path) -> Path:
    """A bwrap that fails as it does where user namespaces are off."""
    fake = tmp_path / "bwrap"
    fake.write_text(
        "#!/bin/sh\necho 'bwrap: No permissions to create new namespace, likely because the "
        "kernel does not allow non-privileged user namespaces.' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    return fake


@pytest.mark.parametrize("why", ["missing", "userns-off"])
def test_require_refuses_to_start_without_a_sandbox(
    base: Path, tmp_path: Path, failing_bwrap: Path, why: str
) -> None:
    fake = make_home(base)
    program = str(base / "no-bwrap") if why == "missing" else str(failing_bwrap)
    r = _run(tmp_path, fake, AIP_BWRAP=program, **fake.env())  # require is the default
    assert r.returncode == 2
    assert "the kernel sandbox is unavailable" in r.stderr
    assert "Not starting the server" in r.stderr
    assert "--sandbox auto" in r.stderr
    expected = "apt install bubblewrap" if why == "missing" else "non-privileged user namespaces"
    assert expected in r.stderr
    assert "raw-test-server" not in r.stderr


@pytest.mark.parametrize("how", ["flag", "env"])
def test_auto_without_a_sandbox_says_so_and_runs_with_string_checks(
    base: Path, tmp_path: Path, failing_bwrap: Path, how: str
) -> None:
    fake = make_home(base)
    args = ["--sandbox", "auto"] if how == "flag" else []
    env = {"AIP_SANDBOX": "auto"} if how == "env" else {}
    r = _run(tmp_path, fake, *args, AIP_BWRAP=str(failing_bwrap), start=True, **env)
    assert r.stdout["result"]["serverInfo"]["name"] == "raw-test-server"
    assert "the kernel sandbox is unavailable" in r.stderr
    assert "checked in tool-call strings only (--sandbox auto)" in r.stderr


def test_off_says_so_and_starts_the_server_directly(base: Path, tmp_path: Path) -> None:
    fake = make_home(base)
    seen, p = _peek(fake, base / "report.json", tmp_path, AIP_SANDBOX="off")
    assert "kernel sandbox off (--sandbox off)" in p.log()
    assert seen["read " + str(fake.key)] == SECRET  # only the string check is left


def test_flag_wins_over_env_and_bad_values_are_usage_errors(base: Path, tmp_path: Path) -> None:
    fake = make_home(base)
    r = _run(tmp_path, fake, "--sandbox", "off", AIP_SANDBOX="require", start=True)
    assert "kernel sandbox off" in r.stderr
    r = _run(tmp_path, fake, "--sandbox", "maybe")
    assert r.returncode == 2
    assert "--sandbox must be require|auto|off, not 'maybe'" in r.stderr
    r = _run(tmp_path, fake, AIP_SANDBOX="never")
    assert r.returncode == 2
    assert "$AIP_SANDBOX must be require|auto|off" in r.stderr


def test_bwrap_is_found_outside_a_short_path(base: Path, tmp_path: Path) -> None:
    """MCP hosts start servers with a short PATH; /usr/bin/bwrap is still found."""
    assert shutil.which("bwrap") == "/usr/bin/bwrap"
    fake = make_home(base)
    r = _run(tmp_path, fake, PATH=str(Path(sys.executable).parent), start=True)
    assert r.stdout["result"]
    assert "kernel sandbox bwrap" in r.stderr


def test_no_writable_temporary_folder_is_a_clear_refusal(base: Path, tmp_path: Path) -> None:
    """The server's stdout FIFO needs a temporary folder; when no temp root takes one
    ($TMPDIR missing, the fixed roots replaced by a missing one in the real proxy) and
    tempfile, the last resort, finds none either (its own FileNotFoundError, forced), the
    proxy refuses with the fix instead of a traceback, and never starts the server."""
    fake = make_home(base)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os, tempfile\n"
        "from aip.proxy.sandbox import host\n"
        "def _none(*a, **k):\n"
        "    raise FileNotFoundError(2, 'No usable temporary directory found')\n"
        "tempfile.gettempdir = _none\n"
        "tempfile.mkdtemp = _none\n"
        f"host.FIXED_TEMP_ROOTS = ({str(tmp_path / 'gone')!r},)\n"
        "os.environ.pop('TEMP', None); os.environ.pop('TMP', None)\n"
    )
    env = {**fake.env(), "TMPDIR": str(tmp_path / "missing")}
    r = _run(tmp_path, fake, PYTHONPATH=str(hook), **env)
    assert r.returncode == 2
    assert "cannot prepare the MCP server's sandbox" in r.stderr
    assert "set TMPDIR" in r.stderr
    assert "Traceback" not in r.stderr
    assert "raw-test-server" not in r.stderr
