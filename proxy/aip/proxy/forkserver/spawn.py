"""Start the fork server detached, for the launches after this one (this one runs in-process).

Double fork and setsid: the server is nobody's child (no zombie, no process group of the agent,
no controlling terminal), holds none of the launcher's descriptors (a host waiting for EOF on
our stdout would wait for the server too), runs from ``/`` with umask 077 and writes its own
log to ``fork-server.log`` (0600) in the aip state folder. The launcher waits only for the
middle process, which exits at once. Several launchers starting at the same moment may each
start one: the server's lock keeps one and the others exit.
"""

from __future__ import annotations

import contextlib
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

LOG_NAME: Final = "fork-server.log"
# Left beside the socket path by a server that found another key than its launcher's: for a
# while, launchers of that key start no server (each would fail the same way).
MISMATCH: Final = ".mismatch"
MISMATCH_HOLD_S: Final = 600.0
SERVER_CODE: Final = "from aip.proxy.forkserver.server import main; main()"


def start_server(path: str, digest: str) -> None:
    import time

    try:
        if time.time() - os.stat(path + MISMATCH).st_mtime < MISMATCH_HOLD_S:
            return
    except OSError:
        pass
    try:
        pid = os.fork()
    except OSError:
        return
    if pid:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        return
    try:  # the middle process: a new session, then the server as an orphan
        os.setsid()
        if os.fork() == 0:
            _become_server(path, digest)
    finally:
        os._exit(0)


def _become_server(path: str, digest: str) -> None:
    """In the grandchild: descriptors, folder and mask of a daemon, then exec the server."""
    try:
        os.chdir("/")
        os.umask(0o077)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        os.dup2(_log_fd(null), 2)
        os.closerange(3, _max_fd())
        argv = [sys.executable, *_interpreter_flags(), "-P", "-c", SERVER_CODE, path, digest]
        # The environment the launcher was exec'd with, not os.environ: the interpreter then
        # starts as the launcher's did (its locale coercion and UTF-8 mode included).
        os.execve(sys.executable, argv, _exec_environ())  # noqa: S606 - our interpreter
    finally:
        os._exit(127)


def _exec_environ() -> dict[bytes, bytes]:
    from aip.proxy.server_env import exec_environment

    env = exec_environment()
    return env if env is not None else dict(os.environb)


def _log_fd(fallback: int) -> int:
    try:
        from pathlib import Path

        from aip.shared import paths

        folder = paths.ensure_private_dir(paths.state_dir())
        return os.open(
            str(Path(folder) / LOG_NAME),
            os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
            0o600,
        )
    except Exception:  # noqa: BLE001 - a server without its log still serves
        return fallback


def _interpreter_flags() -> list[str]:
    """The launcher's own interpreter options (-E, -s, -I, -X ..., -W ...): the server must
    start as the launcher did (its key includes them; a mismatch is never used)."""
    import subprocess

    return [a for a in subprocess._args_from_interpreter_flags() if a != "-P"]  # type: ignore[attr-defined]


def _max_fd() -> int:
    try:
        return os.sysconf("SC_OPEN_MAX")
    except (OSError, ValueError):
        return 1024
