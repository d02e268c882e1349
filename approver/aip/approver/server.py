"""The approver's ROUTER loop: peers, sessions, dispatch, and replies sent exactly once.

One ROUTER bound on an ipc endpoint; each frame is checked (peer uid, size, strict schema)
before anything else. The socket monitor is drained before every message, so a connection
that dropped is forgotten before a new one that reuses its fd can speak (DESIGN §6, §7).
With ``remote_listen``, a second, CURVE one (remote.listener, DESIGN §10): its frames arrive
authenticated, with their origin, and take the same dispatch minus aipctl's commands.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, Final

import zmq
from zmq.utils.monitor import parse_monitor_message

from aip.approver.ask_record import ask_record
from aip.approver.ask_redact import redacted
from aip.approver.audit.decision_log import DecisionLog
from aip.approver.audit.writer import AuditUnavailable
from aip.approver.dialogs.choose import Choice
from aip.approver.endpoint_watch import watch_endpoint
from aip.approver.grants.desk import GrantDesk
from aip.approver.grants.model import Grant, Kind
from aip.approver.handshake import hello_refusal, malformed_reply
from aip.approver.peer import peer_of, readable, source_fd
from aip.approver.queue import AskQueue
from aip.approver.remote.bridge import open_listener, split_route, stamp
from aip.approver.remote.listener import RemoteListener
from aip.approver.remote.origin import Origin
from aip.approver.scheduler import Scheduler, Ticket
from aip.approver.server_config import ServerConfig
from aip.approver.session_keys import SessionKeys, keys_dir
from aip.approver.sessions import Session, SessionTable
from aip.approver.status import StatusConfig, status_snapshot
from aip.shared.audit.stamp import user_name
from aip.shared.dlp.redactor import Redactor
from aip.shared.dlp.scan import DlpError
from aip.shared.outcomes import Outcome
from aip.shared.paths import socket_path
from aip.shared.protocol.codec import ProtocolError, encode
from aip.shared.protocol.frames import ToProxy, decode_to_approver
from aip.shared.protocol.grants import Grants
from aip.shared.protocol.messages import (
    PROTO,
    Ask,
    Audit,
    AuditAck,
    Bye,
    Cancel,
    Decision,
    Error,
    ErrorCode,
    Hello,
    HumanDecision,
    Welcome,
)
from aip.shared.protocol.status import Status, StatusReply

log = logging.getLogger(__name__)

RECV_BATCH: Final = 64  # messages per wake-up before yielding to the dialog and timers
HEARTBEAT_IVL_MS: Final = 1000
HEARTBEAT_TIMEOUT_MS: Final = 3000
SHUTDOWN_LINGER_MS: Final = 1000  # let the last SHUTDOWN decisions reach their proxies


class ApprovalServer:
    def __init__(self, config: ServerConfig, choice: Choice, decisions: DecisionLog) -> None:
        self._config = config
        self._choice = choice
        self._log = decisions
        self._sessions = SessionTable()
        self._queue: AskQueue[Ticket] = AskQueue(
            max_per_session=config.max_pending_session,
            max_total=config.max_pending,
            per_minute=config.ask_per_minute,
            burst=config.ask_burst,
        )
        self._scheduler: Scheduler | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._router: zmq.Socket[bytes] | None = None
        self._wake = asyncio.Event()
        self._refused: set[bytes] = set()
        self._redactor: Redactor | None = None
        self._uid = os.getuid()
        self._keys = SessionKeys(keys_dir(Path(config.audit_path)) if config.audit_path else None)
        self._remote: RemoteListener | None = None
        self.exit_code = 0
        self._grants = GrantDesk(
            lambda: asyncio.get_running_loop().time(),
            lambda rec: self._log.record(rec, durable=False),
            self._spawn,
        )

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> int:
        """Serve until ``stop`` is set (signals) or the endpoint is stolen; returns exit code."""
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        router = ctx.socket(zmq.ROUTER)
        router.linger = 0
        router.maxmsgsize = self._config.max_frame_bytes  # bigger peers are disconnected
        router.heartbeat_ivl = HEARTBEAT_IVL_MS
        router.heartbeat_timeout = HEARTBEAT_TIMEOUT_MS
        monitor = router.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self._router = router
        try:
            router.bind(self._config.endpoint)
            inode = socket_path(self._config.endpoint).stat().st_ino
            self._redactor = Redactor.builtin_only()  # ~25 ms of RE2 compiles, not on an ask
            remote = self._open_remote() if self._config.remote_listen else None  # or ConfigError
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                loops = [tg.create_task(self._receive(router, monitor))]
                if remote is not None:
                    loops.append(tg.create_task(remote.run()))
                if self._choice.backend is not None:
                    self._scheduler = Scheduler(
                        self._choice.backend,
                        self._queue,
                        self._finished,
                        self._config.timeout_s,
                        offer=self._grants.offer_ticket,
                    )
                    loops.append(tg.create_task(self._scheduler.run()))
                watch = watch_endpoint(self._config.endpoint, inode, self._config.watchdog_s)
                stolen = tg.create_task(watch)
                if ready is not None:
                    ready.set()
                waiter = tg.create_task(stop.wait())
                await asyncio.wait([waiter, stolen], return_when=asyncio.FIRST_COMPLETED)
                self.exit_code = 1 if stolen.done() else 0
                log.info("shutting down: denying every pending ask")
                if self._scheduler is not None:
                    self._scheduler.shutdown()  # replies are queued as tasks in tg
                self._grants.close()  # nothing is remembered across a restart
                for task in (*loops, stolen, waiter):
                    task.cancel()
        finally:
            router.linger = SHUTDOWN_LINGER_MS
            monitor.close(linger=0)
            router.close()
            ctx.term()
        return self.exit_code

    # -- receiving ----------------------------------------------------------------------

    async def _receive(self, router: zmq.Socket[bytes], monitor: zmq.Socket[bytes]) -> None:
        """Plain sockets watched with add_reader (zmq.asyncio's poller costs ~0.1 ms a wake).
        A zmq FD only signals edges, so EVENTS is checked before every sleep, and every send
        (which may swallow an edge) sets ``_wake`` too."""
        loop = asyncio.get_running_loop()
        for sock in (router, monitor):
            loop.add_reader(sock.FD, self._wake.set)
        try:
            while True:
                self._wake.clear()
                for _ in range(RECV_BATCH):
                    self._drain_monitor(monitor)  # disconnects before any later message
                    try:
                        frames = router.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    try:
                        self._on_frames(frames)
                    except Exception:  # one message's boundary: never stop serving the rest
                        log.exception("failed to handle a message; dropped")
                self._drain_monitor(monitor)
                if readable(router) or readable(monitor):
                    await asyncio.sleep(0)  # more to read: let the dialog and timers run first
                    continue
                await self._wake.wait()
        finally:
            for sock in (router, monitor):
                loop.remove_reader(sock.FD)

    def _drain_monitor(self, monitor: zmq.Socket[bytes]) -> None:
        while True:
            try:
                event = parse_monitor_message(monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            if event["event"] == zmq.EVENT_DISCONNECTED:
                for session in self._sessions.on_fd(event["value"]):
                    log.info("proxy session %s disconnected", session.sid)
                    self._forget(session.sid)

    def _on_frames(self, frames: list[zmq.Frame]) -> None:
        if len(frames) != 2:
            log.warning("dropping a message of %d frames", len(frames))
            return
        route, body = frames[0].bytes, frames[1]
        uid, peer_pid = peer_of(body)
        if uid != self._uid:
            if route not in self._refused and len(self._refused) < 4096:
                self._refused.add(route)
                log.warning("refused peer uid=%s pid=%s: not our user", uid, peer_pid)
            return
        self._dispatch(route, body, uid, peer_pid, None)

    def _open_remote(self) -> RemoteListener:
        c, backend = self._config, self._choice.backend
        self._remote = open_listener(
            c.remote_listen,
            lambda route, body, origin: self._dispatch(route, body, self._uid, 0, origin),
            self._forget_route,
            backend.show if backend is not None else None,
            (c.timeout_s, c.max_frame_bytes),
        )
        return self._remote

    def _dispatch(
        self, route: bytes, body: zmq.Frame, uid: int, peer_pid: int | None, origin: Origin | None
    ) -> None:
        """One message of our uid (ipc) or of a paired device (``origin``, remote)."""
        data = body.bytes
        try:
            msg = decode_to_approver(data)
        except ProtocolError as exc:
            log.warning("malformed message from pid %s: %s", peer_pid, exc)
            self._send(route, malformed_reply(data, exc))
            return
        if isinstance(msg, Status | Grants):  # aipctl: our uid (checked above), no session
            if origin is not None:  # never from a remote host: it may only ask and record
                return
            ctl = self._status(msg.ref) if isinstance(msg, Status) else self._grants.control(msg)
            self._send(route, ctl)
            return
        if isinstance(msg, Hello):
            refusal = hello_refusal(msg, self._keys)
            if refusal is not None:
                log.warning("hello from pid %s refused: %s", peer_pid, refusal.detail)
                self._send(route, refusal)
                return
            fd = source_fd(body) if origin is None else -1  # remote: the listener tracks it
            session = self._sessions.hello(
                msg, route, fd, uid, peer_pid or 0, user_name(uid), origin
            )
            log.info("hello from session %s (pid %s, server %r)", msg.session, peer_pid, msg.server)
            self._grants.hello(session)  # another policy: what it granted before ends
            self._send(route, self._welcome(session))
            return
        session_or_none = self._sessions.lookup(msg.session, route)
        if session_or_none is None:
            if not isinstance(msg, Bye):
                ref = str(msg.batch) if isinstance(msg, Audit) else msg.nonce
                self._send(route, Error(code=ErrorCode.HELLO_REQUIRED, about=msg.type, ref=ref))
            return
        if isinstance(msg, Ask):
            self._on_ask(msg, session_or_none, len(data))
        elif isinstance(msg, Cancel):
            if self._scheduler is not None:
                self._scheduler.cancel(msg.session, msg.nonce)
        elif isinstance(msg, Audit):
            self._spawn(self._ingest(session_or_none, msg))
        else:
            log.info("bye from session %s", msg.session)
            self._forget(msg.session)

    def _on_ask(self, ask: Ask, session: Session, size: int) -> None:
        if self._scheduler is not None and self._scheduler.knows(ask.session, ask.nonce):
            return  # a duplicate: the first one is answered
        refused: Outcome | None = None
        if size > self._config.max_ask_bytes:
            refused = Outcome.TOO_LARGE_TO_REVIEW
        else:
            try:
                ask = self._redacted(ask)
            except DlpError as exc:  # cannot be scanned, so it cannot be shown
                log.warning("ask %s cannot be scanned for secrets: %s", ask.request_id, exc)
                refused = Outcome.TOO_LARGE_TO_REVIEW
        if refused is None and (grant := self._grants.check(ask, session)) is not None:
            answer = Outcome.GRANTED if grant.kind is Kind.ALLOW else Outcome.DENIED_BY_GRANT
            self._spawn(self._deliver(ask, session, answer, None, 0, grant))
            return
        if refused is None:
            if self._scheduler is None:
                refused = self._choice.unavailable or Outcome.DIALOG_ERROR
            elif not self._log.available():
                refused = Outcome.AUDIT_UNAVAILABLE
            else:
                refused = self._scheduler.submit(ask, session)
        if refused is not None:
            log.info(
                "ask %s of session %s denied at once: %s", ask.request_id, session.sid, refused
            )
            self._spawn(self._deliver(ask, session, refused, None, 0))

    def _redacted(self, ask: Ask) -> Ask:
        if self._redactor is None:
            self._redactor = Redactor.builtin_only()
        return redacted(self._redactor, ask)

    def _forget_route(self, route: bytes) -> None:
        for session in self._sessions.on_route(route):
            self._forget(session.sid)

    def _forget(self, sid: str) -> None:
        if self._scheduler is not None:
            self._scheduler.drop_session(sid)
        self._sessions.remove(sid)
        self._grants.session_gone(sid)

    # -- replying -----------------------------------------------------------------------

    def _finished(
        self, ticket: Ticket, outcome: Outcome, human: HumanDecision | None, wait_ms: int
    ) -> None:
        self._spawn(self._deliver(ticket.ask, ticket.session, outcome, human, wait_ms, ticket))

    async def _deliver(
        self,
        ask: Ask,
        session: Session,
        outcome: Outcome,
        human: HumanDecision | None,
        wait_ms: int,
        by: Ticket | Grant | None = None,
    ) -> None:
        """Record, then reply: an allow leaves only once its record is durable. ``by``: the
        grant that answered, or the ticket whose human answer may create one."""
        grant_id = by.id if isinstance(by, Grant) else None
        record = ask_record(ask, session, outcome, human, wait_ms, grant_id)
        allows = outcome in (Outcome.HUMAN_APPROVED, Outcome.GRANTED)
        try:
            await self._log.record(record, durable=allows)
        except Exception:  # a task boundary: whatever broke the log, fail closed
            log.exception("could not record the decision on ask %s", ask.request_id)
            if allows:
                outcome, human = Outcome.AUDIT_UNAVAILABLE, None
        else:
            self._grants.after(by, human)
        if outcome is Outcome.CANCELLED:
            return  # the proxy withdrew the ask (or is gone): nobody waits for a reply
        reply = Decision(
            session=ask.session,
            request_id=ask.request_id,
            nonce=ask.nonce,
            digest=ask.digest,
            outcome=outcome,
            human_decision=human,
            queue_wait_ms=wait_ms,
        )
        self._send(session.route, reply)

    async def _ingest(self, session: Session, msg: Audit) -> None:
        try:
            rseqs = await self._log.ingest(stamp(msg.records, session.origin))
        except AuditUnavailable as exc:  # expected while the log is down: no ack, no trace
            log.debug("audit batch %d of session %s not written: %s", msg.batch, msg.session, exc)
            return
        except Exception:  # a task boundary: no ack, the proxy keeps its spool
            log.exception("could not ingest audit batch %d of session %s", msg.batch, msg.session)
            return
        self._send(session.route, AuditAck(session=msg.session, batch=msg.batch, rseqs=rseqs))

    def _welcome(self, session: Session) -> Welcome:
        c = self._config
        limits: dict[str, Any] = {"timeout_s": c.timeout_s, "max_ask_bytes": c.max_ask_bytes}
        return Welcome(session=session.sid, audit_path=c.audit_path, proto=PROTO, **limits)

    def _status(self, ref: str) -> StatusReply:
        return status_snapshot(
            ref,
            choice=self._choice,
            active=self._scheduler.active if self._scheduler is not None else None,
            queue=self._queue,
            sessions=self._sessions,
            decisions=self._log,
            config=StatusConfig(
                self._config.timeout_s,
                self._config.max_pending,
                self._config.max_pending_session,
                self._config.audit_path,
            ),
        )

    def _send(self, route: bytes, msg: ToProxy) -> None:
        assert self._router is not None
        if (far := split_route(route)) is not None:
            if self._remote is not None:
                self._remote.send(far, encode(msg))
            return
        try:
            self._router.send_multipart([route, encode(msg)], zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # peer gone or its queue full: it will deny by itself
            log.warning("could not send %s: %s", msg.type, exc)
        self._wake.set()  # the send may have consumed the FD's edge: look again

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        assert self._tg is not None
        self._tg.create_task(coro)
