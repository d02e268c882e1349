"""``aip-proxy``'s first step: hand this start to the per-user fork server, or say it cannot.

``through_fork_server`` returns the session's exit status when a server of the same code and
identity (aip.proxy.forkserver.identity) took the start, and None for every other case (switched
off, not Linux, no server, a refusal, a crash before the session said it started): the caller
then starts in-process as before, with the same inputs untouched (the session reads nothing
and writes nothing before ``started``). When no server answered, a detached one is started for
the next launches. After ``started`` the launcher only waits: it forwards SIGINT, SIGTERM and
SIGHUP, stops and continues the session with itself (SIGTSTP, SIGCONT: ``_follow_stops``), and
ends as the session ended (its exit code, or the same signal). The session names this
process's pid as its own (aip.shared.own_pid), the one a user sees as the agent's child.

Light on purpose: no typing, logging, socket.py, hashlib or contextlib (with collections and
functools: ~3 ms) before the decision.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # signal.py builds enums: ~1 ms
import os
import sys

from aip.proxy.forkserver import identity, wire

TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket
    from typing import Any, Final

ENV_SWITCH: Final = "AIP_FORK_SERVER"  # "off" (or 0, no, false): always start in-process
FLAG_OFF: Final = "--no-fork-server"
ENV_HANDSHAKE: Final = "AIP_FORK_SERVER_HANDSHAKE_S"
HANDSHAKE_S: Final = 5.0  # connect to "started"; longer: in-process instead
FORWARDED: Final = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP)
EXIT_LOST: Final = 1  # the session and the server both vanished without a status
_OFF: Final = frozenset({"off", "0", "no", "false"})


def enabled(argv: list[str]) -> bool:
    """The switch (``$AIP_FORK_SERVER``, ``--no-fork-server``), the platform (Linux: /proc
    and SO_PEERCRED) and a uid that can be told apart from a stranger's."""
    if os.environ.get(ENV_SWITCH, "").strip().lower() in _OFF:
        return False
    options = argv[: argv.index("--")] if "--" in argv else argv
    if FLAG_OFF in options or not sys.platform.startswith("linux"):
        return False
    return not identity.uid_ambiguous()


def through_fork_server(argv: list[str]) -> int | None:
    if not enabled(argv):
        return None
    try:
        status = identity.own_status()
        ident = identity.process_identity(status=status)
        if identity.unconfinable_problem(ident) is not None:
            return None  # the server would refuse (and root never gets one)
        digest = identity.key(ident)
        path = identity.socket_path(digest)
    except (OSError, ValueError):
        return None
    sock = _connect(path, identity.peer_part(ident))
    if sock is _ABSENT:
        from aip.proxy.forkserver import spawn

        spawn.start_server(path, digest)  # for the next launches (with our mask as it was)
        return None
    if sock is None:
        return None
    # Held from here until ``_wait`` forwards them: the session answers the agent as soon as
    # it has started, maybe before this process runs again, and a SIGTERM in between must
    # reach the session, not end us by default (the session would see only our hang-up). The
    # session's own mask is the one read above, before this. Any way back to the in-process
    # start restores the mask, and what came meanwhile is handled as it would have been.
    before = _signal.pthread_sigmask(_signal.SIG_BLOCK, FORWARDED)
    try:
        session = _handshake(sock, argv, status, digest)
        if session is None:
            return None
        try:
            return _wait(sock, session, int(status.get("SigIgn", "0"), 16), before)
        finally:
            if session >= 0:
                os.close(session)
    finally:
        _signal.pthread_sigmask(_signal.SIG_SETMASK, before)
        sock.close()


_ABSENT: Final = object()  # nobody listens there: start a server


def _connect(path: str, mine: dict[str, str]) -> Any:
    """A connection to the server at ``path`` that is ours (its folder private, its peer of
    our uid, in our namespaces and cgroup, running our binary); ``_ABSENT`` when there is no
    folder or nobody listens; None when someone else does (never replaced from here)."""
    folder = os.path.dirname(path)
    if identity.folder_problem(folder) is not None:
        return _ABSENT if not os.path.lexists(folder) else None
    sock = wire.unix_socket()
    try:
        sock.settimeout(_handshake_s())
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            return _ABSENT
        pid, uid, _ = wire.peer_credentials(sock)
        if uid != os.getuid() or pid <= 0:
            raise OSError("the server runs as another user")
        if identity.peer_view(pid) != mine:
            raise OSError("the server runs elsewhere (namespaces, cgroup, root or binary)")
    except OSError:
        sock.close()
        return None
    return sock


def _handshake_s() -> float:
    try:
        return max(float(os.environ.get(ENV_HANDSHAKE) or HANDSHAKE_S), 0.01)
    except ValueError:
        return HANDSHAKE_S


