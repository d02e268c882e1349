"""What the approval server does differently for a message that came over the remote (CURVE)
listener (DESIGN §10), kept out of server.py:

- routes: a remote peer's routing id is stored as ``REMOTE_TAG + id`` (a local ROUTER's ids
  start with a zero byte), so one session table serves both sockets and a reply finds its way;
- what a remote peer may send: hello, ask, cancel, audit, bye; never ``status`` (the gpg
  extra-socket model: a remote host can only submit asks and records);
- origin: every record of a remote session carries the origin the listener authenticated;
  a local proxy's record never carries one (a proxy cannot claim to be remote, or another
  device).
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Callable
from itertools import repeat
from typing import Any, Final

import zmq

from aip.approver.remote.listener import RemoteListener
from aip.approver.remote.origin import Origin
from aip.approver.remote.pairing import Confirm

REMOTE_TAG: Final = b"\xffR"


def remote_route(route: bytes) -> bytes:
    return REMOTE_TAG + route


def split_route(route: bytes) -> bytes | None:
    """The remote listener's routing id, or None for a local route."""
    return route[len(REMOTE_TAG) :] if route.startswith(REMOTE_TAG) else None


def stamp(records: list[Any], origin: Origin | None) -> list[Any]:
    """Proxy records as they go to the log: ``origin`` set from the session (remote), or
    removed (local). Non-objects are passed on for the ingest check to refuse."""
    if origin is None:  # local, as nearly all are: nothing to take out, nothing copied
        with contextlib.suppress(TypeError):  # a record that cannot hold "origin": see below
            if not any(map(operator.contains, records, repeat("origin"))):  # one pass in C
                return records
    out = []
    for record in records:
        if isinstance(record, dict):
            record = {k: v for k, v in record.items() if k != "origin"}
            if origin is not None:
                record["origin"] = origin.to_json()
        out.append(record)
    return out


def open_listener(
    endpoint: str,
    dispatch: Callable[[bytes, zmq.Frame, Origin], None],
    forget_route: Callable[[bytes], Any],
    confirm: Confirm | None,
    limits: tuple[float, int],
) -> RemoteListener:
    """The remote listener, open (ConfigError: not serving remote), wired to the server:
    its routes tagged, its lost connections ending their sessions. ``limits``: the ask
    timeout (also the pair dialog's) and the frame size limit."""
    listener = RemoteListener(
        endpoint,
        on_frame=lambda route, body, origin: dispatch(remote_route(route), body, origin),
        on_gone=lambda route: forget_route(remote_route(route)),
        confirm=confirm,
        timeout_s=limits[0],
        max_frame=limits[1],
    )
    listener.open()
    return listener
