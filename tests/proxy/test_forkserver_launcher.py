"""What a user sees of a proxy started through the per-user fork server: the launcher (the
agent's child in ``ps``) is the proxy. The session names the launcher's pid as its own in the
approver's hello, audit records and logs (aip.shared.own_pid), and job control (Ctrl-Z, ``fg``)
stops and continues the session with the launcher, as an in-process start stops and continues
as one process. Real processes; stops are seen in /proc/<pid>/stat, waited for with deadlines.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

import psutil
import pytest

from tests.support import forkkit
from tests.support.approverproc import Approver, answer_program, short_dir, wait_for
from tests.support.proxyproc import RAW_SERVER, ProxyProcess, write_policy

SPEC = """
allowed_tools: [echo]
denied_tools: [delete_file]
tool_rules:
  - tool: write_file
    action: ask
"""
# A job-control shell in miniature: the command runs in a process group of its own whose
# parent (us) is in the same session, so the group is not orphaned and the kernel delivers
# SIGTSTP to it, as a terminal's Ctrl-Z does (a group without such a parent discards it).
JOBSHELL = (
    "import os, sys\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    os.setpgid(0, 0)\n"
    "    os.execvp(sys.argv[1], sys.argv[1:])\n"
    "_, status = os.waitpid(pid, 0)\n"
    "sys.exit(os.waitstatus_to_exitcode(status) % 256)\n"
)


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    return write_policy(tmp_path, SPEC)


def _log_pids(log: str) -> set[int]:
    return {int(x) for x in re.findall(r"aip-proxy\[(\d+)\]", log)}


def test_a_session_names_its_launchers_pid_as_the_in_process_start_names_its_own(
    policy: Path, tmp_path: Path, run: Path
) -> None:
    """hello (``aipctl approver status``), the approver's record of an ask, the proxy's own
    records and its log lines: the launcher's pid, never the session's. The approver still
    sees the session as the socket's peer (its log): it gates on the peer's uid only."""
    from aip.approver.ctl.approver_status import query_status

    forkkit.warm(policy, tmp_path, run)
    with short_dir() as folder, Approver(folder, f"exec:{answer_program(folder, 'allow')}") as ap:
        ap.wait_ready()
        for mode in ("off", "on"):
            env = {**forkkit.fork_env(run), "AIP_SANDBOX": "off", "AIP_FORK_SERVER": mode}
            args = ["--approver", ap.endpoint, "--agent-id", f"agent-{mode}"]
            p = ProxyProcess(
                policy, RAW_SERVER, tmp_path, env=env, extra_args=args, wrap=forkkit.CAPLESS
            )
            try:
                p.initialize()
                assert p.call(1, "write_file", {"path": "/tmp/x"})["result"]["isError"] is False
                assert p.call(2, "delete_file", {"path": "/tmp/x"})["error"]
                session = forkkit.session_pid(p)
                status = query_status(ap.endpoint, 5)
                assert status is not None
                (mine,) = [x for x in status.proxies if x.agent_id == f"agent-{mode}"]
                p.close_stdin()
                assert p.wait() == 0
            finally:
                p.kill()
            assert (session is None) == (mode == "off"), p.log()
            launcher = p.proc.pid
            assert mine.pid == launcher  # the hello
            central = [r for r in ap.decisions() if r["agent_id"] == f"agent-{mode}"]
            assert [r["request_id"] for r in central if r["reason"] == "human approved"] == [1]
            assert [r["pid"] for r in central] == [launcher] * len(central), central
            records = p.decisions()
            assert [r["pid"] for r in records] == [launcher] * len(records)
            assert {r["request_id"] for r in records} >= {2}
            assert _log_pids(p.log()) == {launcher}, p.log()
            if session is not None:  # the kernel's peer: the session, and that is fine
                assert f"(pid {session}, server" in ap.log(), ap.log()


def _state(pid: int) -> str:
    """The state letter of /proc/<pid>/stat ("T": stopped); "" when gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat[stat.rindex(")") + 2]


def _wait_state(pids: list[int], stopped: bool, timeout: float = 15.0) -> None:
    def reached() -> bool:
        return all((_state(p) == "T") == stopped for p in pids)

    wait_for(reached, timeout, f"{pids} {'stopped' if stopped else 'running'}")


def _job(policy: Path, tmp_path: Path, run: Path, mode: str) -> ProxyProcess:
    env = {**forkkit.fork_env(run), "AIP_SANDBOX": "off", "AIP_FORK_SERVER": mode}
    wrap = [sys.executable, "-c", JOBSHELL, *forkkit.CAPLESS]
    return ProxyProcess(policy, RAW_SERVER, tmp_path, env=env, wrap=wrap)


def _launcher(p: ProxyProcess) -> int:
    (child,) = psutil.Process(p.proc.pid).children()
    return child.pid


def test_ctrl_z_stops_and_continues_the_session_with_its_launcher(
    policy: Path, tmp_path: Path, run: Path
) -> None:
    forkkit.warm(policy, tmp_path, run)
    for mode in ("off", "on"):
        p = _job(policy, tmp_path, run, mode)
        try:
            p.initialize()
            launcher = _launcher(p)
            session = forkkit.session_pid(p)
            assert (session is None) == (mode == "off"), p.log()
            workers = [launcher] + ([session] if session is not None else [])
            os.kill(launcher, signal.SIGTSTP)
            _wait_state(workers, stopped=True)
            os.kill(launcher, signal.SIGCONT)
            _wait_state(workers, stopped=False)
            assert p.call(1, "echo", {"text": "back"})["result"]["isError"] is False
            # Stopped again, continued again: the launcher's handler is back in place.
            os.kill(launcher, signal.SIGTSTP)
            _wait_state(workers, stopped=True)
            os.kill(launcher, signal.SIGCONT)
            _wait_state(workers, stopped=False)
            assert p.call(2, "echo", {"text": "again"})["result"]["isError"] is False
            p.close_stdin()
            assert p.wait() == 0
        finally:
            p.kill()


