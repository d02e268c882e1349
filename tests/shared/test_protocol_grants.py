"""The ``grants`` control messages (docs/grants.md) and the ask's grant facts."""

from __future__ import annotations

import pytest

from aip.shared.digests import canonical_digest
from aip.shared.protocol.codec import ProtocolError, encode
from aip.shared.protocol.facts import GrantFacts
from aip.shared.protocol.frames import LOCAL_ONLY, decode_to_approver, decode_to_proxy
from aip.shared.protocol.grants import Grants, GrantsOp, GrantsReply
from aip.shared.protocol.messages import Ask, new_nonce
from aip.shared.protocol.status import Status

H = "a" * 64


def test_round_trips_and_local_only() -> None:
    msg = Grants(ref=new_nonce(), op=GrantsOp.REVOKE, tool="write_file")
    assert decode_to_approver(encode(msg)) == msg
    reply = GrantsReply(ref=msg.ref, grants=[{"grant_id": "g-1"}], missing=["g-2"])
    assert decode_to_proxy(encode(reply)) == reply
    assert {Grants, Status} <= LOCAL_ONLY


@pytest.mark.parametrize(
    "fields",
    [
        {"op": "revoke"},  # nothing named
        {"op": "revoke", "all": True, "tool": "x"},  # two at once
        {"op": "list", "session": "nothex"},
        {"op": "drop"},
    ],
)
def test_bad_grants_requests_are_protocol_errors(fields: dict[str, object]) -> None:
    frame = encode({"v": 1, "type": "grants", "ref": new_nonce(), **fields})
    with pytest.raises(ProtocolError):
        decode_to_approver(frame)


def test_ask_facts_are_optional_and_checked() -> None:
    base = {"session": "0123456789abcdef", "request_id": 1, "nonce": "0" * 32, "digest": H,
            "tool": "t", "arguments": {}, "rule": "r", "size": 2}  # fmt: skip
    assert decode_to_approver(encode(Ask(**base))).grant is None  # a proto 2 proxy's ask
    facts = GrantFacts(server_sha256=H, tool_sha256="", args_sha256=canonical_digest({}))
    assert decode_to_approver(encode(Ask(**base, grant=facts))).grant == facts
    bad = {"v": 1, "type": "ask", **base, "grant": {"server_sha256": "x", "tool_sha256": "",
                                                     "args_sha256": H}}  # fmt: skip
    with pytest.raises(ProtocolError):
        decode_to_approver(encode(bad))


def test_canonical_digest() -> None:
    assert canonical_digest({"a": 1, "b": [1, 2]}) == canonical_digest({"b": [1, 2], "a": 1})
    assert canonical_digest({"a": 1}) != canonical_digest({"a": "1"})
    deep: object = "x"
    for _ in range(1000):
        deep = [deep]
    assert canonical_digest(deep) != canonical_digest(deep)  # unencodable: matches nothing
