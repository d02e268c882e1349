"""Helpers for the remote tests: a free loopback port, an in-process remote listener with a
scripted pairing dialog, and a CURVE DEALER as a paired proxy would open."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from aip.approver.dialogs.base import Prompt
from aip.approver.dialogs.verdict import ALLOW_ONCE, DENY, Verdict
from aip.approver.remote.listener import RemoteListener
from aip.approver.remote.origin import Origin


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Seen:
    frames: asyncio.Queue[tuple[bytes, bytes, Origin]] = field(default_factory=asyncio.Queue)
    gone: list[bytes] = field(default_factory=list)
    prompts: list[Prompt] = field(default_factory=list)
    allow: bool = True
    task: asyncio.Task[None] | None = None


@contextlib.asynccontextmanager
async def listening(
    desktop: Path, port: int, **kw: object
) -> AsyncIterator[tuple[RemoteListener, Seen]]:
    seen = Seen()

    async def confirm(prompt: Prompt) -> Verdict:
        seen.prompts.append(prompt)
        return ALLOW_ONCE if seen.allow else DENY

    listener = RemoteListener(
        f"tcp://127.0.0.1:{port}",
        on_frame=lambda r, f, o: seen.frames.put_nowait((r, f.bytes, o)),
        on_gone=seen.gone.append,
        confirm=confirm,
        timeout_s=10.0,
        max_frame=1 << 20,
        folder=desktop,
        **kw,  # type: ignore[arg-type]
    )
    listener.open()
    task = seen.task = asyncio.create_task(listener.run())
    try:
        yield listener, seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def curve_dealer(
    ctx: zmq.Context[zmq.Socket[bytes]], endpoint: str, server: bytes, keys: tuple[bytes, bytes]
) -> tuple[zmq.Socket[bytes], zmq.Socket[bytes]]:
    """A DEALER with CURVE and its monitor (every event)."""
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.curve_serverkey = server
    sock.curve_publickey, sock.curve_secretkey = keys
    monitor = sock.get_monitor_socket()
    sock.connect(endpoint)
    return sock, monitor


async def wait_event(
    monitor: zmq.Socket[bytes], wanted: int, timeout_s: float = 5.0
) -> dict[str, int]:
    """The first monitor event of kind ``wanted`` within ``timeout_s`` (AssertionError else)."""
    from zmq.utils.monitor import parse_monitor_message

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if monitor.poll(0):
            event = parse_monitor_message(monitor.recv_multipart())
            if event["event"] == wanted:
                return event  # type: ignore[return-value]
            continue
        await asyncio.sleep(0.01)
    raise AssertionError(f"no monitor event {wanted} within {timeout_s} s")