def test_a_launcher_killed_while_stopped_does_not_leave_its_session_stopped(
    policy: Path, tmp_path: Path, run: Path
) -> None:
    """Nobody could continue the session then: the fork server does (it sees the launcher's
    hang-up), and the session ends on that hang-up as on stdin EOF."""
    forkkit.warm(policy, tmp_path, run)
    p = _job(policy, tmp_path, run, "on")
    try:
        p.initialize()
        launcher = _launcher(p)
        session = forkkit.session_pid(p)
        assert session is not None, forkkit.server_log(run)
        tree = [c.pid for c in psutil.Process(session).children(recursive=True)]
        os.kill(launcher, signal.SIGTSTP)
        _wait_state([launcher, session], stopped=True)
        os.kill(launcher, signal.SIGKILL)
        assert forkkit.wait_gone([session, *tree], timeout=15) == [], forkkit.server_log(run)
    finally:
        p.kill()


def test_a_sigtstp_ignored_at_start_stays_ignored(policy: Path, tmp_path: Path, run: Path) -> None:
    """As in-process: a proxy started with SIGTSTP ignored does not stop on it, and neither
    does its session (an ignored signal is discarded when it is sent)."""
    forkkit.warm(policy, tmp_path, run)
    ignore = "import signal, os, sys; signal.signal(signal.SIGTSTP, signal.SIG_IGN);"
    ignore += " os.execvp(sys.argv[1], sys.argv[1:])"
    for mode in ("off", "on"):
        env = {**forkkit.fork_env(run), "AIP_SANDBOX": "off", "AIP_FORK_SERVER": mode}
        wrap = [sys.executable, "-c", JOBSHELL, sys.executable, "-c", ignore, *forkkit.CAPLESS]
        p = ProxyProcess(policy, RAW_SERVER, tmp_path, env=env, wrap=wrap)
        try:
            p.initialize()
            launcher = _launcher(p)
            assert (forkkit.session_pid(p) is None) == (mode == "off"), p.log()
            session = forkkit.session_pid(p) or launcher
            os.kill(launcher, signal.SIGTSTP)
            assert "result" in p.request(1, "ping")
            assert "T" not in (_state(launcher), _state(session))
            p.close_stdin()
            assert p.wait() == 0
        finally:
            p.kill()


def _holds(pid: int, sig: int) -> bool:
    """Whether ``pid`` blocks ``sig`` (SigBlk in /proc/<pid>/status)."""
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":\t", 1) for line in f if ":\t" in line)
    return bool(int(fields["SigBlk"], 16) & (1 << (sig - 1)))


def test_a_sigterm_while_the_launcher_waits_for_its_session_reaches_the_session(
    policy: Path, tmp_path: Path, run: Path
) -> None:
    """The launcher holds SIGINT/TERM/HUP from before it connects until it forwards them: the
    session may answer the agent before the launcher runs again, and a SIGTERM then must reach
    the session, not end the launcher by default (the session would see only a hang-up). The
    fork server is stopped meanwhile, so the SIGTERM surely comes before the session exists."""
    server = forkkit.warm(policy, tmp_path, run)
    env = {"AIP_PROXY_STDIN_GRACE_S": "10", "AIP_FORK_SERVER_HANDSHAKE_S": "60"}
    os.kill(server, signal.SIGSTOP)
    try:
        p = forkkit.proxy(policy, tmp_path, run, **env)
        wait_for(lambda: _holds(p.proc.pid, signal.SIGTERM), 20, "the launcher to hold SIGTERM")
        p.proc.send_signal(signal.SIGTERM)
    finally:
        os.kill(server, signal.SIGCONT)
    try:
        code = p.wait(30)
        # Served: the launcher was alive when the server looked (the old launcher died of the
        # SIGTERM at once, and the server refused a launcher that was gone).
        assert forkkit.served(run, server, p.proc.pid, timeout=10), forkkit.server_log(run)
        # The session ended on the forwarded SIGTERM: by its handler (0) or, when it came
        # before the session's handlers were in place, by the signal, as in-process.
        assert code in (0, -signal.SIGTERM), p.log()
    finally:
        p.kill()


def test_a_server_started_by_a_launcher_that_blocks_sigterm_still_stops_on_it(
    policy: Path, tmp_path: Path, run: Path
) -> None:
    """The fork server outlives the launcher that started it: whatever signals that launcher
    blocked (an agent may start its proxies so), the server hears SIGTERM."""
    block = "import signal, os, sys; signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM});"
    block += " os.execvp(sys.argv[1], sys.argv[1:])"
    env = {**forkkit.fork_env(run), "AIP_SANDBOX": "off"}
    wrap = [sys.executable, "-c", block, *forkkit.CAPLESS]
    assert ProxyProcess(policy, RAW_SERVER, tmp_path, env=env, wrap=wrap).serve_once() == 0
    server = psutil.Process(forkkit.wait_for_server(run))
    server.send_signal(signal.SIGTERM)
    assert server.wait(15) is not None or not server.is_running()
