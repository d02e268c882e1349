"""The one vocabulary of outcomes (DESIGN §5): code, message and audit reason per outcome.

Nothing else in the code base spells an error code, an error message or an audit reason;
callers name an ``Outcome`` and read the row. Audit ``decision`` is ``allow`` only for the
outcomes that forward the message.
"""

from __future__ import annotations

import enum

from aip.shared import slotclass
from aip.shared.slotclass import FrozenSlotted

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final


class Outcome(enum.StrEnum):
    POLICY_ALLOWED = "policy_allowed"
    HUMAN_APPROVED = "human_approved"
    GRANTED = "granted"  # a remembered human approval answered the ask (docs/grants.md)
    NOT_ALLOWED = "not_allowed"
    DENIED_TOOL = "denied_tool"
    BLOCKED_BY_RULE = "blocked_by_rule"
    ARGUMENT_INVALID = "argument_invalid"
    STRICT_ARGS = "strict_args"
    DLP = "dlp"
    DENIED_BY_USER = "denied_by_user"
    DENIED_BY_GRANT = "denied_by_grant"  # a remembered "deny and don't ask again"
    TIMEOUT = "timeout"
    APPROVER_UNAVAILABLE = "approver_unavailable"
    APPROVER_UNTRUSTED = "approver_untrusted"
    QUEUE_FULL = "queue_full"
    ASK_RATE_LIMITED = "ask_rate_limited"
    NO_DISPLAY = "no_display"
    DIALOG_ERROR = "dialog_error"
    SHUTDOWN = "shutdown"
    AUDIT_UNAVAILABLE = "audit_unavailable"
    TOO_LARGE_TO_REVIEW = "too_large_to_review"
    # A remote (CURVE) approver (DESIGN §10): each failure of the link says which it was.
    REMOTE_LINK_LOST = "remote_link_lost"  # no heartbeat / connection dropped
    REMOTE_KEY_REFUSED = "remote_key_refused"  # our key is not (or no longer) paired there
    REMOTE_SERVER_UNVERIFIED = "remote_server_unverified"  # the peer could not prove its key
    CANCELLED = "cancelled"
    RATE_LIMITED = "rate_limited"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    PROTECTED_PATH = "protected_path"
    PARSE_ERROR = "parse_error"
    INVALID_REQUEST = "invalid_request"
    SERVER_EXITED = "server_exited"
    INTERNAL_ERROR = "internal_error"


class OutcomeRow(FrozenSlotted):
    """One row of the DESIGN §5 table. ``code`` is None where no JSON-RPC error is sent."""

    __slots__ = ("audit_reason", "code", "forwards", "message", "outcome", "vector")
    outcome: Outcome
    code: int | None
    message: str | None
    audit_reason: str
    forwards: bool  # audit decision "allow" (the message reaches the server)
    vector: str | None  # the conformance vectors' decision word, where one exists

    def __init__(
        self,
        outcome: Outcome,
        code: int | None,
        message: str | None,
        audit_reason: str,
        forwards: bool,
        vector: str | None,
    ) -> None:
        slotclass.init(self, "outcome", outcome)
        slotclass.init(self, "code", code)
        slotclass.init(self, "message", message)
        slotclass.init(self, "audit_reason", audit_reason)
        slotclass.init(self, "forwards", forwards)
        slotclass.init(self, "vector", vector)


FORBIDDEN: Final = "Forbidden"
ARG_INVALID: Final = "Argument validation failed"
UNAVAILABLE: Final = "Human approval unavailable"

_UNAVAILABLE_REASONS: Final = (
    Outcome.APPROVER_UNAVAILABLE,
    Outcome.APPROVER_UNTRUSTED,
    Outcome.QUEUE_FULL,
    Outcome.ASK_RATE_LIMITED,
    Outcome.NO_DISPLAY,
    Outcome.DIALOG_ERROR,
    Outcome.SHUTDOWN,
    Outcome.AUDIT_UNAVAILABLE,
    Outcome.TOO_LARGE_TO_REVIEW,
    Outcome.REMOTE_LINK_LOST,
    Outcome.REMOTE_KEY_REFUSED,
    Outcome.REMOTE_SERVER_UNVERIFIED,
)


