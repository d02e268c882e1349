"""The fork server: one per user, code and identity; imports the proxy once, forks sessions.

Single-threaded by construction and checked before every fork (no thread, no zmq context:
a fork copies only the calling thread, and a lock held elsewhere would stay held). One
``poll`` loop: the listening socket, SIGCHLD through a wakeup pipe, each session's launcher
connection (its hang-up continues a session its launcher stopped), and a periodic check.
Each connection: the peer's uid (SO_PEERCRED) must be ours, the request well formed and of
our key; then fork, and the child becomes the session (aip.proxy.forkserver.session). The
parent keeps the connection to report the child's end (``exit``/``signaled``) once reaped.
It stops accepting when its code changed on disk (the next launcher starts a new one) and
exits once idle: no session for ``$AIP_FORK_SERVER_IDLE_S`` (600 s), or stale and empty.
"""

from __future__ import annotations

import _socket
import contextlib
import fcntl
import gc
import os
import select
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Final

from aip.proxy.forkserver import identity, spawn, wire
from aip.proxy.lean import is_deferred
from aip.shared import logs

log = logs.get(__name__)

ENV_IDLE: Final = "AIP_FORK_SERVER_IDLE_S"
IDLE_S: Final = 600.0
ENV_CHECK: Final = "AIP_FORK_SERVER_CHECK_S"
CHECK_S: Final = 2.0  # how often the code on disk is compared with what was loaded
ACCEPT_S: Final = 2.0  # a connected launcher sends its request at once
MAX_SESSIONS: Final = 256
BACKLOG: Final = 64
# What a session imports before its first answer (tests/proxy/test_startup_imports keeps the
# rest deferred: zmq, asyncio, psutil, the approval client load in the session when needed).
PRELOAD: Final = (
    "aip.proxy.cli",
    "aip.proxy.runner",
    "aip.proxy.relay.upstream",
    "aip.proxy.relay.downstream",
    "aip.proxy.relay.asks",
    "aip.proxy.reload",
    "aip.proxy.protection",
    "aip.proxy.sandbox.launch",
    "aip.proxy.sandbox.early",
    "aip.proxy.forkserver.session",
    "aip.shared.policy.load",
    "aip.shared.policy.engine",
    "aip.shared.jsonrpc",
    # A session whose policy is not in the node cache parses it (and keeps its graph there).
    "aip.shared.policy.pyyaml",
    "aip.shared.safe_write",
    "importlib.machinery",  # the node cache's PyYAML stamp (inspect brought it before)
    "orjson",
    "re2",
    "ctypes",  # the subreaper prctl (child.become_subreaper): ~2 ms a session would import
    "resource",  # the launcher's limits (session._adopt)
    # Loaded by every session once its agent is named (~17 ms of CPU on the approval thread
    # while the first calls relay); light since pyzmq and typing left it (issue 16).
    "aip.proxy.approval.zmq_client",
)


