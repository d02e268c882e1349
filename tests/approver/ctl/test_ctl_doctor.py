"""``aipctl doctor`` against real sockets, a real approver and real files (CI runs as root:
ownership problems are made with chown to nobody, never chmod alone)."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from tests.support.aipctl import AIPCTL, aipctl
from tests.support.approverproc import Approver, wait_for
from tests.support.systools import required_tool

NOBODY = 65534
READY_TIMEOUT_S = 10.0

POLICY = """\
apiVersion: aip.io/v1alpha1
kind: AgentPolicy
metadata:
  name: doctor-test
spec:
  allowed_tools: [read_file]
  tool_rules:
    - tool: write_file
      action: ask
"""


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    # A short runtime dir: ipc:// paths are limited to ~100 bytes and tmp_path can be long.
    runtime = Path(tempfile.mkdtemp(prefix="aipd-", dir="/tmp"))
    home = tmp_path / "home"
    home.mkdir()
    yield {
        "HOME": str(home),
        "XDG_RUNTIME_DIR": str(runtime),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "PATH": os.environ["PATH"],
        "LANG": os.environ.get("LANG", "C.UTF-8"),
    }
    shutil.rmtree(runtime, ignore_errors=True)


def doctor(env: dict[str, str], *args: str) -> tuple[int, dict[str, dict[str, Any]]]:
    done = aipctl("doctor", "--json", *args, env=env)
    report = json.loads(done.stdout)
    assert report["ok"] is (done.returncode == 0)
    for check in report["checks"]:  # every problem comes with the command that fixes it
        assert check["status"] in ("ok", "info") or check["fix"], check
    return done.returncode, {c["name"]: c for c in report["checks"]}


def socket_dir(env: dict[str, str]) -> Path:
    return Path(env["XDG_RUNTIME_DIR"], "aip")


def test_no_display_no_approver(env: dict[str, str]) -> None:
    rc, checks = doctor(env)
    assert rc == 1
    assert checks["approver"]["status"] == "fail"
    assert "approver_unavailable" in checks["approver"]["summary"]
    assert checks["approver"]["fix"].startswith("aipctl approver install")
    assert checks["dialog"]["status"] == "fail"
    assert "no_display" in checks["dialog"]["summary"]
    assert checks["dialog"]["fix"]
    assert checks["start-up"]["fix"] == "aipctl approver install"
    assert checks["socket"]["status"] == "info"


def test_human_output_names_fixes_and_has_no_colour_in_a_pipe(env: dict[str, str]) -> None:
    done = aipctl("doctor", env=env)
    assert done.returncode == 1
    assert "[FAIL] approver" in done.stdout
    assert "fix: aipctl approver install" in done.stdout
    assert "\x1b[" not in done.stdout


def test_socket_directory_owned_by_nobody(env: dict[str, str]) -> None:
    planted = socket_dir(env)
    planted.mkdir(mode=0o700)
    os.chown(planted, NOBODY, NOBODY)
    rc, checks = doctor(env)
    assert rc == 1
    assert checks["socket"]["status"] == "fail"
    assert f"owned by uid {NOBODY}" in checks["socket"]["summary"]
    assert checks["socket"]["fix"].startswith(f"sudo rm -rf {planted}")
    assert "not contacted" in checks["approver"]["summary"]


def test_socket_directory_with_open_mode(env: dict[str, str]) -> None:
    socket_dir(env).mkdir(mode=0o700)
    socket_dir(env).chmod(0o755)
    rc, checks = doctor(env)
    assert rc == 1
    assert checks["socket"]["fix"] == f"chmod 700 {socket_dir(env)}"


def test_locked_but_silent_approver(env: dict[str, str]) -> None:
    """A process holds the lock and the socket is bound, but nothing answers."""
    socket_dir(env).mkdir(mode=0o700)
    endpoint = f"ipc://{socket_dir(env)}/approver.sock"
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.linger = 0
    lock = os.open(socket_dir(env) / "approver.sock.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        router.bind(endpoint)
        started = time.monotonic()
        rc, checks = doctor(env, "--timeout", "0.3")
        assert time.monotonic() - started < 10
    finally:
        router.close()
        ctx.term()
        os.close(lock)
    assert rc == 1
    assert "holds the lock but did not answer" in checks["approver"]["summary"]
    assert checks["approver"]["fix"]


@pytest.fixture
def approver(env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The real approver, started as the desktop would start it (no display here)."""
    log = tmp_path / "approver.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "aip.approver", "--timeout", "7"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=sink,
            start_new_session=True,
        )
    try:
        give_up = time.monotonic() + READY_TIMEOUT_S
        while b"ready" not in log.read_bytes():
            if time.monotonic() > give_up:
                pytest.fail(f"approver did not start:\n{log.read_text()}")
            try:  # waits on the process itself between looks at its readiness line
                proc.wait(timeout=0.02)
                pytest.fail(f"approver exited:\n{log.read_text()}")
            except subprocess.TimeoutExpired:
                pass
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_reachable_real_approver(env: dict[str, str], approver: subprocess.Popen[bytes]) -> None:
    rc, checks = doctor(env)
    assert checks["approver"]["status"] == "ok"
    assert checks["approver"]["details"][0] == f"pid {approver.pid}, ask deadline 7 s"
    assert "0 proxy session(s) connected" in checks["approver"]["details"][1]
    assert checks["socket"]["status"] == "ok"
    assert "0700" in checks["socket"]["summary"]
    assert rc == 1  # still no display: the dialog check fails
    assert approver.poll() is None


