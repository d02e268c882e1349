"""A libzmq DEALER to the approver with its monitor, on the client thread only: the base of
the remote (CURVE) link (aip.proxy.approval.remote_dealer). A local approver is reached with
our own ZMTP instead (aip.proxy.approval.ipc_dealer), which behaves as this does on ipc.

It connects only once the socket directory is ours and 0700 (and checks again at each
handshake), heartbeats so a dead approver is noticed, sends without ever blocking, and
hands on only well-formed messages from a peer of our uid.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
from collections.abc import Iterator
from typing import Any, Final

import zmq

from aip.proxy.approval.link import endpoint_verdict
from aip.shared.outcomes import Outcome
from aip.shared.protocol.codec import ProtocolError
from aip.shared.protocol.frames import ToProxy, decode_to_proxy
from aip.shared.userns import ambiguous_uid

log = logging.getLogger(__name__)

# CONNECT_RETRIED: a connection attempt was refused (ipc: a socket file nobody listens on;
# measured: reported within 1 ms of the connect, again at each retry).
_MONITOR_EVENTS: Final = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CONNECT_RETRIED
)


def parse_monitor_message(frames: list[bytes]) -> dict[str, int | bytes]:
    """A monitor socket's event as ``zmq.utils.monitor.parse_monitor_message`` decodes it
    (``event``, ``value``, ``endpoint``), without importing that module: it imports
    ``zmq.asyncio``, hence asyncio and ssl (~7 MB of the proxy's RSS, ~40 ms of CPU)."""
    if len(frames) != 2 or len(frames[0]) != 6:
        raise RuntimeError(f"Invalid event message format: {frames!r}")
    event, value = struct.unpack("=hi", frames[0])
    return {"event": event, "value": value, "endpoint": frames[1]}


class Dealer:
    monitor_events: int = _MONITOR_EVENTS

    def __init__(self, endpoint: str, heartbeat: tuple[int, int]) -> None:
        """``heartbeat``: (interval, timeout) in ms. Sockets made later join ``poller``."""
        self.endpoint = endpoint
        self.poller: zmq.Poller = zmq.Poller()
        self._poller = self.poller
        self._heartbeat = heartbeat
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.sock: zmq.Socket[bytes] | None = None
        self.monitor: zmq.Socket[bytes] | None = None
        self.down = Outcome.APPROVER_UNAVAILABLE  # what a lost or missing link denies with

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
        verdict = endpoint_verdict(self.endpoint)
        if verdict is not None:
            return verdict
        self._open()
        return None

    def _open(self) -> None:
        """The DEALER, its monitor (``monitor_events``) and their places in the poller."""
        sock = self._ctx.socket(zmq.DEALER)
        sock.linger = 0
        # Queue only on a live (for CURVE: authenticated) connection: no stale ask later.
        sock.immediate = True
        sock.heartbeat_ivl, sock.heartbeat_timeout = self._heartbeat
        self._secure(sock)
        self.monitor = sock.get_monitor_socket(self.monitor_events)
        sock.connect(self.endpoint)
        self.sock = sock
        self._poller.register(sock, zmq.POLLIN)
        self._poller.register(self.monitor, zmq.POLLIN)

    def _secure(self, sock: zmq.Socket[bytes]) -> None:
        """Socket options a subclass sets before connecting (CurveDealer: its keys)."""

    def link_events(self) -> Iterator[bool | None]:
        """The monitor's news since last asked: True for a handshake, False for a loss, None
        for a refused connection attempt (nobody listens at the endpoint)."""
        while self.monitor is not None:
            try:
                event = parse_monitor_message(self.monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                yield True
            elif event["event"] == zmq.EVENT_DISCONNECTED:
                yield False
            elif event["event"] == zmq.EVENT_CONNECT_RETRIED:
                yield None

    def recheck(self) -> Outcome | None:
        """After a handshake: is the endpoint still ours? If not, drop the connection."""
        verdict = endpoint_verdict(self.endpoint)
        if verdict is not None:  # the endpoint changed hands since we checked
            log.warning("approver endpoint no longer trusted; disconnecting")
            assert self.sock is not None
            with contextlib.suppress(zmq.ZMQError):
                self.sock.disconnect(self.endpoint)
        return verdict

    def send(self, frame: bytes) -> bool:
        if self.sock is None:
            return False
        try:
            self.sock.send(frame, zmq.NOBLOCK)  # NOBLOCK + immediate: no peer -> Again
        except zmq.ZMQError:
            return False
        return True

    def messages(self) -> Iterator[ToProxy]:
        """Every waiting message that is from our uid and decodes; the rest is logged."""
        assert self.sock is not None
        while True:
            try:
                frame = self.sock.recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            if not self.from_peer(frame):
                log.warning("ignoring a message from an approver of another user")
                continue
            try:
                msg = decode_to_proxy(frame.bytes)
            except ProtocolError as exc:
                log.warning("ignoring a malformed approver message: %s", exc)
                continue
            yield msg

    def from_peer(self, frame: zmq.Frame) -> bool:
        return from_our_uid(frame)

    def close(self) -> None:
        """Frames already sent get 100 ms to leave."""
        if self.sock is not None:
            self.sock.close(linger=100)
        if self.monitor is not None:
            self.monitor.close(linger=0)
        self._ctx.term()


def from_our_uid(frame: zmq.Frame) -> bool:
    """libzmq's ``Peer-Address`` is ``host:uid:gid:pid`` on ipc (SO_PEERCRED)."""
    try:
        parts = str(frame.get("Peer-Address")).rsplit(":", 3)
    except zmq.ZMQError:
        return False
    # In a user namespace both uids are translated into it; the overflow uid (an unmapped
    # peer) is never ours (aip.shared.userns).
    return len(parts) == 4 and parts[1] == str(os.getuid()) and not ambiguous_uid(os.getuid())
