"""Run one proxy session: start the server, the two relay threads, and shut down in order.

Blocking threads, not asyncio (perf-limits.md §1: a two-thread relay costs ~3x a direct pipe,
stdlib asyncio ~9x, plus ~40 ms of import). The main thread only waits for the first reason
to stop (agent closed stdin, server exited, host gone, SIGTERM/SIGINT) and then tears down.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import select
import signal
import subprocess
import threading
from collections.abc import Callable
from types import FrameType

from aip.proxy import lean
from aip.proxy.audit.recorder import Recorder, record_late_allow
from aip.proxy.child import Child, become_subreaper
from aip.proxy.child import exit_status as child_exit_status
from aip.proxy.protection import Protection
from aip.proxy.relay import dlp_filter, downstream, upstream
from aip.proxy.relay.asks import Asks
from aip.proxy.relay.session import Session
from aip.proxy.reload import PolicyReloader
from aip.proxy.sandbox import early
from aip.proxy.sandbox.launch import Probe, SandboxUnavailable, server_prefix, wrapper_levels
from aip.proxy.sandbox.stdout_pipe import StdoutFifo
from aip.proxy.server_env import server_environment
from aip.proxy.settings import Settings
from aip.proxy.stdio import Wire, widen_pipe
from aip.shared import logs
from aip.shared.digests import canonical_digest
from aip.shared.own_pid import own_pid
from aip.shared.policy.file import PolicyPin
from aip.shared.policy.model import Policy
from aip.shared.policy.ratelimit import RateLimiter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

    from aip.proxy.approval.api import ApprovalClient

log = logs.get(__name__)

EXIT_SPAWN_FAILED: Final = 2  # the server command cannot be started: a configuration error
WATCHDOG_EXTRA_S: Final = 1.0
HANGUP_POLL_MS: Final = 1000  # how soon the stdin watch notices the relay ended by itself
# The host half-closed a socket stdin (Linux only; elsewhere a full close's POLLHUP still counts).
_HANGUP: Final = getattr(select, "POLLRDHUP", 0)


class _Stop:
    """The first reason to stop wins; the main thread waits for it.

    The main thread waits in ``select`` on a self-pipe that is also the signal wakeup fd: the
    kernel may hand SIGTERM to any thread, and a main thread blocked on a lock would then not
    run the Python handler until something else woke it."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason = ""
        self.on_hup: Callable[[], None] | None = None  # SIGHUP: reload the policy, not stop
        self._r, self._w = os.pipe()
        os.set_blocking(self._w, False)

    def __call__(self, reason: str) -> None:
        if not self.event.is_set():
            self.reason = reason
            self.event.set()
        with contextlib.suppress(OSError):  # full pipe: a wake-up is already pending
            os.write(self._w, b"\0")

    def install_signal_handlers(self) -> None:
        # The handler only records the reason; the main thread does the work (STYLE §4.3.5).
        def handler(signum: int, frame: FrameType | None) -> None:
            if signum == signal.SIGHUP:
                if self.on_hup is not None:  # before the session exists: nothing to reload
                    self.on_hup()
                return
            self(f"signal {signal.Signals(signum).name}")

        signal.set_wakeup_fd(self._w)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, handler)

    def wait(self) -> None:
        poller = select.poll()  # not select(): a pipe fd may be >= 1024 in a long process
        poller.register(self._r, select.POLLIN)
        while not self.event.is_set():
            poller.poll()
            os.read(self._r, 512)  # the signal handler (if any) runs right after this call


