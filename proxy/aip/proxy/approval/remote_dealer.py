"""The approval client's socket to a *remote* approver (DESIGN §10): a CURVE DEALER over TCP
to the endpoint and server key this host's pairing pinned (``aipctl remote join``).

A libzmq DEALER with its socket monitor, on the client thread only (a local approver is
reached with our own ZMTP instead: aip.proxy.approval.ipc_dealer). Differences from the local
link, each a decision:

- no directory or peer-uid check (TCP has none): the server proves the pinned key in the
  CURVE handshake, so every frame that arrives comes from the approver we paired with;
- each way the link fails names its own outcome, for the asks it denies: a handshake the
  approver refused (our key is unpaired, revoked or expired) -> ``remote_key_refused``; a
  handshake that failed otherwise (the peer cannot prove the pinned key) ->
  ``remote_server_unverified``; a drop or heartbeat timeout -> ``remote_link_lost``;
- a pairing past its expiry is not even tried;
- libzmq does not reconnect after a ZAP refusal (measured, 4.3.5): the socket is closed and
  the next ask connects afresh, so a host paired again recovers without a restart.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterator
from typing import Any, Final

import zmq

from aip.shared import logs
from aip.shared.outcomes import Outcome
from aip.shared.protocol.codec import ProtocolError
from aip.shared.protocol.frames import decode_session_reply
from aip.shared.remote.files import KeyPair, Pairing

TYPE_CHECKING = False
if TYPE_CHECKING:
    from aip.shared.protocol.frames import SessionReply

log = logs.get(__name__)

_EVENTS: Final = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_DISCONNECTED
    | zmq.EVENT_CONNECT_RETRIED
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
)


def parse_monitor_message(frames: list[bytes]) -> dict[str, int | bytes]:
    """A monitor socket's event as ``zmq.utils.monitor.parse_monitor_message`` decodes it
    (``event``, ``value``, ``endpoint``), without importing that module: it imports
    ``zmq.asyncio``, hence asyncio and ssl (~7 MB of the proxy's RSS, ~40 ms of CPU)."""
    if len(frames) != 2 or len(frames[0]) != 6:
        raise RuntimeError(f"Invalid event message format: {frames!r}")
    event, value = struct.unpack("=hi", frames[0])
    return {"event": event, "value": value, "endpoint": frames[1]}


class CurveDealer:
    def __init__(
        self,
        pairing: Pairing,
        keys: KeyPair,
        heartbeat: tuple[int, int],
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """``heartbeat``: (interval, timeout) in ms. Sockets made later join ``poller``."""
        self.endpoint = pairing.endpoint
        self._pairing, self._keys, self._wall_clock = pairing, keys, wall_clock
        self._heartbeat = heartbeat
        self.poller: zmq.Poller = zmq.Poller()
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.sock: zmq.Socket[bytes] | None = None
        self.monitor: zmq.Socket[bytes] | None = None
        self.down = Outcome.REMOTE_LINK_LOST  # what a lost or missing link denies with

    @property
    def started(self) -> bool:
        """A socket exists: libzmq (re)connects it by itself."""
        return self.sock is not None

    def woken(self, events: dict[Any, int]) -> tuple[bool, bool]:
        """After a poll: (link news waiting, messages waiting). libzmq's I/O thread did the
        rest."""
        monitor, sock = self.monitor, self.sock
        return (monitor is not None and monitor in events, sock is not None and sock in events)

    def next_wait(self) -> float | None:
        return None  # heartbeats and reconnects run in libzmq's I/O thread

    def connect(self) -> Outcome | None:
        """Start connecting (once); None when connecting or connected, else why we cannot."""
        if self.sock is not None:
            return None
        if self._wall_clock() >= self._pairing.expires:
            log.error("the pairing with %s has expired: pair again", self.endpoint)
            return Outcome.REMOTE_KEY_REFUSED
        sock = self._ctx.socket(zmq.DEALER)
        sock.linger = 0
        # Queue only on a live, authenticated connection: no stale ask later.
        sock.immediate = True
        sock.heartbeat_ivl, sock.heartbeat_timeout = self._heartbeat
        sock.curve_serverkey = self._pairing.server_key
        sock.curve_publickey, sock.curve_secretkey = self._keys.public, self._keys.secret
        self.monitor = sock.get_monitor_socket(_EVENTS)
        sock.connect(self.endpoint)
        self.sock = sock
        self.poller.register(sock, zmq.POLLIN)
        self.poller.register(self.monitor, zmq.POLLIN)
        return None

    def link_events(self) -> Iterator[bool | None]:
        """The monitor's news since last asked: True for a handshake, False for a loss or a
        failed handshake (``down`` says which), None for a refused connection attempt."""
        while self.monitor is not None:
            try:
                event = parse_monitor_message(self.monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            kind = event["event"]
            if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.down = Outcome.REMOTE_LINK_LOST
                yield True
            elif kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                log.error("the remote approver refused this host's key (revoked or expired?)")
                self.down = Outcome.REMOTE_KEY_REFUSED
                self._drop()  # libzmq never retries after a ZAP refusal (measured): we will
                yield False
            elif kind == zmq.EVENT_CONNECT_RETRIED:
                yield None  # refused: nobody listens there
            elif kind != zmq.EVENT_DISCONNECTED:
                log.error("the peer at %s did not prove the paired approver key", self.endpoint)
                self.down = Outcome.REMOTE_SERVER_UNVERIFIED
                yield False
            else:
                yield False

    def _drop(self) -> None:
        """Close the socket: the next ask connects afresh, so a host paired again (or whose
        clock was wrong) recovers without restarting its proxies."""
        for sock in (self.sock, self.monitor):
            if sock is not None:
                self.poller.unregister(sock)
                sock.close(linger=0)
        self.sock = self.monitor = None

    def recheck(self) -> Outcome | None:
        return None  # the handshake proved the pinned key: nothing on disk to look at

    def send(self, frame: bytes) -> bool:
        if self.sock is None:
            return False
        try:
            self.sock.send(frame, zmq.NOBLOCK)  # NOBLOCK + immediate: no peer -> Again
        except zmq.ZMQError:
            return False
        return True

    def messages(self) -> Iterator[SessionReply]:
        """Every waiting message that decodes (CURVE: only the pinned server can have sent
        it); the rest is logged."""
        assert self.sock is not None
        while True:
            try:
                frame = self.sock.recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                msg = decode_session_reply(frame.bytes)
            except ProtocolError as exc:
                log.warning("ignoring a malformed approver message: %s", exc)
                continue
            yield msg

    def close(self) -> None:
        """Frames already sent get 100 ms to leave."""
        if self.sock is not None:
            self.sock.close(linger=100)
        if self.monitor is not None:
            self.monitor.close(linger=0)
        self._ctx.term()
