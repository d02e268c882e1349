"""The approval client's link to a local approver: a DEALER over our own ZMTP
(aip.proxy.approval.zmtp) on the approver's Unix socket, on the client thread only.

It behaves as the libzmq DEALER it replaced did on ipc: it connects only once the socket
directory is ours and 0700 (and checks again at each handshake), reconnects every RECONNECT_S
after a loss or a refusal as libzmq does, heartbeats so a dead approver is noticed, sends only
on a live link and never blocks, and hands on only well-formed messages. It talks only to a
peer of our uid (SO_PEERCRED at connect): a socket another uid listens on gets not even the
greeting, so no hello (with the session's spool key), ask or record reaches it (libzmq's DEALER
sent them all and only its replies were ignored); the asks are denied ``approver_untrusted``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import struct
import time

# The C module: ``socket`` adds only enums (AddressFamily & co., ~6 ms to import) we never use.
from _socket import AF_UNIX, SO_PEERCRED, SOCK_CLOEXEC, SOCK_STREAM, SOL_SOCKET
from _socket import socket as unix_socket
from collections.abc import Callable, Iterator

from aip.proxy.approval import zmtp
from aip.proxy.approval.link import endpoint_verdict
from aip.shared import logs
from aip.shared.outcomes import Outcome
from aip.shared.paths import socket_path
from aip.shared.protocol.codec import ProtocolError
from aip.shared.protocol.frames import decode_session_reply
from aip.shared.userns import ambiguous_uid

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

    from aip.proxy.approval.remote_dealer import CurveDealer
    from aip.shared.protocol.frames import SessionReply

log = logs.get(__name__)

POLLIN: Final = select.POLLIN
RECONNECT_S: Final = 0.1  # libzmq's default reconnect interval
# One buffer, reused: a fresh 256 KiB bytes per read made glibc raise its mmap threshold
# and keep the approval thread's heap at its high-water mark (+5 MB of RSS, measured).
READ_BYTES: Final = 64 * 1024
MAX_FRAME_BYTES: Final = 16 * 1024 * 1024  # the approver's replies are small: a bound, no more
MAX_UNSENT_BYTES: Final = 16 * 1024 * 1024  # past this a send fails, as at libzmq's HWM
CLOSE_LINGER_S: Final = 0.1
# Reads per wake-up: a peer that never stops sending cannot keep the client thread from its
# ask deadlines and its own timers (the rest is read on the next pass, which comes at once).
MAX_READS: Final = 16
_WAIT, _HANDSHAKE, _UP = range(3)


class IpcDealer:
    """One approver link, made again after every loss until ``close``."""

    def __init__(
        self,
        endpoint: str,
        heartbeat: tuple[int, int],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``heartbeat``: (interval, timeout) in ms. ``clock`` times the link (reconnects,
        heartbeats) as libzmq's I/O thread did: real time, whatever clock the asks use."""
        self.endpoint = endpoint
        self.poller = select.poll()  # zmq.Poller's calls on plain descriptors: no pyzmq
        self._ivl, self._timeout = heartbeat[0] / 1000, heartbeat[1] / 1000
        self._clock = clock
        self.down = Outcome.APPROVER_UNAVAILABLE  # what a lost or missing link denies with
        self.started = False  # connect() succeeded once: from now on we keep a link
        self._fd = -1
        self._state = _WAIT
        self._retry_at: float | None = None
        self._reader = zmtp.Reader(MAX_FRAME_BYTES)
        self._unsent = bytearray()
        self._rbuf = bytearray(READ_BYTES)
        self._rview = memoryview(self._rbuf)
        self._events: list[bool | None] = []
        self._inbox: list[bytes] = []
        self._foreign: int | None = None  # the last foreign peer uid logged (once per uid)
        self._beats = False  # the peer speaks ZMTP 3.1: PING/PONG
        self._minor: int | None = None  # the peer's ZMTP 3.x minor version, once greeted
        self._more = False  # inside a multi-part message (not our protocol: dropped)
        self._heard = self._next_ping = 0.0

    # -- what the client thread calls --------------------------------------------------------

    def connect(self) -> Outcome | None:
        """Start connecting (once); None when connecting or connected, else why we cannot."""
        if self.started:
            return None
        verdict = endpoint_verdict(self.endpoint)
        if verdict is not None:
            return verdict
        self.started = True
        self._attempt()
        return None

    def woken(self, events: dict[int, int]) -> tuple[bool, bool]:
        """After a poll: move bytes and timers on. (link news waiting, messages waiting)."""
        mask = events.get(self._fd, 0) if self._fd >= 0 else 0
        if mask & select.POLLOUT:
            self._flush()
        if mask & ~select.POLLOUT:  # readable, hung up or failed: a read tells which
            self._pump()
        self._timers()
        return bool(self._events), bool(self._inbox)

    def next_wait(self) -> float | None:
        """Seconds until ``woken`` must run even without I/O: a reconnect, a PING or its
        timeout (None: only I/O wakes it)."""
        if self._state == _WAIT:
            at = self._retry_at
        elif self._state == _HANDSHAKE:
            at = self._heard + self._timeout  # a peer that never completes it
        elif self._state == _UP and self._beats:
            at = min(self._next_ping, self._heard + self._timeout)
        else:
            at = None
        return None if at is None else max(at - self._clock(), 0.0)

    def link_events(self) -> Iterator[bool | None]:
        """The link's news since last asked: True for a handshake, False for a loss, None
        for a refused connection attempt (nobody listens at the endpoint)."""
        if self._fd >= 0:
            self._pump()  # a handshake that finished since the last poll
        while self._events:
            yield self._events.pop(0)

    def recheck(self) -> Outcome | None:
        """After a handshake: is the endpoint still ours? If not, drop the connection."""
        verdict = endpoint_verdict(self.endpoint)
        if verdict is not None:
            log.warning("approver endpoint no longer trusted; disconnecting")
            # No reconnecting (libzmq's disconnect): the next ask checks the endpoint afresh
            # (``connect``), so it is denied at once, or connects once the folder is ours again.
            self.started = False
            self._drop(announce=False)
        return verdict

    def send(self, frame: bytes) -> bool:
        """Queue one message on a live link (False: no link, or too much unsent already)."""
        if self._state != _UP or len(self._unsent) > MAX_UNSENT_BYTES:
            return False
        self._write(zmtp.frame_header(len(frame)), frame)
        return self._state == _UP

    def messages(self) -> Iterator[SessionReply]:
        """Every waiting message that is from our uid and decodes; the rest is logged."""
        while self._inbox:
            body = self._inbox.pop(0)
            try:
                msg = decode_session_reply(body)
            except ProtocolError as exc:
                log.warning("ignoring a malformed approver message: %s", exc)
                continue
            yield msg

    def close(self) -> None:
        """Frames already sent get CLOSE_LINGER_S to leave."""
        self.started = False
        if self._fd >= 0 and self._unsent:
            deadline = self._clock() + CLOSE_LINGER_S
            waiter = select.poll()
            waiter.register(self._fd, select.POLLOUT)
            while self._unsent and self._fd >= 0 and (left := deadline - self._clock()) > 0:
                if waiter.poll(max(1, int(left * 1000))):
                    self._flush()
        self._close_fd()

    # -- the link ----------------------------------------------------------------------------

    def _attempt(self) -> None:
        """One connection attempt; a refusal is reported (None) and retried later."""
        self._retry_at = None
        try:
            path = os.fsencode(socket_path(self.endpoint))
            sock = unix_socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC)
        except Exception:
            log.exception("cannot make a socket for the approver")
            self._retry(refused=True)
            return
        try:
            sock.setblocking(False)
            sock.connect(path)  # a Unix socket connects at once or fails at once
            pid_uid_gid = sock.getsockopt(SOL_SOCKET, SO_PEERCRED, 12)
        except OSError as exc:
            sock.close()
            self._retry(refused=exc.errno != errno.EAGAIN)
            return
        _pid, uid, _gid = struct.unpack("=iII", pid_uid_gid)
        me = os.getuid()
        if uid != me or ambiguous_uid(me):  # an unmapped peer is never ours
            sock.close()
            if self._foreign != uid:
                self._foreign = uid
                log.warning(
                    "the approver socket %s is served by uid %d, not by us (uid %d): not "
                    "connecting; asks are denied until our own approver listens there",
                    self.endpoint,
                    uid,
                    me,
                )
            self.down = Outcome.APPROVER_UNTRUSTED
            self._retry(refused=True)
            return
        self._foreign = None
        self.down = Outcome.APPROVER_UNAVAILABLE
        self._fd = sock.detach()
        self._state = _HANDSHAKE
        self._reader = zmtp.Reader(MAX_FRAME_BYTES)
        self._minor, self._more, self._heard = None, False, self._clock()
        self._unsent.clear()
        self.poller.register(self._fd, POLLIN)
        self._write(zmtp.GREETING + zmtp.ready(b"DEALER"))

    def _retry(self, *, refused: bool) -> None:
        if refused:
            self._events.append(None)  # as libzmq's CONNECT_RETRIED
        self._retry_at = self._clock() + RECONNECT_S
        self._state = _WAIT

    def _drop(self, *, announce: bool = True) -> None:
        """The link is gone: say so once (if it was up), and connect again later."""
        was_up = self._state == _UP
        self._close_fd()
        if was_up and announce:
            self._events.append(False)
        if self.started:
            self._retry(refused=False)

    def _close_fd(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            with contextlib.suppress(KeyError, ValueError):
                self.poller.unregister(fd)
            os.close(fd)
        self._unsent.clear()
        self._inbox.clear()
        self._state = _WAIT

    def _timers(self) -> None:
        now = self._clock()
        if self._state == _WAIT:
            if self.started and self._retry_at is not None and now >= self._retry_at:
                self._attempt()
        elif self._state == _HANDSHAKE:
            if now - self._heard > self._timeout:
                log.warning("the approver did not complete the handshake; reconnecting")
                self._drop()
        elif self._state == _UP and self._beats:
            if now - self._heard > self._timeout:
                log.warning("the approver sent nothing for %.1f s; reconnecting", self._timeout)
                self._drop()
            elif now >= self._next_ping:
                self._next_ping = now + self._ivl
                self._write(zmtp.ping(int(self._timeout * 10) + 1))

    def _pump(self) -> None:
        """Read what is there (never blocks) and act on every whole frame."""
        for _ in range(MAX_READS):
            if self._fd < 0:
                return
            n = self._io(os.readv, (self._rbuf,))
            if n is None:
                return
            if not n:
                self._drop()
                return
            self._heard = self._clock()
            try:
                self._frames(self._reader.feed(self._rview[:n]))
            except zmtp.ZmtpError as exc:
                log.warning("approver link dropped: %s", exc)
                self._drop()
                return
            if n < READ_BYTES:
                return

    def _frames(self, frames: list[tuple[int, bytes]]) -> None:
        if self._minor is None and self._reader.greeting is not None:
            self._minor = zmtp.check_greeting(self._reader.greeting)
        for flags, body in frames:
            if self._fd < 0:
                return  # dropped by a failed write on the way
            if flags & zmtp.COMMAND:
                self._command(*zmtp.parse_command(body))
            elif self._state != _UP:
                raise zmtp.ZmtpError("a message before READY")
            elif flags & zmtp.MORE or self._more:
                self._more = bool(flags & zmtp.MORE)  # multi-part: not our protocol
                log.warning("ignoring a multi-part message from the approver")
            else:
                self._inbox.append(body)

    def _command(self, name: bytes, data: bytes) -> None:
        if self._state == _HANDSHAKE:
            if name != b"READY":
                raise zmtp.ZmtpError(f"{name!r} before READY")
            kind = zmtp.parse_properties(data).get("socket-type")
            if kind != b"ROUTER":
                raise zmtp.ZmtpError(f"the peer is a {kind!r} socket, not a ROUTER")
            self._state, self._more = _UP, False
            self._beats = bool(self._minor) and self._ivl > 0
            self._heard = self._clock()
            self._next_ping = self._heard + self._ivl
            self._events.append(True)
        elif name == b"PING":
            self._write(zmtp.pong(data[2:]))
        elif name == b"ERROR":
            raise zmtp.ZmtpError(f"the approver reported an error: {data[1:]!r}")
        # PONG, SUBSCRIBE and anything newer: nothing to do (hearing it was the point)

    def _write(self, head: bytes, body: bytes = b"") -> None:
        """Send now what the socket takes; keep the rest for POLLOUT."""
        if self._fd < 0:
            return
        if self._unsent:
            self._unsent += head
            self._unsent += body
            return
        sent = self._io(os.writev, (head, body) if body else (head,))
        if sent is None:
            if self._fd < 0:
                return  # the link failed
            sent = 0
        rest = len(head) + len(body) - sent
        if rest:
            if sent < len(head):
                self._unsent += head[sent:]
                self._unsent += body
            else:
                self._unsent += body[sent - len(head) :]
            self.poller.modify(self._fd, POLLIN | select.POLLOUT)

    def _flush(self) -> None:
        sent = self._io(os.write, self._unsent)
        if sent is None:
            return
        del self._unsent[:sent]
        if not self._unsent:
            self.poller.modify(self._fd, POLLIN)

    def _io(self, call: Callable[..., int], arg: Any) -> int | None:
        """One read or write on the link: its count; None when it would block, or when it
        failed (the link is then dropped)."""
        try:
            return call(self._fd, arg)
        except BlockingIOError:
            return None
        except OSError as exc:
            log.info("approver link failed: %s", exc)
            self._drop()
            return None


def make_dealer(endpoint: str, remote: Any, heartbeat: tuple[int, int]) -> IpcDealer | CurveDealer:
    """The client's link: our own ZMTP to a local approver (``ipc_dealer.IpcDealer``), or
    libzmq's CURVE DEALER when ``remote`` (pairing, key pair) is given: only then is pyzmq
    imported (~4 MB of RSS and ~44 ms of CPU a local proxy no longer pays, issue 16)."""
    if remote is None:
        return IpcDealer(endpoint, heartbeat)
    from aip.proxy.approval.remote_dealer import CurveDealer

    return CurveDealer(remote[0], remote[1], heartbeat)
