"""``aip-approver --remote-listen tcp://HOST:PORT`` (issue 14.3, 14.5): a second ROUTER with
CURVE beside the ipc one, which stays as it is (peer-uid checked, never loosened).

What it guarantees, each measured on this pyzmq/libzmq (research/grants-remote.md §2.3):

- only keys the trust store admits complete a handshake (remote/auth: authenticator first,
  domain enforced, callback provider, then bind);
- every message is checked again against the *current* store by its ``User-Id``; a message
  without one, or from a key no longer paired (revoked, expired), is dropped and its
  connection shut, so a revocation ends open connections at once; a trust watcher does the
  same within ``watch_s`` for connections that stay silent;
- an unpaired key may only send ``pair`` while a window is open (remote/pairing);
- if the authenticator thread dies the listener closes: without ZAP, CURVE would admit anyone.

Authenticated messages go to ``on_frame(route, frame, origin)``; the server answers through
``send``. ``on_gone(route)`` says a connection ended (or was shut by us).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import zmq
from zmq.utils.monitor import parse_monitor_message

from aip.approver.peer import readable, source_fd
from aip.approver.remote.auth import CurveGate
from aip.approver.remote.keyfile import server_keypair
from aip.approver.remote.origin import Origin
from aip.approver.remote.pairing import Confirm, Pairer
from aip.approver.remote.trust import TrustStore
from aip.shared.protocol.codec import ProtocolError
from aip.shared.protocol.pairing import decode_pair_request
from aip.shared.remote.code import fingerprint, split_endpoint
from aip.shared.remote.files import remote_dir
from aip.shared.safe_write import replace_file

log = logging.getLogger(__name__)

WATCH_S: Final = 0.25
LISTENING: Final = "listening"  # read by `aipctl remote pair` for the code's address


@dataclass
class _Conn:
    fd: int
    key: str
    routes: set[bytes] = field(default_factory=set)


class RemoteListener:
    def __init__(
        self,
        endpoint: str,
        *,
        on_frame: Callable[[bytes, zmq.Frame, Origin], None],
        on_gone: Callable[[bytes], None],
        confirm: Confirm | None,
        timeout_s: float,
        max_frame: int,
        folder: Any = None,
        watch_s: float = WATCH_S,
    ) -> None:
        split_endpoint(endpoint)  # CodeError (a ConfigError-like AipError) for anything else
        self.endpoint = endpoint
        self._folder = folder or remote_dir()
        self._trust = TrustStore(self._folder, replace_file)  # the loop's view
        self._on_frame, self._on_gone = on_frame, on_gone
        self._max_frame, self._watch_s = max_frame, watch_s
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        zap_view = TrustStore(self._folder, replace_file)  # the ZAP thread's own view
        self._gate = CurveGate(self._ctx, lambda k: self._admit(zap_view, k))
        self._pairer = Pairer(TrustStore(self._folder, replace_file), confirm, self.send, timeout_s)
        self._sock: zmq.Socket[bytes] | None = None
        self._monitor: zmq.Socket[bytes] | None = None
        self._conns: dict[int, _Conn] = {}  # fd -> what CURVE authenticated on it
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()

    @staticmethod
    def _admit(view: TrustStore, key: str) -> bool:
        return view.device_for_key(key) is not None or view.window_open()

    def open(self) -> None:
        """Authenticator, then bind (ConfigError: not serving remote at all)."""
        keys = server_keypair(self._folder)
        self._sock = self._gate.open(self.endpoint, keys, self._max_frame)
        self._monitor = self._sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        with contextlib.suppress(OSError):
            replace_file(self._folder / LISTENING, self.endpoint.encode() + b"\n", 0o600)
        log.info("remote listener on %s (key %s)", self.endpoint, fingerprint(keys.public))

    async def run(self) -> None:
        """Serve until cancelled, or until the authenticator dies (then close and return)."""
        assert self._sock is not None
        assert self._monitor is not None
        loop = asyncio.get_running_loop()
        for sock in (self._sock, self._monitor):
            loop.add_reader(sock.FD, self._wake.set)
        try:
            while self._gate.alive():
                self._wake.clear()
                self._drain()
                self._sweep()
                if readable(self._sock) or readable(self._monitor):
                    await asyncio.sleep(0)
                    continue
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._watch_s):
                        await self._wake.wait()
            log.error("remote authenticator died: remote listener closed (fail closed)")
        finally:
            for sock in (self._sock, self._monitor):
                loop.remove_reader(sock.FD)
            self.close()

    def _drain(self) -> None:
        assert self._sock is not None
        for _ in range(64):
            self._drain_monitor()
            try:
                frames = self._sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                self._on_frames(frames)
            except Exception:  # one message's boundary
                log.exception("failed to handle a remote message; dropped")

    def _on_frames(self, frames: list[zmq.Frame]) -> None:
        if len(frames) != 2:
            return
        route, body = frames[0].bytes, frames[1]
        fd = source_fd(body)
        try:
            key = str(body.get("User-Id"))
        except zmq.ZMQError:  # no ZAP verdict behind it: never ingested (§2.3)
            log.error("remote message without a User-Id; dropped and connection shut")
            self._shut(fd)
            return
        address = _address(body)
        device = self._trust.device_for_key(key)
        if device is not None:
            conn = self._conns.setdefault(fd, _Conn(fd, key))
            conn.routes.add(route)
            self._on_frame(route, body, Origin("curve", device.name, device.fingerprint, address))
            return
        try:
            request = decode_pair_request(body.bytes)
        except ProtocolError:
            request = None
        if request is None or route in self._pairer.busy or not self._trust.window_open():
            log.warning("remote message from an unpaired key (%s); connection shut", address)
            self._shut(fd)
            return
        self._spawn(self._pairer.handle(route, key, address, request))

    def _sweep(self) -> None:
        """Connections whose key is no longer trusted (revoked, expired) are shut now."""
        for fd, conn in list(self._conns.items()):
            if self._trust.device_for_key(conn.key) is None:
                log.warning(
                    "remote key %s no longer trusted; closing", fingerprint(conn.key.encode())
                )
                self._shut(fd)

    def _shut(self, fd: int) -> None:
        """End one TCP connection under libzmq: shutdown(2) on a duplicate of its fd makes
        libzmq read EOF and drop the peer (a ROUTER has no call to close one peer)."""
        conn = self._conns.pop(fd, None)
        if fd >= 0:
            with contextlib.suppress(OSError):
                dup = socket.socket(fileno=os.dup(fd))
                with contextlib.suppress(OSError):
                    dup.shutdown(socket.SHUT_RDWR)
                dup.close()
        for route in conn.routes if conn else ():
            self._on_gone(route)

    def _drain_monitor(self) -> None:
        assert self._monitor is not None
        while True:
            try:
                event = parse_monitor_message(self._monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            conn = self._conns.pop(int(event["value"]), None)
            for route in conn.routes if conn else ():
                self._on_gone(route)

    def send(self, route: bytes, data: bytes) -> None:
        if self._sock is None:
            return
        try:
            self._sock.send_multipart([route, data], zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            log.warning("remote send failed: %s", exc)
        self._wake.set()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for fd in list(self._conns):
            self._shut(fd)
        if self._monitor is not None:
            self._monitor.close(linger=0)
            self._monitor = None
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None
        self._gate.stop()
        self._ctx.term()


def _address(frame: zmq.Frame) -> str:
    try:
        return str(frame.get("Peer-Address"))
    except zmq.ZMQError:
        return "?"
