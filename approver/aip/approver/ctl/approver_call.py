"""One request to the running approver from ``aipctl`` (status, grants) and its answer.

A DEALER that is not ``immediate``: the frame waits for the connection, the poll bounds the
whole wait. Replies are matched by ``ref``; anything else on the socket is skipped.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

import zmq

from aip.shared.errors import ConfigError
from aip.shared.protocol.codec import ProtocolError, encode
from aip.shared.protocol.frames import decode_to_proxy
from aip.shared.protocol.messages import Error


class _Reply(Protocol):
    @property
    def ref(self) -> str: ...


R = TypeVar("R", bound=_Reply)


def round_trip(endpoint: str, request: Any, reply_type: type[R], timeout_s: float) -> R | None:
    """``request`` (a message with ``ref``) and its ``reply_type`` answer; None when nothing
    answered in time. ConfigError when the approver refused it (one too old to know it)."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    try:
        sock.connect(endpoint)
        sock.send(encode(request), flags=zmq.NOBLOCK)
        while sock.poll(int(timeout_s * 1000), zmq.POLLIN):
            try:
                reply = decode_to_proxy(sock.recv(zmq.NOBLOCK))
            except ProtocolError:
                continue
            if isinstance(reply, reply_type) and reply.ref == request.ref:
                return reply
            if isinstance(reply, Error):
                what = request.type.value
                raise ConfigError(f"the approver refused the {what} request: {reply.detail}")
        return None
    except zmq.ZMQError:
        return None
    finally:
        sock.close(linger=0)
        ctx.term()
