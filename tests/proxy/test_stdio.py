"""Burst line reading and held writes over real pipes."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aip.proxy import stdio
from aip.proxy.stdio import Oversize, Wire, read_bursts

MAX = 64


def _expected(lines: list[bytes], tail: bytes) -> list[bytes | None]:
    out: list[bytes | None] = [line if len(line) <= MAX + 1 else None for line in lines]
    if tail:
        out.append(tail if len(tail) <= MAX else None)
    return out


def _feed(data: bytes, cuts: list[int]) -> list[bytes | None]:
    """The lines read; None for an over-long line, whose kept head must start it."""
    r, w = os.pipe()
    result: list[bytes | Oversize] = []

    def reader() -> None:
        for burst in read_bursts(r, MAX):
            result.extend(burst)

    t = threading.Thread(target=reader)
    t.start()
    pos = 0
    for cut in [*sorted(cuts), len(data)]:
        if cut > pos:
            os.write(w, data[pos:cut])
            pos = cut
    os.close(w)
    t.join(10)
    os.close(r)
    starts = [0, *(i + 1 for i in range(len(data)) if data[i : i + 1] == b"\n")]
    out: list[bytes | None] = []
    for item, start in zip(result, starts, strict=False):
        if isinstance(item, Oversize):
            assert item.head
            assert data[start:].startswith(item.head)
            out.append(None)
        else:
            out.append(item)
    return out


@settings(max_examples=150, deadline=None)
@given(
    lines=st.lists(
        st.binary(max_size=150).map(lambda b: b.replace(b"\n", b"x") + b"\n"), max_size=12
    ),
    tail=st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"y")),
    cuts=st.lists(st.integers(0, 2000), max_size=8),
    buffer=st.sampled_from([1 << 20, 16, 7]),
)
def test_bursts_give_the_lines_whatever_the_chunking(
    lines: list[bytes], tail: bytes, cuts: list[int], buffer: int
) -> None:
    data = b"".join(lines) + tail
    saved = stdio.READ_BUFFER_BYTES
    stdio.READ_BUFFER_BYTES = buffer  # small buffers: lines spill across several reads
    try:
        got = _feed(data, [c for c in cuts if c < len(data)])
    finally:
        stdio.READ_BUFFER_BYTES = saved
    assert got == _expected(lines, tail)


def test_oversized_line_in_many_reads_is_one_marker() -> None:
    data = b"a\n" + b"z" * 1000 + b"\n" + b"b\n"
    assert _feed(data, list(range(0, len(data), 7))) == [b"a\n", None, b"b\n"]


def test_exactly_max_is_accepted() -> None:
    line = b"q" * MAX + b"\n"
    assert _feed(line + line[:-1] + b"qq\n", []) == [line, None]


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        with contextlib.suppress(OSError):
            os.close(fd)


def test_held_writes_go_out_in_one_write_and_other_threads_pass(pipe: tuple[int, int]) -> None:
    r, w = pipe
    wire = Wire(w, "test")
    wire.hold()
    wire.write(b"1\n")
    wire.write(b"2\n")
    other = threading.Thread(target=wire.write, args=(b"other\n",))
    other.start()
    other.join()
    assert os.read(r, 100) == b"other\n"  # not held: another thread
    assert wire.flush()
    assert os.read(r, 100) == b"1\n2\n"
    wire.write(b"3\n")  # no longer held
    assert os.read(r, 100) == b"3\n"


def test_broken_wire_reports_once(pipe: tuple[int, int]) -> None:
    r, w = pipe
    calls: list[int] = []
    wire = Wire(w, "test", on_broken=lambda: calls.append(1))
    os.close(r)
    assert not wire.write(b"x\n")
    assert not wire.write(b"y\n")
    assert wire.broken
    assert calls == [1]