def run(
    settings: Settings,
    policy: Policy,
    wire_fd: int,
    stdin_fd: int = 0,
    *,
    pin: PolicyPin | None = None,
    probe: Probe | None = None,
) -> int:
    """Serve one session; ``pin`` is the folder ``policy`` was loaded through (reloads read
    through it); ``probe``: the sandbox probe ``sandbox.early.start`` began (the caller ends
    it if this returns before using it)."""
    session_id = os.urandom(8).hex()  # secrets.token_hex(8) without importing secrets
    fixed_agent = settings.agent_id or os.environ.get("AIP_AGENT_ID") or None
    dlp = dlp_filter.for_policy(policy)  # compiled now, before the relay threads read it
    recorder = Recorder(
        session=session_id,
        server=str(dlp.display_value(settings.server_name)),  # a launcher's argument
        policy_name=policy.name,
        policy_sha256=policy.sha256,
        mode=policy.mode.value,
        agent_id=str(dlp.display_value(fixed_agent or f"unknown-{session_id[:6]}")),
        sink=Wire(2, "stderr (decision records)"),
        redact=dlp.display_value,  # ask payloads
        scan=dlp.display_scan,  # audit records
    )
    # Every line on our stderr passes the display DLP of the policy in effect (log lines
    # quote ids, methods, tool names and details: client and server text).
    logs.set_redactor(lambda text: str(recorder.redact(text)))
    stop = _Stop()
    stop.install_signal_handlers()  # before the server exists: a SIGTERM now still cleans up
    if settings.on_start is not None:  # a forked session's launcher watch (forkserver.session)
        settings.on_start(stop)
    # DESIGN §4.5: the policy file, the aip runtime and state dirs, the audit logs (the one
    # the approver announces joins at its welcome); one builder for start, reload, welcome.
    protection = Protection(
        cwd=os.getcwd(),
        endpoint=settings.approver,
        extra=settings.extra_protected,
        command=settings.command,
    )
    context = protection.context(policy.path)
    _ensure_state_dirs()  # a mount needs an existing target: make ours before hiding them
    # Inside a sandbox, exec would fail too late to say so.
    if early.missing_program(settings.command[0]):
        log.error("cannot start the MCP server %r: not found", settings.command[0])
        return EXIT_SPAWN_FAILED
    try:
        prefix = server_prefix(
            settings.sandbox,
            [*policy.protected_paths, *context.always_protected],
            cwd=context.cwd,
            policy_path=policy.path,
            command=settings.command,
            early=probe,
        )
        levels = wrapper_levels(prefix)
        fifo = StdoutFifo() if levels else None  # a wrapper would hold a pipe: see stdout_pipe
    except SandboxUnavailable as exc:
        log.error("%s", exc)
        return EXIT_SPAWN_FAILED
    except OSError as exc:  # e.g. no writable temporary folder (tempfile's own error)
        log.error(
            "cannot prepare the MCP server's sandbox: %s (set TMPDIR to a folder you can write)",
            exc,
        )
        return EXIT_SPAWN_FAILED
    become_subreaper()  # after the sandbox probe: its processes are not ours to reap
    try:
        child = Child(
            [*prefix, *(fifo.launcher() if fifo else []), *settings.command],
            wrappers=levels,
            fifo=fifo,
            env=server_environment(),  # as given to us, without the interpreter's coercion
            on_exit=lambda: stop("MCP server exited"),
            stderr=subprocess.PIPE if dlp.stderr is not None else None,  # else inherited
        )
    except OSError as exc:
        log.error("cannot start the MCP server %r: %s", settings.command[0], exc)
        if fifo is not None:
            fifo.cleanup()
        return EXIT_SPAWN_FAILED
    stderr_pump = None
    if dlp.stderr is not None and child.proc.stderr is not None:
        stderr_pump = dlp_filter.start_stderr_pump(child.proc.stderr, dlp.stderr)
    for fd in (wire_fd, child.stdout.fileno()):  # the direction that carries large results
        widen_pipe(fd)
    log.info(
        "session %s: policy %r (%s mode), MCP server %r pid=%d",
        session_id,
        policy.name,
        policy.mode.value,
        settings.server_name,
        child.pid,
    )
    session = Session(
        policy=policy,
        limiter=RateLimiter(),
        context=context,
        recorder=recorder,
        host=Wire(wire_fd, "host stdout", on_broken=lambda: stop("host closed our stdout")),
        server=Wire(child.stdin.fileno(), "server stdin", closer=child.stdin.close),
        agent_id_fixed=fixed_agent is not None,
    )
    session.server_sha256 = canonical_digest(settings.command)
    protection.attach(session)
    session.on_client_roots = protection.on_client_roots

    def connect() -> ApprovalClient:
        # The approver's client and protocol load when the session first connects (after the
        # agent's initialize), not before the first answer (tests/proxy/test_startup_imports).
        from aip.proxy.approval.connect import make_approval_client

        hello: dict[str, Any] = {
            "session": session_id,
            "pid": own_pid(),
            "agent_id": recorder.agent_id,  # as known when the first ask comes, or initialize
            "server": recorder.server,
            # The policy in effect now (a reload may have replaced the one we started with).
            "policy": {"name": recorder.policy_name, "sha256": recorder.policy_sha256},
        }
        return make_approval_client(
            settings.approver,
            hello,
            protection.on_audit_path,
            audit=recorder.outbox,  # the recorder fills it, the client sends it
            on_late_allow=functools.partial(record_late_allow, recorder),
        )

    reloader = None
    if policy.path is not None:
        reloader = PolicyReloader(
            session,
            recorder,
            path=policy.path,
            protection=protection,
            poll_interval_s=settings.reload_interval_s,
            stderr_filtered=dlp.stderr is not None,
            pin=pin,
        )
        reloader.start()
        stop.on_hup = reloader.request

    asks = Asks(session, connect, settings.progress_interval_s)
    if fixed_agent is not None:
        asks.connect_soon()  # else at initialize, once clientInfo names the agent
    session.asks = asks

    down_done = threading.Event()

    def down_ended() -> None:
        # No more server output can come: a server that closed its stdout but runs on is as
        # good as gone. Its pending calls are answered now, and the tree is stopped.
        down_done.set()
        session.close()
        stop("MCP server closed its stdout")

    _thread(
        "relay-down",
        down_ended,
        downstream.pump,
        session,
        child.stdout.fileno(),  # Popen's file object keeps owning the fd
        settings.max_server_line_bytes,
    )
    up_done = threading.Event()

    def up_ended() -> None:
        up_done.set()
        stop("agent closed stdin")

    _thread("relay-up", up_ended, upstream.pump, session, stdin_fd, settings.max_line_bytes)
    threading.Thread(
        target=_watch_hangup,
        args=(stdin_fd, up_done, settings.stdin_grace_s, stop),
        name="stdin-hangup",
        daemon=True,
    ).start()

    lean.settle_when_quiet(lambda: recorder.seq)  # start-up's garbage: aip.proxy.lean
    stop.wait()
    log.info("stopping: %s", stop.reason)
    if reloader is not None:
        stop.on_hup = None
        reloader.stop()
    # Last resort: a host that stopped reading our stdout could block the final writes.
    _watchdog(settings.stdin_grace_s + 3 * settings.term_grace_s + WATCHDOG_EXTRA_S, child)
    asks.close()  # pending asks are denied (shutdown); nothing approved is forwarded from now
    if child.exited.is_set():
        down_done.wait(settings.term_grace_s)  # relay what the server wrote before exiting
        child.kill_tree()  # the proxy owns the whole tree, even after a graceful exit
        returncode = child.returncode
    else:
        returncode = child.stop(
            settings.stdin_grace_s, settings.term_grace_s, close_stdin=session.server.close
        )
    down_done.wait(settings.term_grace_s)
    if stderr_pump is not None:
        stderr_pump.join(settings.term_grace_s)  # the server's last stderr lines, redacted
    session.close()  # every forwarded request still unanswered gets server_exited
    code = child_exit_status(returncode if returncode is not None else -signal.SIGKILL)
    log.info("exiting with %d", code)
    return code


