"""Running one dialog process on the event loop: posix_spawn + pidfd where Linux has them.

asyncio's subprocess layer starts a watcher thread and several transports per child (about
0.7 ms here, as much as an ``exec:`` answer program itself); the fast path spawns with
``os.posix_spawn(setsid=True)``, watches the pipes and a pidfd with ``add_reader``, and so
adds almost nothing. Elsewhere (macOS) it falls back to ``asyncio.create_subprocess_exec``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass, field
from typing import Final

READ_CHUNK: Final = 65536
FAST_PATH: Final = hasattr(os, "pidfd_open") and hasattr(os, "posix_spawn")


@dataclass(slots=True)
class _Pipe:
    """One of the child's output pipes, read on the loop until EOF (bounded buffer)."""

    fd: int
    limit: int
    data: bytearray = field(default_factory=bytearray)
    eof: asyncio.Event = field(default_factory=asyncio.Event)

    def drain_now(self) -> None:
        """Read whatever is buffered, without waiting for more."""
        while not self.eof.is_set():
            before = len(self.data)
            try:
                chunk = os.read(self.fd, READ_CHUNK)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self.eof.set()
            elif before < self.limit:
                self.data += chunk[: self.limit - before]

    def on_readable(self) -> None:
        try:
            chunk = os.read(self.fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            asyncio.get_running_loop().remove_reader(self.fd)
            self.eof.set()
        elif len(self.data) < self.limit:
            self.data += chunk[: self.limit - len(self.data)]


async def spawn_and_wait(
    argv: list[str],
    env: dict[str, str],
    stdin_data: bytes | None,
    out_limit: int,
    err_limit: int,
    reap_s: float,
) -> tuple[int, bytes, bytes]:
    """(returncode, stdout, stderr) of ``argv`` run in a new session. Cancelling kills the
    whole process group; the leader is always reaped (bounded by ``reap_s``)."""
    loop = asyncio.get_running_loop()
    in_r, in_w = os.pipe() if stdin_data is not None else (os.open(os.devnull, os.O_RDONLY), -1)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        # posix_spawn returns once the child exists (vfork + exec), it never waits for it.
        pid = os.posix_spawn(  # noqa: ASYNC221
            argv[0],
            argv,
            env,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, in_r, 0),
                (os.POSIX_SPAWN_DUP2, out_w, 1),
                (os.POSIX_SPAWN_DUP2, err_w, 2),
            ],
            setsid=True,  # own session and group: killpg reaches whatever it starts
        )
    except OSError:
        for fd in (in_r, in_w, out_r, out_w, err_r, err_w):
            if fd >= 0:
                os.close(fd)
        raise
    for fd in (in_r, out_w, err_w):  # the child's ends; Python's own fds are CLOEXEC
        os.close(fd)
    pidfd = os.pidfd_open(pid)
    out, err = _Pipe(out_r, out_limit), _Pipe(err_r, err_limit)
    exited = asyncio.Event()
    feeder = _Feeder(in_w, stdin_data or b"") if in_w >= 0 else None
    try:
        for pipe in (out, err):
            os.set_blocking(pipe.fd, False)
            loop.add_reader(pipe.fd, pipe.on_readable)
        loop.add_reader(pidfd, exited.set)
        if feeder is not None:
            feeder.start()
        await exited.wait()
        returncode = _reap(pid)
        # The leader is gone, so what it wrote is in the pipes: take it now. A helper it
        # left behind may still hold them open; we do not wait for their EOF.
        for pipe in (out, err):
            pipe.drain_now()
        return returncode, bytes(out.data), bytes(err.data)
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        if feeder is not None:
            feeder.close()
        for fd in (out_r, err_r, pidfd):
            loop.remove_reader(fd)
        if not exited.is_set():  # cancelled: reap the killed leader (bounded)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_wait_fd(pidfd), reap_s)
            _reap(pid)
        for fd in (out_r, err_r, pidfd):
            os.close(fd)


async def _wait_fd(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready = asyncio.Event()
    loop.add_reader(fd, ready.set)
    try:
        await ready.wait()
    finally:
        loop.remove_reader(fd)


def _reap(pid: int) -> int:
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return -1
    return os.waitstatus_to_exitcode(status) if done == pid else -1


class _Feeder:
    """Writes the request to the child's stdin without ever blocking, then closes it (a
    program that never reads must not stall the approver)."""

    def __init__(self, fd: int, data: bytes) -> None:
        self._fd = fd
        self._rest = memoryview(data)
        self._watching = False

    def start(self) -> None:
        os.set_blocking(self._fd, False)
        self._write()

    def _write(self) -> None:
        while self._rest and self._fd >= 0:
            try:
                written = os.write(self._fd, self._rest)
            except BlockingIOError:
                if not self._watching:
                    asyncio.get_running_loop().add_writer(self._fd, self._write)
                    self._watching = True
                return
            except OSError:  # the program closed its stdin (or died): nothing more to say
                break
            self._rest = self._rest[written:]
        self.close()

    def close(self) -> None:
        if self._fd < 0:
            return
        if self._watching:
            asyncio.get_running_loop().remove_writer(self._fd)
        os.close(self._fd)
        self._fd = -1
