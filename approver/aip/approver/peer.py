"""What the approver's ROUTER can tell about a message's sender, from libzmq's frame
properties: the peer's uid and pid (SO_PEERCRED, the gate for every message) and the
connection's fd (to forget a session when its connection drops, DESIGN §6)."""

from __future__ import annotations

import zmq

from aip.shared.userns import ambiguous_uid


def peer_of(frame: zmq.Frame) -> tuple[int | None, int | None]:
    """(uid, pid) from libzmq's ``Peer-Address`` property (``host:uid:gid:pid`` on ipc)."""
    try:
        address = frame.get("Peer-Address")
    except zmq.ZMQError:
        return None, None
    parts = str(address).rsplit(":", 3)
    if len(parts) != 4 or not parts[1].isdigit() or not parts[3].isdigit():
        return None, None
    uid = int(parts[1])
    if ambiguous_uid(uid):  # an unmapped peer, seen from inside a user namespace: nobody's
        return None, int(parts[3])
    return uid, int(parts[3])


def readable(sock: zmq.Socket[bytes]) -> bool:
    return bool(int(sock.getsockopt(zmq.EVENTS)) & _POLLIN)


_POLLIN = int(zmq.POLLIN)  # an int: ``&`` with the IntFlag made two enum calls (~8 a message)


def source_fd(frame: zmq.Frame) -> int:
    """The fd of the connection the frame came in on; -1 when unknown."""
    try:
        return int(frame.get(zmq.SRCFD))
    except zmq.ZMQError:
        return -1
