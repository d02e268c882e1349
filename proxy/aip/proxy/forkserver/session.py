"""A forked child of the fork server becoming the launcher's proxy session.

Before it says ``started`` it touches none of the launcher's descriptors, so any refusal lets
the launcher start in-process with nothing consumed. In order: drop the server's descriptors
and signal handlers; check that its own identity is exactly the launcher's (credentials,
capabilities, namespaces, cgroup, ...: aip.proxy.forkserver.identity); take the launcher's
environment (os.environ replaced in place, the exec environment for the MCP server's, time
zone, temporary folder), umask, rlimits, ignored and blocked signals, CPU affinity, nice
value and name; then its current folder (fchdir) and its stdin, stdout and stderr (dup2).
Module state the server derived from its own environment at import time: none in aip (every
read is at call time, tests/proxy/test_forkserver); of the standard library, the time zone
and tempfile's cached folder, both reset here. Then it runs ``aip-proxy`` as the in-process
start does, with one more stop reason: the launcher's end (EOF on the connection), which
stops the session as the agent closing stdin does; a signal the launcher forwards is raised
here. Its exit code goes back to the launcher (the server also reports it once reaped).
It names the launcher's pid as its own (records, hello, logs: aip.shared.own_pid), as the
in-process start names its own, and hands the launcher a pidfd of itself with ``started``:
the launcher stops and continues the session with itself (Ctrl-Z, aip.proxy.forkserver.launcher).
"""

from __future__ import annotations

import _socket
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, Final, NoReturn

from aip.proxy.forkserver import identity, wire
from aip.shared import logs, own_pid

log = logs.get(__name__)

EXIT_REFUSED: Final = 3  # only the server sees it: the launcher already started in-process
PR_SET_NAME: Final = 15
_KEEP_PYTHON_HANDLERS: Final = frozenset({signal.SIGINT})


def become(
    conn: _socket.socket,
    request: dict[str, Any],
    fds: list[int],
    inherited: list[int],
    launcher: dict[str, Any],
) -> NoReturn:
    """``request``: the launcher's inputs; ``launcher``: its identity, rlimits, nice and pid as
    the server read them from the kernel (never from the request)."""
    code = 1
    try:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)  # the server's: never run them here
        for fd in inherited:
            with contextlib.suppress(OSError):
                os.close(fd)
        signal.set_wakeup_fd(-1)
        problem = _identity_problem(launcher["identity"]) or _adopt(request, launcher)
        me = -1
        if problem is None:
            try:  # for the launcher's job control (Ctrl-Z): a handle on us, never a reused pid
                me = os.pidfd_open(os.getpid())
            except OSError as exc:
                problem = f"no pidfd for the session: {exc}"
        if problem is not None:
            log.info("session refused: %s", problem)
            wire.send(conn, "refused", problem)
            _exit(EXIT_REFUSED)
        _take_descriptors(fds)
        own_pid.stand_in_for(launcher["pid"])  # records, hello and logs name the launcher
        logs.reset()  # the server's log is not the session's
        wire.send(conn, "started", os.getpid(), [me])
        os.close(me)
        code = _run(conn, request["argv"][1:])
        with contextlib.suppress(OSError):
            wire.send(conn, "exit", code)
    except BaseException:  # noqa: BLE001 - the process ends here whatever happened
        with contextlib.suppress(Exception):
            import traceback

            traceback.print_exc()
    _exit(code)


def _exit(code: int) -> NoReturn:
    with contextlib.suppress(Exception):
        logs.flush()
        sys.stderr.flush()
    os._exit(code)


def _identity_problem(theirs: dict[str, str]) -> str | None:
    mine = identity.process_identity()
    differ = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    return f"identity differs: {', '.join(differ)}" if differ else None


def _adopt(request: dict[str, Any], launcher: dict[str, Any]) -> str | None:
    """Everything but the descriptors; a value we cannot take is a refusal, never a
    session that differs from the in-process start."""
    import resource

    try:
        for res, soft, hard in launcher["rlimits"]:
            if resource.getrlimit(res) != (soft, hard):
                resource.setrlimit(res, (soft, hard))
        os.sched_setaffinity(0, request["affinity"])
        if os.getpriority(os.PRIO_PROCESS, 0) != launcher["nice"]:
            os.setpriority(os.PRIO_PROCESS, 0, launcher["nice"])
    except (OSError, ValueError) as exc:
        return f"cannot take the launcher's limits: {exc}"
    os.umask(request["umask"])
    _take_signals(request["sig_ignored"], request["sig_blocked"])
    environ = os.environb
    environ.clear()  # in place: functions that took os.environ as a default see the new one
    environ.update(dict(request["environ"]))
    from aip.proxy import server_env

    server_env.adopt_exec_environment(request["exec_environ"])
    import time

    time.tzset()
    if "tempfile" in sys.modules:
        setattr(sys.modules["tempfile"], "tempdir", None)  # noqa: B010 - cached at first use
    sys.argv = list(request["argv"])
    _set_name(request["comm"])
    return None


def _take_signals(ignored: int, blocked: int) -> None:
    """Dispositions as the launcher's interpreter had them (ignored ones stay ignored, which
    exec keeps for the MCP server too), Python's SIGINT handler, and its blocked mask."""
    for sig in signal.valid_signals():
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        if ignored & (1 << (sig - 1)):
            action: Any = signal.SIG_IGN
        elif sig in _KEEP_PYTHON_HANDLERS:
            action = signal.default_int_handler
        else:
            action = signal.SIG_DFL
        with contextlib.suppress(OSError, ValueError):
            signal.signal(sig, action)
    mask = {s for s in signal.valid_signals() if blocked & (1 << (s - 1))}
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _set_name(comm: bytes) -> None:
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(PR_SET_NAME, ctypes.c_char_p(comm[:15]), 0, 0, 0)


def _take_descriptors(fds: list[int]) -> None:
    stdin, stdout, stderr, cwd = fds
    os.fchdir(cwd)
    for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
        os.dup2(fd, target)  # inheritable, as the launcher's own 0, 1, 2
    for fd in fds:
        os.close(fd)
    fds.clear()


def _run(conn: _socket.socket, argv: list[str]) -> int:
    from aip.proxy import cli

    def watch(stop: Callable[[str], None]) -> None:
        threading.Thread(
            target=_watch_launcher, args=(conn, stop), name="launcher-watch", daemon=True
        ).start()

    return cli.in_process(argv, on_start=watch)


def _watch_launcher(conn: _socket.socket, stop: Callable[[str], None]) -> None:
    """Forwarded signals are raised here; the launcher's end stops the session as stdin EOF."""
    conn.settimeout(None)
    while True:
        try:
            msg = wire.receive(conn)
        except wire.WireError:
            continue
        except OSError:
            msg = None
        if msg is None:
            stop("agent closed stdin (the launcher is gone)")
            return
        kind, value, _ = msg
        if kind == "signal" and value in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            os.kill(os.getpid(), value)
