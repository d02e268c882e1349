"""ZMTP 3.1 with the NULL mechanism (rfc.zeromq.org specs 23 and 37), as a DEALER speaks it to
the approver's ROUTER: the bytes on a local approver connection, owned here.

The proxy talks to its local approver over a Unix socket; pyzmq for that one socket cost each
proxy ~4 MB of RSS (libzmq, libsodium and their Python modules), ~44 ms of CPU at its first
call, and a ZeroMQ I/O thread every message passes through (issue 16). The approver keeps
libzmq: it sees a DEALER like any other. A remote (CURVE) approver still goes through pyzmq
(aip.proxy.approval.remote_dealer).

What is sent: our greeting (version 3.1, NULL, not as-server), a READY command naming our
socket type, message frames, PING to keep the link checked, PONG to the approver's PING.
What is accepted: a greeting of version 3 or later with NULL, then READY from a ROUTER, then
frames no longer than ``max_frame``; anything else is a ``ZmtpError`` (the link is dropped).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

# libzmq puts the routing id's length + 1 in the padding (ZMTP 1.0 peers read it); ours is empty
SIGNATURE: Final = b"\xff" + (1).to_bytes(8, "big") + b"\x7f"
GREETING: Final = SIGNATURE + b"\x03\x01" + b"NULL".ljust(20, b"\0") + b"\0" + b"\0" * 31
GREETING_BYTES: Final = 64
MORE: Final = 0x01
LONG: Final = 0x02
COMMAND: Final = 0x04
_KNOWN_FLAGS: Final = MORE | LONG | COMMAND


class ZmtpError(Exception):
    """The peer broke the protocol: the connection is dropped (and made again)."""


def frame_header(size: int, flags: int = 0) -> bytes:
    """The flags and size that go before a frame's ``size`` bytes of body."""
    if size <= 255:
        return bytes((flags, size))
    return bytes((flags | LONG,)) + size.to_bytes(8, "big")


def command(name: bytes, data: bytes = b"") -> bytes:
    """A whole command frame."""
    body = bytes((len(name),)) + name + data
    return frame_header(len(body), COMMAND) + body


def ready(socket_type: bytes) -> bytes:
    """READY with the one property a ROUTER needs from us (no routing id: it makes one)."""
    name = b"Socket-Type"
    prop = bytes((len(name),)) + name + len(socket_type).to_bytes(4, "big") + socket_type
    return command(b"READY", prop)


def ping(ttl_ds: int, context: bytes = b"") -> bytes:
    """PING asking the peer to keep us ``ttl_ds`` deciseconds without news (ZMTP 3.1)."""
    return command(b"PING", min(ttl_ds, 0xFFFF).to_bytes(2, "big") + context[:16])


def pong(context: bytes) -> bytes:
    return command(b"PONG", context[:16])


def check_greeting(greeting: bytes) -> int:
    """The peer's minor version (3.x); ZmtpError unless ZMTP 3+ with the NULL mechanism."""
    if len(greeting) != GREETING_BYTES or greeting[0] != 0xFF or greeting[9] != 0x7F:
        raise ZmtpError("not a ZMTP greeting")
    if greeting[10] < 3:
        raise ZmtpError(f"ZMTP {greeting[10]}.{greeting[11]}: 3.0 or later needed")
    if greeting[12:32] != b"NULL".ljust(20, b"\0"):
        raise ZmtpError("the peer wants a security mechanism other than NULL")
    return greeting[11] if greeting[10] == 3 else 1


def parse_command(body: bytes) -> tuple[bytes, bytes]:
    """(name, data) of a command frame's body."""
    if not body or len(body) < 1 + body[0]:
        raise ZmtpError("truncated command")
    return body[1 : 1 + body[0]], body[1 + body[0] :]


def parse_properties(data: bytes) -> dict[str, bytes]:
    """READY's metadata: name (1-byte length) and value (4-byte length) pairs."""
    props: dict[str, bytes] = {}
    pos, end = 0, len(data)
    while pos < end:
        size = data[pos]
        name = data[pos + 1 : pos + 1 + size]
        pos += 1 + size
        if len(name) != size or not size or pos + 4 > end:
            raise ZmtpError("malformed READY metadata")
        vsize = int.from_bytes(data[pos : pos + 4], "big")
        value = data[pos + 4 : pos + 4 + vsize]
        pos += 4 + vsize
        if len(value) != vsize:
            raise ZmtpError("malformed READY metadata")
        props[name.decode("latin-1").lower()] = value
    return props


class Reader:
    """Bytes in, whole frames out: first the peer's 64-byte greeting, then (flags, body)."""

    def __init__(self, max_frame: int) -> None:
        self._max = max_frame
        self._buf = bytearray()
        self._pos = 0
        self.greeting: bytes | None = None

    def feed(self, data: bytes | memoryview) -> list[tuple[int, bytes]]:
        """The frames completed by ``data`` (the greeting lands in ``greeting`` first)."""
        buf = self._buf
        if self._pos:  # what was consumed last time goes now, once, not per frame
            del buf[: self._pos]
            self._pos = 0
        buf += data
        pos, end = 0, len(buf)
        if self.greeting is None:
            if end < GREETING_BYTES:
                return []
            self.greeting = bytes(buf[:GREETING_BYTES])
            pos = GREETING_BYTES
        out: list[tuple[int, bytes]] = []
        while end - pos >= 2:
            flags = buf[pos]
            if flags & ~_KNOWN_FLAGS:
                raise ZmtpError(f"unknown frame flags {flags:#x}")
            if flags & LONG:
                if end - pos < 9:
                    break
                size, start = int.from_bytes(buf[pos + 1 : pos + 9], "big"), pos + 9
            else:
                size, start = buf[pos + 1], pos + 2
            if size > self._max:
                raise ZmtpError(f"a frame of {size} bytes (at most {self._max})")
            if end - start < size:
                break
            out.append((flags, bytes(buf[start : start + size])))
            pos = start + size
        self._pos = pos
        return out