class Server:
    def __init__(
        self, path: str, key: str, ident: dict[str, str], idle_s: float, check_s: float = CHECK_S
    ) -> None:
        self.path, self.key, self.ident = path, key, ident
        self.idle_s, self.check_s = idle_s, check_s
        self.children: dict[int, _socket.socket] = {}
        self.stale = False  # no new sessions: ``why``
        self.why = ""
        self.last_busy = time.monotonic()
        self.last_check = time.monotonic()
        self.stamp = identity.code_stamp()
        self.loaded = _loaded_files()
        self._lock_fd = -1
        self._listener: socket.socket | None = None
        self._bound = (-1, -1)
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._poller = select.poll()

    def bind(self) -> bool:
        """Take the single-instance lock, then the socket; False when another server has it."""
        self._lock_fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # a dead server's socket: we hold the lock
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        sock.bind(self.path)
        os.chmod(self.path, 0o600)
        st = os.stat(self.path)
        self._bound = (st.st_dev, st.st_ino)  # a socket's fstat is sockfs's, not the file's
        sock.listen(BACKLOG)
        sock.setblocking(False)
        self._listener = sock
        return True

    def serve(self) -> None:
        signal.set_wakeup_fd(self._wake_w)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._retire_on_signal)
        # Whatever mask the launcher that started us had: we must hear SIGTERM and SIGCHLD.
        # (Sessions take their launcher's mask from the request, never ours.)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        assert self._listener is not None
        poller = self._poller
        poller.register(self._listener.fileno(), select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while True:
            events = poller.poll(min(self.check_s, self.idle_s) * 1000)
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_r, 512)
            self._continue(events)
            self._reap()
            if any(fd == self._listener.fileno() for fd, _ in events) and not self.stale:
                self._accept()
            self._check_code()
            if self.children:
                self.last_busy = time.monotonic()
            elif self.stale or time.monotonic() - self.last_busy >= self.idle_s:
                log.info("exiting: %s", self.why if self.stale else "idle")
                return

    def _retire_on_signal(self, signum: int, frame: Any) -> None:
        self.why = f"signal {signum}"
        self.stale = True
        self._unlink()

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                conn, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("accept: %s", exc)
                return
            try:
                self._handle(conn)
            except (OSError, wire.WireError) as exc:
                log.info("connection dropped: %s", exc)
                conn.close()
            except Exception:  # one connection's boundary: the launcher starts in-process
                log.exception("connection dropped")
                conn.close()

    def _handle(self, conn: _socket.socket) -> None:
        pid, uid, _ = wire.peer_credentials(conn)
        if uid != os.getuid():
            raise wire.WireError(f"peer uid {uid} is not ours")
        pidfd = wire.peer_pidfd(conn)  # OSError without SO_PEERPIDFD: no session
        try:
            conn.settimeout(ACCEPT_S)
            msg = wire.receive(conn, max_fds=wire.FDS)
            if msg is None:
                raise wire.WireError("closed before its request")
            kind, value, fds = msg
            try:
                if kind != "request" or len(fds) != wire.FDS:
                    raise wire.WireError(f"expected a request with {wire.FDS} descriptors")
                request = wire.check_request(value)
                launcher, refusal = self._launcher(pid, pidfd)
                refusal = refusal or self._refusal(request)
                if refusal is not None:
                    log.info("refused pid %d: %s", pid, refusal)
                    wire.send(conn, "refused", refusal)
                    conn.close()
                    return
                self._fork(conn, request, fds, launcher, pidfd)
            finally:
                for fd in fds:
                    os.close(fd)
        finally:
            os.close(pidfd)

    def _launcher(self, pid: int, pidfd: int) -> tuple[dict[str, Any], str | None]:
        """What confines and limits the peer, read from /proc by us (a request could lie):
        its identity must equal ours and show nothing that could hide a confinement."""
        ident = identity.process_identity(f"/proc/{pid}")
        try:
            rlimits, nice = identity.peer_limits(pid)
        except (ValueError, IndexError) as exc:  # a /proc layout we do not know: no session
            return {}, f"cannot read the launcher's limits: {exc}"
        try:
            signal.pidfd_send_signal(pidfd, 0)  # still the process that connected: no pid reuse
        except ProcessLookupError:
            return {}, "the launcher is gone"
        # The pid the session reports as its own (aip.shared.own_pid): the kernel's, pinned.
        launcher = {"identity": ident, "rlimits": rlimits, "nice": nice, "pid": pid}
        problem = identity.unconfinable_problem(ident)
        if problem is not None:
            return launcher, f"the launcher may be confined invisibly: {problem}"
        differ = sorted(
            k for k in set(ident) | set(self.ident) if ident.get(k) != self.ident.get(k)
        )
        if differ:
            return launcher, f"identity differs: {', '.join(differ)}"
        return launcher, None

    def _refusal(self, request: dict[str, Any]) -> str | None:
        if request["key"] != self.key:
            return "another code or identity"
        self._check_code(force=time.monotonic() - self.last_check >= 1.0)
        if self.stale:
            return "the code changed on disk"
        if len(self.children) >= MAX_SESSIONS:
            return f"{MAX_SESSIONS} sessions running"
        if threading.active_count() != 1 or len(os.listdir("/proc/self/task")) != 1:
            self.why = "a thread was started"
            self.stale = True  # never fork from here again
            self._unlink()
            return "the fork server is not single-threaded"
        return None

    def _fork(
        self,
        conn: _socket.socket,
        request: dict[str, Any],
        fds: list[int],
        launcher: dict[str, Any],
        pidfd: int,
    ) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        inherited = [self._lock_fd, self._wake_r, self._wake_w, pidfd]
        inherited += [c.fileno() for c in self.children.values()]
        assert self._listener is not None
        inherited.append(self._listener.fileno())
        # Signals wait until the child has replaced our handlers (the session takes the
        # launcher's mask): none of the server's may run in a session.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            pid = os.fork()
            if pid == 0:
                from aip.proxy.forkserver import session

                session.become(conn, request, fds, inherited, launcher)  # never returns
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        self.children[pid] = conn
        self._poller.register(conn.fileno(), 0)  # POLLHUP: the launcher's end (_continue)
        log.info(
            "session pid=%d started for launcher pid %d (%d running)",
            pid,
            launcher["pid"],
            len(self.children),
        )

    def _continue(self, events: list[tuple[int, int]]) -> None:
        """A launcher is gone: SIGCONT its session, which its launcher may have stopped
        (Ctrl-Z, aip.proxy.forkserver.launcher) and can no longer continue; running, it then
        reads the end of the connection and stops as when the agent closes stdin. An unreaped
        child of ours: its pid cannot have been reused."""
        hung = {fd for fd, ev in events if ev & (select.POLLHUP | select.POLLERR)}
        for pid, conn in self.children.items():
            if conn.fileno() in hung:
                self._poller.unregister(conn.fileno())
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is None:
                continue
            with contextlib.suppress(KeyError):
                self._poller.unregister(conn.fileno())
            if os.WIFSIGNALED(status):
                kind, value = "signaled", os.WTERMSIG(status)
            else:
                kind, value = "exit", os.waitstatus_to_exitcode(status)
            log.info("session pid=%d ended: %s %d", pid, kind, value)
            with contextlib.suppress(OSError):
                wire.send(conn, kind, value)  # the launcher may have it already (session's own)
            conn.close()

    def _check_code(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.stale or (not force and now - self.last_check < self.check_s):
            return
        self.last_check = now
        if identity.code_stamp() != self.stamp or _changed(self.loaded):
            log.info("the code on disk changed: no new sessions from this server")
            self.why = "the code changed"
            self.stale = True
            self._unlink()

    def _unlink(self) -> None:
        """Remove our socket (only ours: a newer server may have taken the name)."""
        with contextlib.suppress(OSError):
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self._bound:
                os.unlink(self.path)


def _changed(loaded: dict[str, tuple[int, int]]) -> bool:
    """A file loaded at start is not as it was (a module imported later, e.g. ``resource``
    for a peer's limits, was read when it was imported: it is current)."""
    for name, seen in loaded.items():
        try:
            st = os.stat(name)
        except OSError:
            return True
        if (st.st_size, st.st_mtime_ns) != seen:
            return True
    return False


def _loaded_files() -> dict[str, tuple[int, int]]:
    """Size and mtime of every module file this process loaded (dependencies included)."""
    out = {}
    for module in list(sys.modules.values()):
        if is_deferred(module):  # not run yet, so no file read (reading __file__ would run it)
            continue
        name = getattr(module, "__file__", None)
        if isinstance(name, str):
            try:
                st = os.stat(name)
            except OSError:  # frozen, or in a zip: not a file of its own
                continue
            out[name] = (st.st_size, st.st_mtime_ns)
    return out


def main() -> None:
    """``python -P -c ... PATH KEY`` (aip.proxy.forkserver.spawn)."""
    from aip.proxy import lean
    from aip.shared import paths

    lean.start_process()  # as an aip-proxy process: no OpenSSL (sessions inherit the modules)
    path, key = sys.argv[1], sys.argv[2]
    logs.configure("aip-fork-server", tag=os.path.basename(path), direct=True)
    ident = identity.process_identity()
    if identity.unconfinable_problem(ident) is not None:
        log.error("not started: %s", identity.unconfinable_problem(ident))
        sys.exit(1)
    if identity.uid_ambiguous():
        log.error("not started: our uid is this user namespace's overflow uid")
        sys.exit(1)
    if identity.key(ident) != key:
        log.error("not started: this process's code or identity differs from the launcher's")
        with contextlib.suppress(OSError):  # launchers of that key stop starting servers
            os.close(os.open(path + spawn.MISMATCH, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        sys.exit(1)
    try:
        paths.ensure_private_dir(Path(os.path.dirname(path)))
    except (OSError, paths.UnsafePathError) as exc:
        log.error("not started: %s", exc)
        sys.exit(1)
    idle_s, check_s = _env_seconds(ENV_IDLE, IDLE_S), _env_seconds(ENV_CHECK, CHECK_S)
    for name in PRELOAD:
        __import__(name)
    server = Server(path, key, ident, idle_s, check_s)
    if not server.bind():
        log.info("another fork server serves %s", path)
        return
    gc.collect()
    gc.freeze()  # what the sessions share stays out of their collections (and unwritten)
    gc.enable()  # a session turns it off for its own start-up (lean.start_process)
    log.info("serving %s (pid %d, idle timeout %.0f s)", path, os.getpid(), idle_s)
    try:
        server.serve()
    finally:
        server._unlink()


def _env_seconds(name: str, default: float) -> float:
    try:
        return max(float(os.environ.get(name) or default), 0.05)
    except ValueError:
        return default
