"""Our ZMTP 3.1 wire (aip.proxy.approval.zmtp): the bytes we send, and what we accept."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aip.proxy.approval import zmtp


def test_greeting_is_libzmq_s_for_a_null_dealer() -> None:
    g = zmtp.GREETING
    assert len(g) == zmtp.GREETING_BYTES == 64
    assert g[0] == 0xFF
    assert g[9] == 0x7F
    assert g[10:12] == b"\x03\x01"
    assert g[12:32] == b"NULL" + b"\0" * 16
    assert g[32] == 0
    assert zmtp.check_greeting(g) == 1


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ((0, 0x00), "not a ZMTP greeting"),
        ((9, 0x01), "not a ZMTP greeting"),
        ((10, 2), "3.0 or later"),
    ],
)
def test_greetings_we_refuse(change: tuple[int, int], why: str) -> None:
    g = bytearray(zmtp.GREETING)
    g[change[0]] = change[1]
    with pytest.raises(zmtp.ZmtpError, match=why):
        zmtp.check_greeting(bytes(g))


def test_a_security_mechanism_is_refused() -> None:
    g = zmtp.GREETING[:12] + b"CURVE".ljust(20, b"\0") + zmtp.GREETING[32:]
    with pytest.raises(zmtp.ZmtpError, match="NULL"):
        zmtp.check_greeting(g)


def test_zmtp_3_0_has_no_heartbeats() -> None:
    assert zmtp.check_greeting(zmtp.GREETING[:11] + b"\x00" + zmtp.GREETING[12:]) == 0


@pytest.mark.parametrize(("size", "header"), [(0, b"\x00\x00"), (255, b"\x00\xff")])
def test_short_frames(size: int, header: bytes) -> None:
    assert zmtp.frame_header(size) == header


def test_long_frames() -> None:
    assert zmtp.frame_header(256) == b"\x02" + (256).to_bytes(8, "big")
    assert zmtp.frame_header(1 << 33, zmtp.COMMAND) == b"\x06" + (1 << 33).to_bytes(8, "big")


def test_ready_names_our_socket_type() -> None:
    frame = zmtp.ready(b"DEALER")
    reader = zmtp.Reader(1 << 20)
    reader.feed(zmtp.GREETING)
    [(flags, body)] = reader.feed(frame)
    assert flags == zmtp.COMMAND
    name, data = zmtp.parse_command(body)
    assert name == b"READY"
    assert zmtp.parse_properties(data) == {"socket-type": b"DEALER"}


def test_ping_and_pong() -> None:
    assert zmtp.parse_command(zmtp.ping(31, b"ctx")[2:]) == (b"PING", b"\x00\x1fctx")
    assert zmtp.parse_command(zmtp.pong(b"ctx")[2:]) == (b"PONG", b"ctx")
    assert zmtp.ping(1 << 20)[7:9] == b"\xff\xff"  # the TTL field is 16 bits


@pytest.mark.parametrize(
    "data",
    [b"\x00", b"\x05Socket", b"\x0bSocket-Type\x00\x00\x00\x09ROUTER", b"\x00\x00\x00\x00\x00"],
)
def test_malformed_metadata(data: bytes) -> None:
    with pytest.raises(zmtp.ZmtpError):
        zmtp.parse_properties(data)


def test_truncated_command() -> None:
    with pytest.raises(zmtp.ZmtpError):
        zmtp.parse_command(b"\x05REA")


def _frame(body: bytes, flags: int = 0) -> bytes:
    return zmtp.frame_header(len(body), flags) + body


@given(
    st.lists(st.tuples(st.sampled_from([0, zmtp.MORE]), st.binary(max_size=700)), max_size=8),
    st.lists(st.integers(min_value=1, max_value=300), min_size=1, max_size=20),
)
def test_frames_come_out_whole_however_the_bytes_arrive(
    frames: list[tuple[int, bytes]], cuts: list[int]
) -> None:
    stream = zmtp.GREETING + b"".join(_frame(body, flags) for flags, body in frames)
    reader = zmtp.Reader(1 << 20)
    got: list[tuple[int, bytes]] = []
    pos = i = 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        got += reader.feed(memoryview(stream)[pos : pos + step])
        pos, i = pos + step, i + 1
    assert reader.greeting == zmtp.GREETING
    # the LONG flag is the reader's business: the sender set it for bodies over 255 bytes
    assert [(f & ~zmtp.LONG, b) for f, b in got] == frames


def test_a_frame_over_the_limit_is_refused_before_it_arrives() -> None:
    reader = zmtp.Reader(1000)
    reader.feed(zmtp.GREETING)
    with pytest.raises(zmtp.ZmtpError, match="1001 bytes"):
        reader.feed(zmtp.frame_header(1001))  # the header alone: nothing is buffered for it


def test_unknown_frame_flags_are_refused() -> None:
    reader = zmtp.Reader(1000)
    with pytest.raises(zmtp.ZmtpError, match="flags"):
        reader.feed(zmtp.GREETING + b"\x08\x00")
