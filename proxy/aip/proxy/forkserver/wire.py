"""The fork server's socket format (its only owner): unix SOCK_SEQPACKET, one message per packet.

A packet is ``marshal`` of a tuple ``(kind, value)``; the peer is always a process of our own
uid (SO_PEERCRED, checked before any packet is read), which could ptrace us anyway, so marshal
is no new exposure, and every value is checked for its shape before use: a bad packet is a
``WireError``, never a crash. Kinds:

- launcher -> server: ``request`` (a dict, below: the launcher's inputs), with its stdin,
  stdout, stderr and current folder as SCM_RIGHTS descriptors (in that order). What limits
  or confines the launcher (credentials, capabilities, seccomp, namespaces, cgroup, rlimits,
  nice) is never taken from a request: the server reads it from /proc (server.py);
- server or session -> launcher: ``started`` (session pid, with a pidfd of the session as
  SCM_RIGHTS: the launcher's job control signals it), ``refused`` (why: the launcher
  then starts in-process), ``exit`` (the session's exit code), ``signaled`` (the signal that
  ended it);
- launcher -> session: ``signal`` (a SIGINT, SIGTERM or SIGHUP the launcher received).

Light (runs in every launcher): _socket and marshal, no socket.py.
"""

from __future__ import annotations

import _socket
import marshal
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

MAX_PACKET: Final = 1 << 20  # a request carries the environment; larger fails at send (EMSGSIZE)
FDS: Final = 4  # stdin, stdout, stderr, current folder
_INT_SIZE: Final = 4
SO_PEERCRED: Final = 17  # Linux
SO_PEERPIDFD: Final = 77  # Linux 6.5: a pidfd of the peer, so its pid cannot be reused under us
# Each request field and the type its value must have (tuples of bytes pairs, lists of ints).
REQUEST_FIELDS: Final = {
    "key": str,
    "argv": list,
    "environ": list,
    "exec_environ": bytes,
    "umask": int,
    "sig_ignored": int,
    "sig_blocked": int,
    "affinity": list,
    "comm": bytes,
}
REPLY_KINDS: Final = frozenset({"started", "refused", "exit", "signaled"})


class WireError(Exception):
    """A packet that is not a message of this format."""


def unix_socket() -> _socket.socket:
    return _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC)


def peer_credentials(sock: _socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end (as it was at connect/listen time)."""
    raw = sock.getsockopt(_socket.SOL_SOCKET, SO_PEERCRED, 3 * _INT_SIZE)
    pid, uid, gid = (
        int.from_bytes(raw[i : i + _INT_SIZE], sys.byteorder) for i in range(0, 12, _INT_SIZE)
    )
    return pid, uid, gid


def peer_pidfd(sock: _socket.socket) -> int:
    """A pidfd of the peer (the caller closes it); OSError where the kernel has none."""
    return int(sock.getsockopt(_socket.SOL_SOCKET, SO_PEERPIDFD))


def send(sock: _socket.socket, kind: str, value: Any, fds: list[int] | None = None) -> None:
    data = marshal.dumps((kind, value))
    if fds:
        raw = b"".join(fd.to_bytes(_INT_SIZE, sys.byteorder) for fd in fds)
        sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, raw)])
    else:
        sock.send(data)


def receive(sock: _socket.socket, max_fds: int = 0) -> tuple[str, Any, list[int]] | None:
    """The next message and the descriptors that came with it (the caller owns and closes
    them, even when the message is refused); None at EOF."""
    space = _socket.CMSG_SPACE(max_fds * _INT_SIZE) if max_fds else 0
    data, ancillary, flags, _ = sock.recvmsg(MAX_PACKET, space)
    fds: list[int] = []
    for level, ctype, raw in ancillary:
        if level == _socket.SOL_SOCKET and ctype == _socket.SCM_RIGHTS:
            usable = len(raw) - len(raw) % _INT_SIZE
            fds += [
                int.from_bytes(raw[i : i + _INT_SIZE], sys.byteorder)
                for i in range(0, usable, _INT_SIZE)
            ]
    if not data:
        _close_all(fds)
        return None
    if flags & (_socket.MSG_TRUNC | _socket.MSG_CTRUNC):
        _close_all(fds)
        raise WireError("message or descriptors truncated")
    try:
        msg = marshal.loads(data)  # noqa: S302 - a peer of our own uid (see above)
    except (EOFError, ValueError, TypeError) as exc:
        _close_all(fds)
        raise WireError(f"not a message: {exc}") from None
    if not (isinstance(msg, tuple) and len(msg) == 2 and isinstance(msg[0], str)):
        _close_all(fds)
        raise WireError("not a (kind, value) pair")
    return msg[0], msg[1], fds


def check_request(value: Any) -> dict[str, Any]:
    """The request's fields, each of its expected type, or WireError."""
    if not isinstance(value, dict) or set(value) != set(REQUEST_FIELDS):
        raise WireError("a request has exactly the fields " + ", ".join(sorted(REQUEST_FIELDS)))
    for name, kind in REQUEST_FIELDS.items():
        if type(value[name]) is not kind:
            raise WireError(f"request field {name!r} is not a {kind.__name__}")
    _all(value["argv"], lambda a: isinstance(a, str), "argv")
    _all(value["environ"], _bytes_pair, "environ")
    _all(value["affinity"], lambda c: type(c) is int and c >= 0, "affinity")
    return value


def check_reply(kind: str, value: Any) -> None:
    if kind not in REPLY_KINDS:
        raise WireError(f"unknown reply {kind!r}")
    expected = str if kind == "refused" else int
    if type(value) is not expected:
        raise WireError(f"{kind}: not a {expected.__name__}")


def _all(items: Any, ok: Any, name: str) -> None:
    if not all(ok(item) for item in items):
        raise WireError(f"request field {name!r} has a malformed item")


def _bytes_pair(item: Any) -> bool:
    return isinstance(item, tuple) and len(item) == 2 and all(type(x) is bytes for x in item)


def _close_all(fds: list[int]) -> None:
    import contextlib
    import os

    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
