"""The ask's optional ``dlp`` list (issue 5): round trip, absent means [], strict types."""

from __future__ import annotations

import orjson
import pytest

from aip.shared.protocol.codec import ProtocolError, encode
from aip.shared.protocol.frames import decode_to_approver
from aip.shared.protocol.messages import Ask


def _ask(**extra: object) -> Ask:
    return Ask(
        session="0123456789abcdef",
        request_id=7,
        nonce="0" * 32,
        digest="f" * 64,
        tool="write_file",
        arguments={"content": "[REDACTED:aws-access-key]"},
        rule="write_file",
        size=42,
        **extra,  # type: ignore[arg-type]
    )


def test_dlp_round_trips_and_defaults_to_empty() -> None:
    sent = _ask(dlp=["aws-access-key:1", "card-number:2"])
    assert decode_to_approver(encode(sent)) == sent
    frame = orjson.loads(encode(_ask()))
    del frame["dlp"]  # a proxy that does not send it
    assert decode_to_approver(orjson.dumps(frame)) == _ask()
    assert _ask().dlp == []


@pytest.mark.parametrize("bad", ["aws-access-key:1", [1], None, {"a": 1}])
def test_dlp_of_the_wrong_type_is_a_protocol_error(bad: object) -> None:
    frame = orjson.loads(encode(_ask()))
    frame["dlp"] = bad
    with pytest.raises(ProtocolError):
        decode_to_approver(orjson.dumps(frame))
