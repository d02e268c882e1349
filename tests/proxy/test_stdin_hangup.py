"""The stdin hang-up watch (aip.proxy.runner._watch_hangup) on real pipes and socketpairs:
it stops the proxy when the agent is gone but the relay, blocked on a deaf server, cannot
read the EOF, and stays quiet while the agent is there or the relay still makes progress.
The end-to-end case is tests/hardening/test_faults.py (a real proxy, a deaf server)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aip.proxy.runner import _watch_hangup
from aip.proxy.stdio import Wire
from tests.support.fdwait import readable, writable
from tests.support.proxyproc import FAST_ENV, proxy_command, write_policy

PROGRESS = {"progressToken": 1, "progress": 1, "message": "m" * 60_000}  # forwarded
DEAF_SERVER = [sys.executable, str(Path(__file__).parents[1] / "hardening" / "children.py")]

GRACE_S = 0.1
POLL_MS = 20
DEADLINE_S = 10.0


class Watch:
    """One watch thread on ``fd``; ``up_done`` plays the relay ending by itself."""

    def __init__(self, fd: int, grace_s: float = GRACE_S) -> None:
        self.up_done = threading.Event()
        self.stopped = threading.Event()
        self.reasons: list[str] = []
        self.thread = threading.Thread(
            target=_watch_hangup, args=(fd, self.up_done, grace_s, self._stop, POLL_MS)
        )
        self.thread.start()

    def _stop(self, reason: str) -> None:
        self.reasons.append(reason)
        self.stopped.set()

    def finish(self) -> None:
        self.up_done.set()
        self.thread.join(DEADLINE_S)
        assert not self.thread.is_alive()


class Pipe:
    """A pipe whose ends are closed once each (a second close could hit a reused fd)."""

    def __init__(self) -> None:
        self.r, self.w = os.pipe()
        self._open = {self.r, self.w}

    def close_writer(self) -> None:
        self._close(self.w)

    def _close(self, fd: int) -> None:
        if fd in self._open:
            self._open.discard(fd)
            os.close(fd)

    def close(self) -> None:
        for fd in sorted(self._open):
            self._close(fd)


@pytest.fixture
def pipe() -> Iterator[Pipe]:
    p = Pipe()
    yield p
    p.close()


def test_pipe_closed_with_unread_data_and_a_stuck_relay_stops(pipe: Pipe) -> None:
    os.write(pipe.w, b"x" * 10_000)  # the relay never reads it: blocked on the server
    watch = Watch(pipe.r)
    pipe.close_writer()
    assert watch.stopped.wait(DEADLINE_S)
    assert watch.reasons == ["agent closed stdin (the relay is blocked writing to the server)"]
    watch.finish()


@pytest.mark.parametrize("how", ["shutdown", "close"])
def test_socket_stdin_half_closed_or_closed_stops(how: str) -> None:
    """Node hosts give their children socketpairs; ``stdin.end()`` is shutdown(SHUT_WR),
    which only POLLRDHUP reports (no POLLHUP while our write half is open)."""
    ours, host = socket.socketpair()
    with ours, host:
        host.sendall(b"y" * 10_000)
        watch = Watch(ours.fileno())
        if how == "shutdown":
            host.shutdown(socket.SHUT_WR)
        else:
            host.close()
        assert watch.stopped.wait(DEADLINE_S)
        watch.finish()


def test_agent_still_there_never_stops(pipe: Pipe) -> None:
    os.write(pipe.w, b"x" * 10_000)
    watch = Watch(pipe.r)
    # Many poll rounds and graces with the writer open: a full pipe alone is no reason.
    assert not watch.stopped.wait(5 * GRACE_S)
    watch.finish()
    assert watch.reasons == []


def test_relay_that_reads_the_eof_itself_is_left_alone(pipe: Pipe) -> None:
    watch = Watch(pipe.r)
    pipe.close_writer()
    watch.finish()  # the relay saw the EOF: the watch ends without a stop
    assert watch.reasons == []


def test_relay_still_draining_after_the_hangup_is_not_cut_off(pipe: Pipe) -> None:
    """A slow server that still reads: the relay keeps taking what the agent left (progress
    every few ms, far within the grace), then reads the EOF itself."""
    os.write(pipe.w, b"z" * 20_000)
    watch = Watch(pipe.r, grace_s=0.5)
    pipe.close_writer()

    def slow_relay() -> None:
        while os.read(pipe.r, 500):
            time.sleep(0.01)  # pacing a slow reader, not synchronisation
        watch.up_done.set()

    relay = threading.Thread(target=slow_relay)
    relay.start()
    relay.join(DEADLINE_S)
    watch.finish()
    assert watch.reasons == []


def test_real_proxy_with_a_socket_stdin_stops_on_half_close(tmp_path: Path) -> None:
    """A Node-like host: stdin is a socketpair end, ``end()`` is shutdown(SHUT_WR), and the
    server never reads. The proxy must still go through its orderly stop (SIGTERM here)."""
    policy = write_policy(tmp_path, "allowed_tools: [echo]\n")
    ours, host = socket.socketpair()
    env = {k: v for k, v in os.environ.items() if k != "AIP_AGENT_ID"} | FAST_ENV
    argv = [*proxy_command(), "--policy", str(policy), "--", *DEAF_SERVER, "deaf-talker", "0"]
    with ours, host, (tmp_path / "proxy.stderr").open("wb") as err:
        proc = subprocess.Popen(
            argv,
            stdin=ours.fileno(),
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
            start_new_session=True,
        )
        ours.close()
        try:
            line = json.dumps(
                {"jsonrpc": "2.0", "method": "notifications/progress", "params": PROGRESS}
            )
            data = (line.encode() + b"\n") * 60  # more than both socket buffers and a pipe
            host.setblocking(False)
            sent, deadline = 0, time.monotonic() + 20
            while sent < len(data):
                if not writable(host, 0.5):
                    if sent > 2 * len(line) or time.monotonic() > deadline:
                        break  # the proxy took some and then stopped reading: stuck
                    continue
                try:
                    sent += host.send(data[sent:])
                except BlockingIOError:
                    continue
            assert 2 * len(line) < sent < len(data), sent
            host.shutdown(socket.SHUT_WR)  # our write half only: no POLLHUP for the proxy
            try:
                code = proc.wait(5)  # graces of 0.3 s (FAST_ENV)
            except subprocess.TimeoutExpired:
                pytest.fail("proxy still running 5 s after the host half-closed its stdin")
            assert code == 128 + signal.SIGTERM
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_wire_closed_under_a_blocked_write_closes_once_the_write_returns() -> None:
    """Shutdown while the relay is blocked on a server that paused: close() does not close
    the fd under the writer, but the writer does once the server reads again, so a slow
    (not deaf) server still gets its EOF within the stdin grace."""
    r, w = os.pipe()
    wire = Wire(w, "server stdin")
    data = b"q" * (4 * 65536)  # more than the pipe holds: the write blocks
    writer = threading.Thread(target=wire.write, args=(data,))
    writer.start()
    try:
        ready = readable(r, DEADLINE_S)
        assert ready  # the writer has started and filled the pipe
        wire.close()  # gives up after CLOSE_WAIT_S: the write is blocked
        assert wire.broken
        assert writer.is_alive()
        got = 0
        while True:  # EOF only once the writer closed the fd
            assert readable(r, DEADLINE_S), "no EOF: the fd stays open"
            chunk = os.read(r, 65536)
            if not chunk:
                break
            got += len(chunk)
        assert got == len(data)
        writer.join(DEADLINE_S)
        assert not writer.is_alive()
        assert not wire.write(b"dropped\n")  # nothing more is relayed
    finally:
        os.close(r)
