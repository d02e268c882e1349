"""What the approval client needs around its socket: may we talk to that endpoint at all,
is a message really from our user, and the thread-safe mailbox that wakes the client thread.
"""

from __future__ import annotations

import contextlib
import os
import queue

from aip.shared import logs
from aip.shared.errors import ConfigError
from aip.shared.outcomes import Outcome
from aip.shared.paths import DirState, check_private_dir, socket_path, socket_problem

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

log = logs.get(__name__)


def endpoint_verdict(endpoint: str) -> Outcome | None:
    """None when we may connect: the socket's directory is ours, 0700 and no symlink, and the
    socket is ours. Else APPROVER_UNTRUSTED (someone else's) or APPROVER_UNAVAILABLE (none)."""
    try:
        path = socket_path(endpoint)
    except ConfigError as exc:
        log.error("approver endpoint refused: %s", exc)
        return Outcome.APPROVER_UNTRUSTED
    state, why = check_private_dir(path.parent)
    if state is DirState.UNTRUSTED:
        log.warning("approver socket directory is not trustworthy: %s", why)
        return Outcome.APPROVER_UNTRUSTED
    if state is DirState.MISSING:
        return Outcome.APPROVER_UNAVAILABLE
    problem = socket_problem(path)
    if problem is None:
        return None
    if os.path.lexists(path):
        log.warning("approver socket is not trustworthy: %s", problem)
        return Outcome.APPROVER_UNTRUSTED
    return Outcome.APPROVER_UNAVAILABLE


def same_id(a: str | int, b: str | int) -> bool:
    """JSON-RPC ids match only with the same type: "1" is not 1."""
    return type(a) is type(b) and a == b


def as_dict(obj: Any) -> dict[str, Any]:
    """The fields of a slots dataclass (protocol messages) as a plain dict."""
    return {name: getattr(obj, name) for name in obj.__slots__}


class Mailbox:
    """Commands for the client thread from any thread: a SimpleQueue, plus a pipe whose read
    end sits in the thread's poller so a command wakes it at once."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self.fd, self._wake_w = os.pipe()
        os.set_blocking(self.fd, False)
        os.set_blocking(self._wake_w, False)

    def put(self, name: str, arg: Any) -> None:
        self._queue.put((name, arg))
        with contextlib.suppress(BlockingIOError, OSError):  # full pipe: already woken
            os.write(self._wake_w, b"!")

    def take(self) -> list[tuple[str, Any]]:
        """Everything queued so far (called by the client thread when ``fd`` is readable)."""
        with contextlib.suppress(BlockingIOError):
            while os.read(self.fd, 4096):
                pass
        out = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        for fd in (self.fd, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
