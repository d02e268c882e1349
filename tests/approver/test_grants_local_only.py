"""``aipctl grants`` (and ``status``) are answered only on the local socket: the same frame
from a paired remote device (a message with an ``origin``) is refused ``forbidden`` with the
reason, audited once per connection, and changes nothing (docs/remote.md, DESIGN §11)."""

from __future__ import annotations

import io
from typing import Any

import zmq

from aip.approver.audit.decision_log import StderrLog
from aip.approver.dialogs.choose import Choice
from aip.approver.remote.origin import Origin
from aip.approver.server import ApprovalServer, ServerConfig
from aip.shared.protocol.codec import encode
from aip.shared.protocol.grants import Grants, GrantsOp, GrantsReply
from aip.shared.protocol.messages import Error, ErrorCode, new_nonce
from aip.shared.protocol.status import Status


def _server() -> tuple[ApprovalServer, list[Any]]:
    server = ApprovalServer(
        ServerConfig(endpoint="ipc:///nonexistent"), Choice(None), StderrLog(io.StringIO())
    )
    sent: list[Any] = []
    server._send = lambda route, msg: sent.append(msg)  # type: ignore[method-assign]
    return server, sent


async def test_grants_and_status_from_a_remote_device_are_refused() -> None:
    server, sent = _server()
    audited: list[Any] = []

    def spawn(coro: Any) -> None:  # the refusal's audit record, not run here
        audited.append(coro.cr_code.co_name)
        coro.close()

    server._spawn = spawn  # type: ignore[method-assign]
    origin = Origin("curve", "laptop", "f" * 64, "10.0.0.2")
    msgs = (
        Grants(ref=new_nonce(), op=GrantsOp.REVOKE, all=True),
        Grants(ref=new_nonce(), op=GrantsOp.LIST),
        Status(ref=new_nonce()),
    )
    for msg in msgs:
        server._dispatch(b"r", zmq.Frame(encode(msg)), 0, 0, origin)
    assert [(type(m), m.code, m.about, m.ref) for m in sent] == [
        (Error, ErrorCode.FORBIDDEN, m.type, m.ref) for m in msgs
    ]
    assert all("they may only send hello, ask" in m.detail for m in sent)
    assert audited == ["audit"]  # once per connection
    sent.clear()
    local = Grants(ref=new_nonce(), op=GrantsOp.LIST)
    server._dispatch(b"r", zmq.Frame(encode(local)), 0, 0, None)  # the local socket: answered
    assert sent == [GrantsReply(ref=local.ref, grants=[], missing=[])]
