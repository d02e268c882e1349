"""The per-user fork server in tests: its own runtime folder, waits with deadlines, teardown.

``fork_env(folder)`` is the environment that turns it on for proxies started with it (a short
idle timeout and check interval, so a leftover ends by itself); ``wait_for_server`` waits for
the server the first proxy started in the background; ``stop_servers`` ends every server of
a folder (SIGTERM, then SIGKILL) and waits until they are gone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

import psutil

from tests.support.freshpy import python_c
from tests.support.proxyproc import RAW_SERVER, ProxyProcess

SPEC = """
allowed_tools: [echo, read_file]
denied_tools: [delete_file]
"""

SO_PEERCRED = 17
# The fork server serves no process that holds capabilities (root never gets one): the suite
# runs as root in CI, so its launchers run as root without any (an empty bounding set: an
# exec then grants none). bwrap cannot start for such a process (root without CAP_SYS_ADMIN,
# no user namespace either): these launchers use --sandbox off, or compare the refusal.
CAPLESS = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"] if os.geteuid() == 0 else []


def fork_env(run: Path, *, idle_s: float = 20.0, check_s: float = 0.2) -> dict[str, str | None]:
    return {
        "AIP_FORK_SERVER": "on",
        "XDG_RUNTIME_DIR": str(run),
        "AIP_FORK_SERVER_IDLE_S": str(idle_s),
        "AIP_FORK_SERVER_CHECK_S": str(check_s),
    }


def launcher_key(run: Path) -> str:
    """The key a launcher started with ``fork_env(run)`` computes (as ``python -c``: its
    import path without the first entry, like the console script's)."""
    env = {**os.environ, **{k: v for k, v in fork_env(run).items() if v is not None}}
    code = "from aip.proxy.forkserver import identity as i; print(i.key(i.process_identity()))"
    return python_c(code, env=env, python=launcher_python(), prefix=CAPLESS)


def launcher_python() -> str:
    """The interpreter path the ``aip-proxy`` console script runs (its ``#!`` line): the key
    includes ``sys.executable``, and a venv's ``python`` and ``python3`` are two names (CI
    installs with ``python`` and runs pytest with ``python3``)."""
    script = shutil.which("aip-proxy")
    if script is not None:
        first = Path(script).read_bytes().split(b"\n", 1)[0]
        if first.startswith(b"#!") and len(first.split()) == 1:
            return first[2:].decode()
    return sys.executable


def socket_path(run: Path) -> str:
    code = "import sys; from aip.proxy.forkserver import identity; "
    code += "print(identity.socket_path(sys.argv[1]))"
    env = {**os.environ, "XDG_RUNTIME_DIR": str(run)}
    return python_c(code, launcher_key(run), env=env)


def sockets(run: Path) -> list[Path]:
    folder = run / "aip"
    return sorted(folder.glob("fork-*.sock")) if folder.is_dir() else []


def server_pid(path: Path) -> int | None:
    """The pid of the server listening at ``path`` (SO_PEERCRED), None if none answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
        try:
            s.connect(str(path))
        except OSError:
            return None
        raw = s.getsockopt(socket.SOL_SOCKET, SO_PEERCRED, 12)
    return int.from_bytes(raw[:4], "little")


def wait_for_server(run: Path, timeout: float = 30.0, *, other_than: int | None = None) -> int:
    """The pid of a server that accepts connections in ``run`` (a new one if ``other_than``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in sockets(run):
            pid = server_pid(path)
            if pid is not None and pid != other_than:
                return pid
        time.sleep(0.02)
    raise AssertionError(f"no fork server in {run} within {timeout}s:\n{server_log(run)}")


def server_log(run: Path) -> str:
    """The lines of the fork servers of ``run`` (the log is shared by the suite's servers)."""
    base = os.environ.get("XDG_STATE_HOME")
    path = Path(base or "/nonexistent") / "aip" / "fork-server.log"
    if not path.exists():
        return "<no server log>"
    mine = {p.name for p in sockets(run)} | {f"{run}/"}
    lines = path.read_text(errors="replace").splitlines()
    return "\n".join(x for x in lines if any(m in x for m in mine) or str(run) in x)


def stop_servers(run: Path, timeout: float = 10.0) -> None:
    procs = []
    for p in psutil.process_iter(["cmdline"]):  # bound or still importing
        if any(str(run) in arg for arg in p.info["cmdline"] or []) and "aip.proxy.forkserver" in (
            " ".join(p.info["cmdline"] or [])
        ):
            procs.append(p)
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=timeout)


def wait_gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    """The pids still alive after ``timeout`` (zombies count as gone)."""
    deadline = time.monotonic() + timeout
    left = list(pids)
    while left and time.monotonic() < deadline:
        left = [p for p in left if _alive(p)]
        if left:
            time.sleep(0.02)
    return left


def wait_for_file(path: Path, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)  # polling a file another process writes, bounded by the deadline
    return True


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def session_pid(p: ProxyProcess) -> int | None:
    """The session the fork server forked for the running launcher ``p``; None when ``p``
    runs in-process. (The logs cannot tell: a session names its launcher's pid.)"""
    pid = p.session_pid()
    return None if pid == p.proc.pid else pid


def served(run: Path, server: int, launcher: int, timeout: float = 0.0) -> bool:
    """Whether fork server ``server`` (a pid) forked a session for ``launcher`` (its log says
    so right after the fork: wait up to ``timeout`` for it; a negative answer waits it out)."""
    mine = f"aip-fork-server[{server}]"
    said = f"started for launcher pid {launcher} "
    deadline = time.monotonic() + timeout
    while True:
        if any(mine in x and said in x for x in server_log(run).splitlines()):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def proxy(
    policy: Path, tmp_path: Path, run: Path, server: list[str] | None = None, **env: str | None
) -> ProxyProcess:
    """A launcher the fork server may serve (no capabilities: CAPLESS), sandbox off."""
    full = {**fork_env(run), "AIP_SANDBOX": "off", **env}
    return ProxyProcess(policy, server or RAW_SERVER, tmp_path, env=full, wrap=CAPLESS)


def warm(policy: Path, tmp_path: Path, run: Path) -> int:
    """The first start (in-process) leaves a server behind; its pid."""
    p = proxy(policy, tmp_path, run, AIP_PROXY_STDIN_GRACE_S="10")  # exit 0: EOF, not TERM
    try:
        p.initialize()
        assert session_pid(p) is None  # the first one ran in-process
        p.close_stdin()
        assert p.wait() == 0
    finally:
        p.kill()
    return wait_for_server(run)