def write_policy(env: dict[str, str], text: str, mode: int = 0o600) -> Path:
    path = Path(env["HOME"], "p.yaml")
    path.write_text(text)
    path.chmod(mode)
    return path


def test_policy_of_a_proxy_command_line(env: dict[str, str]) -> None:
    path = write_policy(env, POLICY)
    _, checks = doctor(env, "--", "aip-proxy", "--policy", str(path), "--", "cat")
    assert checks["policy"]["status"] == "ok"
    assert "'doctor-test'" in checks["policy"]["summary"]
    assert "1 rule(s)" in checks["policy"]["details"][0]


def test_invalid_policy_lists_problems_with_lines(env: dict[str, str]) -> None:
    bad = POLICY.replace("action: ask", "action: maybe") + "  bogus_key: 1\n"
    path = write_policy(env, bad)
    _, checks = doctor(env, "--", "aip-proxy", "--policy", str(path), "--", "cat")
    policy = checks["policy"]
    assert policy["status"] == "fail"
    assert policy["fix"] == f"aipctl policy check {path}"
    assert len(policy["details"]) >= 2
    assert all(f"{path}:" in d for d in policy["details"])


def test_group_writable_policy_is_refused(env: dict[str, str]) -> None:
    path = write_policy(env, POLICY, mode=0o664)
    _, checks = doctor(env, "--", "aip-proxy", "--policy", str(path), "--", "cat")
    assert checks["policy"]["status"] == "fail"
    assert "chmod go-w" in checks["policy"]["details"][0]


def test_policy_from_environment_when_the_line_has_none(env: dict[str, str]) -> None:
    path = write_policy(env, POLICY)
    _, checks = doctor({**env, "AIP_POLICY": str(path)}, "--", "aip-proxy", "--", "cat")
    assert checks["policy"]["status"] == "ok"


def test_unusable_proxy_line(env: dict[str, str]) -> None:
    rc, checks = doctor(env, "--", "aip-proxy", "--policy", "x.yaml")
    assert rc == 1
    assert checks["proxy"]["status"] == "fail"


def test_audit_log_problems(env: dict[str, str]) -> None:
    log_dir = Path(env["XDG_STATE_HOME"], "aip")
    log_dir.mkdir(parents=True, mode=0o700)
    log = log_dir / "aip-audit.jsonl"
    log.write_text('{"event": "decision"}\n')
    log.chmod(0o644)
    _, checks = doctor(env)
    assert checks["audit log"]["fix"] == f"chmod 600 {log}"
    log.chmod(0o600)
    _, checks = doctor(env)
    assert checks["audit log"]["status"] == "fail"
    assert "hash chain broken" in checks["audit log"]["summary"]


def test_audit_key_problems(env: dict[str, str]) -> None:
    """An empty key (an older aip killed while making it) stops the approver's log: doctor
    says so and how to fix it; a whole 0600 key of ours is ok."""
    log_dir = Path(env["XDG_STATE_HOME"], "aip")
    key = log_dir / "audit-hmac.key"
    _, checks = doctor(env)
    assert checks["audit key"]["status"] == "info"
    log_dir.mkdir(parents=True, mode=0o700)
    key.touch(mode=0o600)
    code, checks = doctor(env)
    assert code != 0
    assert checks["audit key"]["status"] == "fail"
    assert "holds 0 bytes" in checks["audit key"]["summary"]
    assert checks["audit key"]["fix"].startswith(f"rm {key}")
    key.chmod(0o644)
    _, checks = doctor(env)
    assert checks["audit key"]["fix"] == f"mv {key} {key}.refused   # then restart the approver"
    key.unlink()
    key.write_bytes(b"k" * 32)
    key.chmod(0o600)
    _, checks = doctor(env)
    assert checks["audit key"]["status"] == "ok"


