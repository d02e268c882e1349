"""The pairing exchange on the remote listener (issue 14.3): ``aipctl remote join`` sends one
``pair`` request over CURVE to the server key its code pinned; the approver answers one
``pair_reply`` after the human decided (or at once, refused). Nothing else parses them.

A ``pair`` from a key that is not yet trusted is the only message the listener reads from
such a key, and only while a pairing window is open.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from aip.shared.protocol.codec import PROTOCOL_VERSION, decode, message_table, need


class PairType(enum.StrEnum):
    PAIR = "pair"
    PAIR_REPLY = "pair_reply"


@dataclass(frozen=True, slots=True, kw_only=True)
class PairRequest:
    host: str  # what the joining host calls itself (shown in the dialog, not trusted)
    key: str  # the joiner's CURVE public key, Z85 (it must be the key of the connection)
    proof: str  # remote.code.join_proof: the joiner holds the code's secret
    type: PairType = PairType.PAIR
    v: int = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        need(len(self.host) <= 64, "pair.host: at most 64 characters")
        need(len(self.key) == 40, "pair.key: a Z85 public key (40 characters)")
        need(len(self.proof) == 64, "pair.proof: 64 hex digits")


@dataclass(frozen=True, slots=True, kw_only=True)
class PairReply:
    paired: bool
    name: str = ""  # the device name the desktop gave this host (its window's)
    reason: str  # "paired", or why not: "denied", "no_window", "bad_proof", "dialog_error", ...
    expires: float = 0.0  # UTC epoch seconds when paired
    type: PairType = PairType.PAIR_REPLY
    v: int = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        need(len(self.reason) <= 64, "pair_reply.reason: at most 64 characters")
        need(len(self.name) <= 32, "pair_reply.name: at most 32 characters")


_REQUESTS: Final = message_table((PairRequest,))
_REPLIES: Final = message_table((PairReply,))


def decode_pair_request(frame: bytes) -> PairRequest:
    msg = decode(frame, _REQUESTS)
    assert isinstance(msg, PairRequest)
    return msg


def decode_pair_reply(frame: bytes) -> PairReply:
    msg = decode(frame, _REPLIES)
    assert isinstance(msg, PairReply)
    return msg