def _rows() -> dict[Outcome, OutcomeRow]:
    o = Outcome
    table = [
        OutcomeRow(o.POLICY_ALLOWED, None, None, "policy allowed", True, "ALLOW"),
        OutcomeRow(o.HUMAN_APPROVED, None, None, "human approved", True, "ASK"),
        # Never "human approved": the guide's jq query finds only a human's own decisions.
        OutcomeRow(o.GRANTED, None, None, "remembered approval", True, "ASK"),
        OutcomeRow(o.NOT_ALLOWED, -32001, FORBIDDEN, "tool not allowed", False, "BLOCK"),
        OutcomeRow(o.DENIED_TOOL, -32001, FORBIDDEN, "tool denied", False, "BLOCK"),
        OutcomeRow(o.BLOCKED_BY_RULE, -32001, FORBIDDEN, "blocked by rule", False, "BLOCK"),
        OutcomeRow(
            o.ARGUMENT_INVALID, -32001, ARG_INVALID, "argument validation failed", False, "BLOCK"
        ),
        OutcomeRow(o.STRICT_ARGS, -32001, ARG_INVALID, "undeclared argument", False, "BLOCK"),
        OutcomeRow(o.DLP, -32001, FORBIDDEN, "secret in arguments", False, "BLOCK"),
        OutcomeRow(
            o.DENIED_BY_USER, -32002, "Human approval denied", "human denied", False, "BLOCK"
        ),
        OutcomeRow(
            o.DENIED_BY_GRANT,
            -32002,
            "Human approval denied",
            "remembered denial",
            False,
            "BLOCK",
        ),
        OutcomeRow(
            o.TIMEOUT,
            -32002,
            "Human approval required but timed out",
            "human approval timed out",
            False,
            "BLOCK",
        ),
        *(
            OutcomeRow(r, -32002, UNAVAILABLE, f"approval unavailable: {r.value}", False, "BLOCK")
            for r in _UNAVAILABLE_REASONS
        ),
        OutcomeRow(o.CANCELLED, None, None, "cancelled", False, None),
        OutcomeRow(
            o.RATE_LIMITED, -32003, "Rate limit exceeded", "rate limited", False, "RATE_LIMITED"
        ),
        OutcomeRow(
            o.METHOD_NOT_ALLOWED, -32006, "Method not allowed", "method not allowed", False, "BLOCK"
        ),
        OutcomeRow(
            o.PROTECTED_PATH,
            -32007,
            "Access denied: protected path",
            "protected path",
            False,
            "PROTECTED_PATH",
        ),
        OutcomeRow(o.PARSE_ERROR, -32700, "Parse error", "malformed input", False, None),
        OutcomeRow(o.INVALID_REQUEST, -32600, "Invalid Request", "malformed input", False, None),
        OutcomeRow(o.SERVER_EXITED, -32603, "MCP server exited", "server exited", False, None),
        OutcomeRow(o.INTERNAL_ERROR, -32603, "Internal error", "internal error", False, None),
    ]
    return {row.outcome: row for row in table}


ROWS: Final[dict[Outcome, OutcomeRow]] = _rows()
assert set(ROWS) == set(Outcome), "every outcome has exactly one row"


def row(outcome: Outcome) -> OutcomeRow:
    return ROWS[outcome]


def audit_decision(outcome: Outcome) -> str:
    """``allow`` when the message was forwarded, else ``deny`` (DESIGN §5)."""
    return "allow" if ROWS[outcome].forwards else "deny"


UNAVAILABLE_OUTCOMES: Final = frozenset(_UNAVAILABLE_REASONS)


def is_unavailable(outcome: Outcome) -> bool:
    return outcome in UNAVAILABLE_OUTCOMES