def test_dialog_backend_with_a_display(env: dict[str, str]) -> None:
    required_tool("zenity", path="/usr/bin:/bin")  # where the approver's PATH finds it
    _, checks = doctor({**env, "DISPLAY": ":77"})
    assert checks["dialog"]["status"] == "ok"
    assert checks["dialog"]["summary"] == "--dialog auto uses zenity"


def fake_systemctl(env: dict[str, str], tmp_path: Path, manager_env: str) -> dict[str, str]:
    """A systemctl whose user manager has ``manager_env``; the unit file is really written."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "systemctl"
    script.write_text(
        '#!/bin/sh\ncase "$*" in\n'
        f"  *show-environment*) printf '{manager_env}' ;;\n"
        "esac\nexit 0\n"
    )
    script.chmod(0o755)
    env = {**env, "PATH": f"{bin_dir}:{env['PATH']}"}
    done = aipctl("approver", "install", "--method", "systemd", "--no-start", env=env)
    assert done.returncode == 0, done.stderr
    return env


def test_unit_judged_by_the_user_managers_environment(env: dict[str, str], tmp_path: Path) -> None:
    required_tool("zenity", path="/usr/bin:/bin")  # where the approver's PATH finds it
    env = fake_systemctl(env, tmp_path, "HOME=/x\\nDISPLAY=:5\\n")
    _, checks = doctor(env)  # this shell has no DISPLAY; the manager does
    assert checks["start-up"]["status"] == "ok"
    assert checks["unit env"]["status"] == "ok"
    assert checks["dialog"]["status"] == "ok"
    assert checks["dialog"]["details"] == ["the systemd user manager: DISPLAY=:5"]


def test_unit_without_display_in_the_user_manager(env: dict[str, str], tmp_path: Path) -> None:
    env = fake_systemctl(env, tmp_path, "HOME=/x\\n")
    rc, checks = doctor({**env, "DISPLAY": ":9"})  # a display here does not help the unit
    assert rc == 1
    assert checks["unit env"]["status"] == "fail"
    assert checks["unit env"]["fix"].startswith("systemctl --user import-environment DISPLAY")
    assert "systemd user manager" in checks["dialog"]["summary"]


def run_on_a_terminal(env: dict[str, str]) -> str:
    """Run doctor with its stdout on a pseudo-terminal; return what it wrote."""
    import pty

    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [AIPCTL, "doctor"],
            env={**env, "TERM": "xterm"},
            stdout=follower,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        os.close(follower)
        chunks = []
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the other side closed
                break
            if not data:
                break
            chunks.append(data)
        proc.wait(30)
    finally:
        os.close(leader)
    return b"".join(chunks).decode(errors="replace")


def test_colour_only_on_a_terminal(env: dict[str, str]) -> None:
    assert "\x1b[31m[FAIL]" in run_on_a_terminal(env)
    assert "\x1b[" not in run_on_a_terminal({**env, "NO_COLOR": "1"})


def test_dialog_judged_by_the_running_approvers_environment(
    env: dict[str, str], approver: subprocess.Popen[bytes]
) -> None:
    """The approver runs without a display; a display in doctor's own shell changes nothing."""
    _, checks = doctor({**env, "DISPLAY": ":3"})
    assert checks["approver"]["details"][0].startswith(f"pid {approver.pid},")
    assert checks["dialog"]["status"] == "fail"
    # The approver's own answer (status reply), not a guess from doctor's shell.
    summary = checks["dialog"]["summary"]
    assert summary.startswith(f"the running approver (pid {approver.pid}) denies every ask")
    assert "no_display" in summary
    assert checks["dialog"]["fix"].startswith("run the approver in your desktop session")