def _ensure_state_dirs() -> None:
    early.ensure_state_dirs(lambda path, exc: log.debug("cannot prepare %s: %s", path, exc))


def _watch_hangup(
    fd: int,
    up_done: threading.Event,
    grace_s: float,
    stop: Callable[[str], None],
    poll_ms: int = HANGUP_POLL_MS,
) -> None:
    """Stop when the agent closed stdin but the relay cannot see it: blocked writing to a
    server that stopped reading, it never reads the EOF. poll() reports POLLHUP on a pipe
    whose writers are all gone, even with unread data left; a socket stdin (Node hosts spawn
    us with socketpairs) that the host only shut down for writing reports POLLRDHUP alone.
    Then, once the relay has made no progress on what is left unread for ``grace_s``, it is
    stuck (hardening finding). A tty reports only a hang-up, never a typed EOF."""
    poller = select.poll()
    poller.register(fd, _HANGUP)  # plus POLLHUP / POLLERR / POLLNVAL, always reported
    try:
        while not up_done.is_set() and not poller.poll(poll_ms):
            pass
        left = -1
        while not up_done.wait(grace_s):
            now = _unread_bytes(fd)
            if now == left:
                stop("agent closed stdin (the relay is blocked writing to the server)")
                return
            left = now
    except OSError:  # stdin closed under us at shutdown
        return


def _unread_bytes(fd: int) -> int:
    import termios  # at the close only: not imported for it at start-up

    buf = bytearray(4)
    fcntl.ioctl(fd, termios.FIONREAD, buf)
    return int.from_bytes(buf, "little")


def _watchdog(after_s: float, child: Child) -> None:
    def fire() -> None:
        log.error("shutdown did not finish in %.1f s; killing the server tree and exiting", after_s)
        child.kill_tree()
        rc = child.returncode
        os._exit(child_exit_status(rc) if rc is not None else 1)

    timer = threading.Timer(after_s, fire)
    timer.daemon = True
    timer.start()


def _thread(name: str, on_end: Callable[[], None], target: Callable[..., None], *args: Any) -> None:
    def body() -> None:
        try:
            target(*args)
        except Exception:  # task boundary
            log.exception("%s failed", name)
        finally:
            on_end()

    threading.Thread(target=body, name=name, daemon=True).start()
