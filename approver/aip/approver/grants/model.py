"""What a remembered decision (a grant) is: its binding, its caps, and how it is shown.

A grant lives in the approver's memory only and answers an ask only when everything it binds
is the same (docs/grants.md): the agent, the proxy session (unless timed), the server's name
and the digests of its command line and of the tool's ``tools/list`` entry, the tool, the
policy's digest, the rule that asked, and either the canonical arguments' digest (exact) or
per-argument full-match RE2 patterns that must cover exactly the arguments present (like,
so an extra argument never matches). Caps are hard: 8 h, 50 uses (exact 20), 30 min idle.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from aip.approver.dialogs.verdict import MAX_SECONDS, Scope

MAX_USES: Final = 50
MAX_USES_EXACT: Final = 20
IDLE_S: Final = 30 * 60.0
# Tests shorten the idle expiry (like the ask timeout); never longer than the default.
IDLE_ENV: Final = "AIP_GRANT_IDLE_S"


def idle_seconds() -> float:
    """``$AIP_GRANT_IDLE_S`` when it is a positive number below the default, else 30 min."""
    try:
        value = float(os.environ.get(IDLE_ENV, ""))
    except ValueError:
        return IDLE_S
    return value if 0 < value < IDLE_S else IDLE_S


class Kind(enum.StrEnum):
    ALLOW = "allow"  # answers allow: "allow and remember"
    DENY = "deny"  # answers deny: "deny and don't ask again"


class Expiry(enum.StrEnum):
    """``grant_expired`` reasons."""

    TIME = "time"
    IDLE = "idle"
    USES = "uses"
    SESSION_END = "session_end"
    RESTART = "restart"  # the approver stops: nothing survives it


class Revoker(enum.StrEnum):
    """``grant_revoked`` ``by``."""

    CLI = "cli"
    POLICY_RELOAD = "policy_reload"
    SERVER_CHANGED = "server_changed"


@dataclass(frozen=True, slots=True)
class Binding:
    agent_id: str
    session: str | None  # None: a timed grant, good for any session of this agent
    server: str
    server_sha256: str  # of the server's command line, as the proxy started it
    tool: str  # normalized
    tool_sha256: str  # of the tool's tools/list entry ("" when the proxy never saw one)
    policy_sha256: str
    rule: str  # the label of the ask rule that fired
    scope: Scope
    args_sha256: str | None = None  # exact
    patterns: Mapping[str, str] = field(default_factory=dict)  # like: argument -> RE2

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "agent_id": self.agent_id,
            "session": self.session,
            "server": self.server,
            "server_sha256": self.server_sha256,
            "tool": self.tool,
            "tool_sha256": self.tool_sha256,
            "policy_sha256": self.policy_sha256,
            "rule": self.rule,
            "scope": self.scope.value,
        }
        if self.scope is Scope.EXACT:
            out["args_sha256"] = self.args_sha256
        else:
            out["patterns"] = dict(self.patterns)
            out["strict_args"] = True
        return out


@dataclass(slots=True)
class Grant:
    id: str
    kind: Kind
    binding: Binding
    origin_session: str  # the session whose ask created it (policy/server changes seen there)
    created_by_request_id: str | int
    created_at: str  # UTC RFC 3339 with ms
    expires_at: str  # idem, for people; the monotonic ``deadline`` decides
    deadline: float  # monotonic seconds
    max_uses: int
    idle_s: float
    last_used: float  # monotonic: creation, then each use
    uses: int = 0
    response_time_ms: int | None = None  # of the dialog that created it (audit only)

    def to_json(self) -> dict[str, Any]:
        return {
            "grant_id": self.id,
            "kind": self.kind.value,
            "scope": "session" if self.binding.session is not None else "timed",
            "binding": self.binding.to_json(),
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "uses": self.uses,
            "max_uses": self.max_uses,
            "idle_s": self.idle_s,
            "origin_session": self.origin_session,
            "created_by_request_id": self.created_by_request_id,
        }


def max_uses(scope: Scope) -> int:
    return MAX_USES_EXACT if scope is Scope.EXACT else MAX_USES


def clamp_seconds(seconds: int | None) -> int:
    """A session grant still ends at 8 h; no grant outlives MAX_SECONDS."""
    return MAX_SECONDS if seconds is None else max(1, min(seconds, MAX_SECONDS))