def _handshake(
    sock: _socket.socket, argv: list[str], status: dict[str, str], key: str
) -> int | None:
    """Send this process's inputs; once the session said ``started``, the pidfd it sent of
    itself (-1 if none came), else None."""
    request = _request(argv, status, key)
    cwd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        wire.send(sock, "request", request, [0, 1, 2, cwd])
        reply = wire.receive(sock, max_fds=1)
    except (OSError, wire.WireError):
        return None
    finally:
        os.close(cwd)
    if reply is None:
        return None
    kind, _, fds = reply
    if kind != "started":
        for fd in fds:
            os.close(fd)
        return None
    return fds[0] if fds else -1


def _request(argv: list[str], status: dict[str, str], key: str) -> Any:
    """This process's inputs (what limits it, the server reads from /proc itself)."""
    return {
        "key": key,
        "argv": [sys.argv[0], *argv],
        "environ": list(os.environb.items()),
        "exec_environ": _exec_environ(),
        "umask": int(status.get("Umask", "0022"), 8),
        "sig_ignored": int(status.get("SigIgn", "0"), 16),
        "sig_blocked": int(status.get("SigBlk", "0"), 16),
        "affinity": sorted(os.sched_getaffinity(0)),
        "comm": identity._read("/proc/self/comm").strip().encode(),
    }


def _exec_environ() -> bytes:
    """The environment this process was exec'd with (aip.proxy.server_env reads it)."""
    with open("/proc/self/environ", "rb") as f:
        return f.read()


def _wait(sock: _socket.socket, session: int, ignored: int, mask: set[_signal.Signals]) -> int:
    """Forward our signals to the session until it ends; its exit status is ours. ``mask``:
    the signal mask to restore once the handlers are in place (what came meanwhile is sent)."""

    def forward(signum: int, frame: object) -> None:
        try:  # noqa: SIM105 - contextlib costs this light module ~3 ms of imports
            wire.send(sock, "signal", signum)
        except OSError:
            pass

    for sig in FORWARDED:
        _signal.signal(sig, forward)
    if session >= 0:
        _follow_stops(session, ignored)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)
    sock.settimeout(None)
    while True:
        try:
            msg = wire.receive(sock)
        except wire.WireError:
            continue
        except OSError:
            msg = None
        if msg is None:
            os.write(2, b"aip-proxy: the proxy session ended without an exit status\n")
            return EXIT_LOST
        kind, value, _ = msg
        if kind == "exit" and type(value) is int:
            return value
        if kind == "signaled" and type(value) is int:
            return _die_by(value)


def _follow_stops(session: int, ignored: int) -> None:
    """Job control as the in-process start has it (one process: Ctrl-Z stops the proxy, ``fg``
    or ``bg`` continues it): on SIGTSTP stop the session (``session``: its pidfd, so never
    another process), then ourselves with the default action; once continued, continue the
    session; any SIGCONT we get is passed on. SIGSTOP for the session: it runs in the fork
    server's orphaned process group, where the kernel discards SIGTSTP. Where the kernel
    discards ours (an orphaned group of our own) we go on at once, and so does the session, as
    an in-process start would not stop either. A SIGTSTP ignored at our start stays ignored
    (the in-process start ignores it). If we die while stopped (SIGKILL), the fork server
    continues the session, which then ends on our hang-up (aip.proxy.forkserver.server). A
    SIGSTOP sent to us cannot be caught: the session keeps serving then."""

    def send(sig: int) -> None:
        try:  # noqa: SIM105 - as in ``forward``
            _signal.pidfd_send_signal(session, sig)
        except OSError:
            pass

    def stop(signum: int, frame: object) -> None:
        send(_signal.SIGSTOP)
        try:
            _signal.signal(_signal.SIGTSTP, _signal.SIG_DFL)
            os.kill(os.getpid(), _signal.SIGTSTP)  # stopped here until SIGCONT
        finally:
            _signal.signal(_signal.SIGTSTP, stop)
            send(_signal.SIGCONT)

    _signal.signal(_signal.SIGCONT, lambda signum, frame: send(_signal.SIGCONT))
    if not ignored & (1 << (_signal.SIGTSTP - 1)):
        _signal.signal(_signal.SIGTSTP, stop)


def _die_by(signum: int) -> int:
    """End as the session ended: by the same signal (a core-dumping one dumps nothing here)."""
    try:
        _signal.signal(signum, _signal.SIG_DFL)
        _signal.pthread_sigmask(_signal.SIG_UNBLOCK, [signum])
        os.kill(os.getpid(), signum)
    except (OSError, ValueError):
        pass
    return 128 + signum
