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
from typing import Any

import zmq

from aip.approver.ask_redact import redacted
from aip.approver.audit.decision_log import DecisionLog
from aip.approver.dialogs.base import Prompt
from aip.approver.dialogs.choose import Choice
from aip.approver.dialogs.verdict import Verdict
from aip.approver.endpoint_watch import watch_endpoint
from aip.approver.extra_socket import (
    SSH_ORIGIN,
    Refusals,
    extra_route,
    forbidden,
    origin_label,
    split_extra,
    with_claim,
)
from aip.approver.grants.desk import GrantDesk
from aip.approver.grants.model import Kind
from aip.approver.handshake import hello_refusal, malformed_reply
from aip.approver.ipc_listener import IpcListener
from aip.approver.peer import peer_of, source_fd
from aip.approver.queue import AskQueue
from aip.approver.remote.bridge import open_listener, split_route
from aip.approver.remote.listener import RemoteListener
from aip.approver.remote.origin import Origin
from aip.approver.replies import Replies
from aip.approver.scheduler import Scheduler, Ticket
from aip.approver.server_config import ServerConfig
from aip.approver.session_keys import SessionKeys, keys_dir
from aip.approver.sessions import Session, SessionTable
from aip.shared.audit.stamp import user_name
from aip.shared.dlp.redactor import Redactor
from aip.shared.dlp.scan import DlpError
from aip.shared.outcomes import Outcome
from aip.shared.paths import socket_path
from aip.shared.protocol.codec import ProtocolError, encode
from aip.shared.protocol.frames import ToProxy, decode_to_approver
from aip.shared.protocol.grants import Grants
from aip.shared.protocol.messages import (
    Ask,
    Audit,
    Bye,
    Cancel,
    Error,
    ErrorCode,
    Hello,
)
from aip.shared.protocol.status import Status

log = logging.getLogger(__name__)


class ApprovalServer(Replies):
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
        self._local: IpcListener | None = None
        self._extra: IpcListener | None = None
        self._refused: set[bytes] = set()
        self._redactor: Redactor | None = None
        self._uid = os.getuid()
        self._keys = SessionKeys(keys_dir(Path(config.audit_path)) if config.audit_path else None)
        self._remote: RemoteListener | None = None
        self._refusals = Refusals(decisions)
        self.exit_code = 0
        self._grants = GrantDesk(
            lambda: asyncio.get_running_loop().time(),
            lambda rec: self._log.record(rec, durable=False),
            self._spawn,
        )

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> int:
        """Serve until ``stop`` is set (signals) or the endpoint is stolen; returns exit code."""
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        c = self._config
        local = IpcListener(
            ctx, c.endpoint, "local", c.max_frame_bytes, self._on_frames, self._on_disconnect
        )
        self._local = local
        if c.extra_endpoint:  # restricted: what arrives there is labelled ssh (issue 14.2)
            self._extra = IpcListener(
                ctx,
                c.extra_endpoint,
                "extra",
                c.max_frame_bytes,
                self._on_extra,
                self._on_disconnect,
            )
        listeners = [local, *([self._extra] if self._extra else [])]
        try:
            for listener in listeners:
                listener.bind()
            inode = socket_path(c.endpoint).stat().st_ino
            self._redactor = Redactor.builtin_only()  # ~25 ms of RE2 compiles, not on an ask
            remote = self._open_remote() if c.remote_listen else None  # or ConfigError
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                loops = [tg.create_task(listener.run()) for listener in listeners]
                if remote is not None:
                    loops.append(tg.create_task(remote.run()))
                if self._choice.backend is not None:
                    self._scheduler = Scheduler(
                        self._choice.backend,
                        self._queue,
                        self._finished,
                        c.timeout_s,
                        offer=self._grants.offer_ticket,
                    )
                    loops.append(tg.create_task(self._scheduler.run()))
                stolen = tg.create_task(watch_endpoint(c.endpoint, inode, c.watchdog_s))
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
            for listener in listeners:
                listener.close()
            ctx.term()
        return self.exit_code

    # -- receiving ----------------------------------------------------------------------

    def _on_disconnect(self, fd: int) -> None:
        for session in self._sessions.on_fd(fd):
            log.info("proxy session %s disconnected", session.sid)
            self._forget(session.sid)

    def _our_peer(self, route: bytes, body: zmq.Frame) -> tuple[int, int | None] | None:
        """(uid, pid) when the sender is our uid (SO_PEERCRED), else None (logged once)."""
        uid, peer_pid = peer_of(body)
        if uid != self._uid:
            if route not in self._refused and len(self._refused) < 4096:
                self._refused.add(route)
                log.warning("refused peer uid=%s pid=%s: not our user", uid, peer_pid)
            return None
        return self._uid, peer_pid

    def _on_frames(self, frames: list[zmq.Frame]) -> None:
        if len(frames) != 2:
            log.warning("dropping a message of %d frames", len(frames))
            return
        route, body = frames[0].bytes, frames[1]
        if (peer := self._our_peer(route, body)) is not None:
            self._dispatch(route, body, peer[0], peer[1], None)

    def _on_extra(self, frames: list[zmq.Frame]) -> None:
        """The extra socket: our uid too (the ssh client that forwards it), restricted and
        labelled ``ssh``; the device is what the proxy's hello claims (extra_socket)."""
        if len(frames) != 2:
            return
        route, body = frames[0].bytes, frames[1]
        if (peer := self._our_peer(route, body)) is not None:
            self._dispatch(extra_route(route), body, peer[0], peer[1], SSH_ORIGIN)

    def _open_remote(self) -> RemoteListener:
        c, backend = self._config, self._choice.backend
        self._remote = open_listener(
            c.remote_listen,
            lambda route, body, origin: self._dispatch(route, body, self._uid, 0, origin),
            self._forget_route,
            self._show_alone if backend is not None else None,
            (c.timeout_s, c.max_frame_bytes),
        )
        return self._remote

    async def _show_alone(self, prompt: Prompt) -> Verdict:
        """The pairing dialog waits for the dialog slot: never beside an ask's dialog."""
        assert self._scheduler is not None  # made before any message is read
        return await self._scheduler.show_alone(prompt)

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
                error = forbidden(msg.type, msg.ref, origin)
                log.warning("refused %s from %s: %s", msg.type, origin_label(origin), error.detail)
                self._send(route, error)
                if self._refusals.first(route):
                    self._spawn(self._refusals.audit(error, origin))
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
            origin = with_claim(origin, msg.host)  # ssh: the device the proxy claims
            fd = -1 if split_route(route) else source_fd(body)  # curve: its listener tracks it
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
            self._ingest(session_or_none, msg)
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

    def _send(self, route: bytes, msg: ToProxy) -> None:
        if (far := split_route(route)) is not None:
            if self._remote is not None:
                self._remote.send(far, encode(msg))
        elif (near := split_extra(route)) is not None:
            if self._extra is not None:
                self._extra.send(near, encode(msg), msg.type)
        elif self._local is not None:
            self._local.send(route, encode(msg), msg.type)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        assert self._tg is not None
        self._tg.create_task(coro)
