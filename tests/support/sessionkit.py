"""One proxy session in-process: the real ``Session``, upstream and downstream code, with OS
pipes for the host and the server sides that the test reads, and records in a file (or
/dev/null). What asks the session has (``session.asks``) is the test's choice.

Reads never block past a deadline and nothing sleeps to synchronise.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

import orjson

from aip.proxy.audit.recorder import Recorder
from aip.proxy.relay import downstream, upstream
from aip.proxy.relay.session import Session
from aip.proxy.stdio import Wire
from aip.shared.policy.decision import Context
from aip.shared.policy.model import Policy
from aip.shared.policy.ratelimit import RateLimiter
from tests.support.fdwait import readable

WAIT_S = 5.0  # deadline for anything a test waits on


def available(fd: int) -> bytes:
    """Everything readable on ``fd`` right now (never blocks)."""
    out = b""
    while readable(fd, 0):
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        out += chunk
    return out


def read_lines(fd: int, buf: bytearray) -> list[bytes]:
    """Complete lines available now on ``fd``; a partial one stays in ``buf``."""
    buf += available(fd)
    out = []
    while (nl := buf.find(b"\n")) >= 0:
        out.append(bytes(buf[: nl + 1]))
        del buf[: nl + 1]
    return out


def wait_lines(fd: int, buf: bytearray, n: int = 1, timeout_s: float = WAIT_S) -> list[bytes]:
    """At least ``n`` complete lines from ``fd``, or AssertionError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    got: list[bytes] = []
    while True:
        got += read_lines(fd, buf)
        if len(got) >= n:
            return got
        left = deadline - time.monotonic()
        assert left > 0, f"expected {n} line(s), got {got!r}"
        readable(fd, left)


class LocalSession:
    """The session and its two pipes: ``host_r`` gets what the proxy writes to the agent,
    ``server_r`` what it forwards to the MCP server."""

    def __init__(
        self,
        policy: Policy,
        *,
        records: Path | None = None,
        context: Context | None = None,
        agent_id_fixed: bool = True,
        session_id: str | None = None,
        agent_id: str = "agent",
    ) -> None:
        self.host_r, host_w = os.pipe()
        self.server_r, server_w = os.pipe()
        self.records_path = records
        if records is None:
            self.records_fd = os.open(os.devnull, os.O_WRONLY)
        else:
            self.records_fd = os.open(records, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._fds = [self.host_r, host_w, self.server_r, server_w, self.records_fd]
        self.session_id = session_id or os.urandom(8).hex()
        self.recorder = Recorder(
            session=self.session_id,
            server="srv",
            policy_name=policy.name,
            policy_sha256=policy.sha256,
            mode="enforce",
            agent_id=agent_id,
            fd=self.records_fd,
        )
        self.session = Session(
            policy=policy,
            limiter=RateLimiter(),
            context=context or Context(cwd="/"),
            recorder=self.recorder,
            host=Wire(host_w, "host"),
            server=Wire(server_w, "server"),
            agent_id_fixed=agent_id_fixed,
        )
        self.host_buf = bytearray()
        self.server_buf = bytearray()

    def send_line(self, line: bytes) -> None:
        """One raw client line through the real upstream handler."""
        upstream.handle_line(self.session, line)

    def send(self, obj: dict[str, Any]) -> bytes:
        """One client message; returns the canonical bytes a forward would carry."""
        line = orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE)
        upstream.handle_line(self.session, line)
        return orjson.dumps(orjson.loads(line)) + b"\n"

    def call(self, request_id: Any, tool: str, args: dict[str, Any], **params: Any) -> bytes:
        params = {"name": tool, "arguments": args, **params}
        msg = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}
        return self.send(msg)

    def server_says(self, obj: dict[str, Any]) -> None:
        downstream.relay_server_line(self.session, orjson.dumps(obj) + b"\n")

    def host_lines(self, n: int = 1, timeout_s: float = WAIT_S) -> list[bytes]:
        return wait_lines(self.host_r, self.host_buf, n, timeout_s)

    def server_lines(self, n: int = 1, timeout_s: float = WAIT_S) -> list[bytes]:
        return wait_lines(self.server_r, self.server_buf, n, timeout_s)

    def host_reply(self, timeout_s: float = WAIT_S) -> dict[str, Any]:
        """The next message to the agent, decoded."""
        reply: dict[str, Any] = orjson.loads(self.host_lines(1, timeout_s)[0])
        return reply

    def nothing_to_server(self, quiet_s: float = 0.05) -> bool:
        """Nothing reaches the server within ``quiet_s`` (for "not forwarded" checks)."""
        return not (self.server_buf or readable(self.server_r, quiet_s))

    def records(self) -> list[dict[str, Any]]:
        assert self.records_path is not None, "made without a records file"
        return [orjson.loads(line) for line in self.records_path.read_bytes().splitlines()]

    def close(self) -> None:
        asks: Any = self.session.asks
        if asks is not None:
            asks.close()  # stops tickers and the client before their fds go away
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> LocalSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
