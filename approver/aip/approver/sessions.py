"""The proxies the approver knows: one ``Session`` per hello, keyed by the proxy's session id.

A session is bound to the ZeroMQ routing id and connection fd it said hello on; when that
connection drops (monitor DISCONNECTED with the same fd) the session is gone, exactly as the
proxy side denies everything pending when it sees the disconnect.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from aip.approver.remote.origin import Origin
from aip.shared.protocol.messages import Hello, PolicyRef


@dataclass(slots=True)
class Session:
    sid: str
    route: bytes  # ROUTER routing id of the proxy's DEALER connection
    fd: int  # the connection's fd inside libzmq (-1 when unknown)
    uid: int
    peer_pid: int  # from the kernel (SO_PEERCRED); for display and logs only
    pid: int  # as the proxy said
    agent_id: str
    server: str
    policy: PolicyRef
    user: str
    origin: Origin | None = None  # a paired remote device (DESIGN §10); None: local ipc


class SessionTable:
    def __init__(self) -> None:
        self._by_sid: dict[str, Session] = {}

    def hello(
        self,
        msg: Hello,
        route: bytes,
        fd: int,
        uid: int,
        peer_pid: int,
        user: str,
        origin: Origin | None = None,
    ) -> Session:
        """Create or refresh a session (a re-hello after reconnect updates route and fd)."""
        found = self._by_sid.get(msg.session)
        if found is None:
            found = Session(
                msg.session,
                route,
                fd,
                uid,
                peer_pid,
                msg.pid,
                msg.agent_id,
                msg.server,
                msg.policy,
                user,
                origin,
            )
            self._by_sid[msg.session] = found
        else:
            found.route, found.fd, found.uid, found.peer_pid = route, fd, uid, peer_pid
            found.origin = origin
            found.pid, found.agent_id, found.server, found.policy = (
                msg.pid,
                msg.agent_id,
                msg.server,
                msg.policy,
            )
        return found

    def lookup(self, sid: str, route: bytes) -> Session | None:
        """The session, only if this message came over the connection that said hello."""
        found = self._by_sid.get(sid)
        return found if found is not None and found.route == route else None

    def remove(self, sid: str) -> Session | None:
        return self._by_sid.pop(sid, None)

    def on_fd(self, fd: int) -> list[Session]:
        return [s for s in self._by_sid.values() if s.fd == fd]  # a CURVE session's is -1

    def on_route(self, route: bytes) -> list[Session]:
        return [s for s in self._by_sid.values() if s.route == route]

    def __len__(self) -> int:
        return len(self._by_sid)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._by_sid.values()))  # a copy: callers may remove while iterating