def test_policy_warnings_are_pointed_out(env: dict[str, str]) -> None:
    risky = POLICY.replace(
        "    - tool: write_file\n      action: ask\n",
        "    - tool: write_file\n      action: allow\n"
        "      allow_args:\n        path: '^/tmp/.*$'\n",
    )
    path = write_policy(env, risky)
    _, checks = doctor(env, "--", "aip-proxy", "--policy", str(path), "--", "cat")
    assert checks["policy"]["status"] == "warn"
    assert "/tmp/../../etc/shadow" in checks["policy"]["details"][-1]
    assert checks["policy"]["fix"] == f"aipctl policy check {path}"


def test_fixes_never_touch_folders_that_are_not_aips(env: dict[str, str], tmp_path: Path) -> None:
    """Settings pointed into system folders: doctor names the problem and advises a folder of
    its own, never `rm -rf /tmp` or `chmod 700 /usr` (as root, those would run)."""
    shared = tmp_path / "shared-folder"  # ours but open to others, like /tmp is to root
    shared.mkdir()
    shared.chmod(0o777)
    system = tmp_path / "usr"  # not ours, like /usr to a user
    system.mkdir()
    os.chown(system, NOBODY, NOBODY)
    for endpoint_dir, log_dir in ((shared, system), (system, shared), (Path("/tmp"), Path("/usr"))):
        _, checks = doctor(
            {
                **env,
                "AIP_APPROVER_ENDPOINT": f"ipc://{endpoint_dir}/approver.sock",
                "AIP_AUDIT_LOG": str(log_dir / "aip-audit.jsonl"),
            }
        )
        fixes = " | ".join(str(c["fix"]) for c in checks.values())
        for folder in (endpoint_dir, log_dir):
            assert f"rm -rf {folder}" not in fixes
            assert f"chmod 700 {folder}" not in fixes
        if endpoint_dir != Path("/tmp") or os.getuid() == 0:
            assert checks["socket"]["status"] == "fail", checks["socket"]
            assert "folder of its own" in checks["socket"]["fix"]
    assert shared.stat().st_mode & 0o777 == 0o777  # doctor changes nothing itself


def test_an_approver_never_changes_the_mode_of_a_folder_it_was_pointed_into(
    env: dict[str, str], tmp_path: Path
) -> None:
    shared = tmp_path / "shared-folder"
    shared.mkdir()
    shared.chmod(0o777)
    log = shared / "aip-audit.jsonl"
    short = Path(env["XDG_RUNTIME_DIR"])
    with Approver(short, "exec:/bin/false", env={**env, "AIP_AUDIT_LOG": str(log)}) as approver:
        approver.wait_ready()
        wait_for(lambda: "not aip's own folder" in approver.log(), 10, "the refusal on stderr")
        assert shared.stat().st_mode & 0o777 == 0o777
        assert not log.exists()


def test_sandbox_works_here(env: dict[str, str]) -> None:
    _, checks = doctor(env)
    assert checks["sandbox"]["status"] == "ok"
    assert "bubblewrap" in checks["sandbox"]["summary"]


@pytest.mark.parametrize(
    ("line", "extra", "status", "says"),
    [
        ([], {}, "fail", "aip-proxy refuses to start (--sandbox require, the default)"),
        (
            ["--sandbox", "auto"],
            {},
            "warn",
            "protected paths are checked in tool-call strings only (--sandbox auto)",
        ),
        (
            [],
            {"AIP_SANDBOX": "auto"},
            "warn",
            "protected paths are checked in tool-call strings only (--sandbox auto)",
        ),
    ],
)
def test_sandbox_missing_names_the_fix_and_what_the_proxy_does(
    env: dict[str, str], line: list[str], extra: dict[str, str], status: str, says: str
) -> None:
    missing = {**env, **extra, "AIP_BWRAP": str(Path(env["HOME"], "no-bwrap"))}
    path = write_policy(env, POLICY)
    _, checks = doctor(missing, "--", "aip-proxy", "--policy", str(path), *line, "--", "cat")
    sandbox = checks["sandbox"]
    assert sandbox["status"] == status
    assert (
        sandbox["summary"]
        == "unavailable: bwrap is not installed (Debian/Ubuntu: apt install bubblewrap)"
    )
    assert sandbox["details"] == [says]
    assert sandbox["fix"].startswith("apt install bubblewrap")


def test_sandbox_off_is_a_warning(env: dict[str, str]) -> None:
    _, checks = doctor({**env, "AIP_SANDBOX": "off"})
    assert checks["sandbox"]["status"] == "warn"
    assert "off (--sandbox off)" in checks["sandbox"]["summary"]
