"""One ipc ROUTER of the approver and its receive loop: the local socket (every message type)
and the restricted extra socket for SSH forwarding (issue 14.2) are two of these.

Plain sockets watched with add_reader (zmq.asyncio's poller costs ~0.1 ms a wake). A zmq FD
only signals edges, so EVENTS is checked before every sleep, and every send (which may
swallow an edge) wakes the loop too. The socket monitor is drained before every message, so
a connection that dropped is forgotten before a new one that reuses its fd can speak
(DESIGN §6, §7).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final

import zmq
from zmq.utils.monitor import parse_monitor_message

from aip.approver.give_way import give_way
from aip.approver.peer import readable
from aip.shared.protocol.messages import heartbeat_ms

log = logging.getLogger(__name__)

RECV_BATCH: Final = 64  # messages per wake-up before yielding to the dialog and timers
SHUTDOWN_LINGER_MS: Final = 1000  # let the last SHUTDOWN decisions reach their proxies


class IpcListener:
    """``on_frames(frames)`` gets every message; ``on_disconnect(fd)`` every dropped
    connection. ``name`` is for logs ("local", "extra")."""

    def __init__(
        self,
        ctx: zmq.Context[zmq.Socket[bytes]],
        endpoint: str,
        name: str,
        max_frame_bytes: int,
        on_frames: Callable[[list[zmq.Frame]], None],
        on_disconnect: Callable[[int], None],
    ) -> None:
        self.endpoint, self.name = endpoint, name
        self._on_frames, self._on_disconnect = on_frames, on_disconnect
        router = ctx.socket(zmq.ROUTER)
        router.linger = 0
        router.maxmsgsize = max_frame_bytes  # bigger peers are disconnected
        router.heartbeat_ivl, router.heartbeat_timeout = heartbeat_ms()
        self.router = router
        self._monitor = router.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self._wake = asyncio.Event()

    def bind(self) -> None:
        self.router.bind(self.endpoint)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        router, monitor = self.router, self._monitor
        for sock in (router, monitor):
            loop.add_reader(sock.FD, self._wake.set)
        try:
            while True:
                self._wake.clear()
                for _ in range(RECV_BATCH):
                    self._drain_monitor()  # disconnects before any later message
                    if not readable(router):  # not recv until zmq.Again: an exception
                        break  # per wake-up costs more than this one getsockopt
                    try:
                        frames = router.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    try:
                        self._on_frames(frames)
                    except Exception:  # one message's boundary: never stop serving the rest
                        log.exception("failed to handle a message (%s socket); dropped", self.name)
                    give_way()
                self._drain_monitor()
                if readable(router) or readable(monitor):
                    await asyncio.sleep(0)  # more to read: let the dialog and timers run first
                    continue
                await self._wake.wait()
        finally:
            for sock in (router, monitor):
                loop.remove_reader(sock.FD)

    def _drain_monitor(self) -> None:
        # EVENTS first: nearly always nothing waits, and a zmq.Again raised (and caught)
        # twice per message was a measurable part of the approver's cost per message.
        while readable(self._monitor):
            try:
                event = parse_monitor_message(self._monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            if event["event"] == zmq.EVENT_DISCONNECTED:
                self._on_disconnect(int(event["value"]))

    def send(self, route: bytes, data: bytes, what: str) -> None:
        try:
            self.router.send_multipart([route, data], zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # peer gone or its queue full: it will deny by itself
            log.warning("could not send %s (%s socket): %s", what, self.name, exc)
        self._wake.set()  # the send may have consumed the FD's edge: look again

    def close(self) -> None:
        self.router.linger = SHUTDOWN_LINGER_MS
        self._monitor.close(linger=0)
        self.router.close()
