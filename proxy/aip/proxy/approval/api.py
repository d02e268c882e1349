"""The proxy's side of asking a human: the interface the relay uses, fail-closed.

The relay hands an ``AskRequest`` to an ``ApprovalClient`` and goes on relaying; the client
calls ``on_done`` exactly once per ask, from any thread, with the outcome: HUMAN_APPROVED,
CANCELLED (after ``cancel``) or one of the deny outcomes of DESIGN §5. Anything that is not
a verified, in-time allow is a deny.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from aip.shared.outcomes import Outcome
from aip.shared.protocol.facts import GrantFacts

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing stays out of the proxy (codec.py says why)
    from typing import Any, Protocol

    class ApprovalClient(Protocol):
        def ask(self, request: AskRequest, on_done: OnDone) -> None:
            """Start an ask; never blocks. ``on_done`` runs once, maybe on another thread."""

        def cancel(self, request_id: str | int) -> bool:
            """Withdraw a pending ask (its ``on_done`` gets CANCELLED); False if none was."""

        def close(self) -> None:
            """Deny every pending ask (SHUTDOWN) and release resources."""


@dataclass(frozen=True, slots=True)
class AskRequest:
    """One tools/call that needs a human: what the dialog shows and what an allow forwards."""

    request_id: str | int  # the JSON-RPC id of the tools/call
    tool: str  # raw tool name
    arguments: dict[str, Any]  # display arguments, already DLP-redacted
    rule: str  # label of the rule that asked
    digest: str  # sha256 hex of the exact bytes that will be forwarded on allow
    size: int  # length of those bytes
    progress_token: str | int | None = None  # params._meta.progressToken, if any
    dlp: list[str] = field(default_factory=list)  # DLP rules that fired on the arguments
    hidden_chars: int = 0  # characters of the arguments the display redaction hid
    grant: GrantFacts | None = None  # what a remembered answer binds (docs/grants.md)


@dataclass(frozen=True, slots=True)
class AskResult:
    """How an ask ended (``outcome``) and what its record says about it (``info``)."""

    outcome: Outcome
    info: dict[str, Any] = field(default_factory=dict)  # human_decision, queue_wait_ms, ...


OnDone = Callable[[AskResult], None]


class UnavailableApprover:
    """Used when no approver can be reached: every ask is denied at once."""

    def ask(self, request: AskRequest, on_done: OnDone) -> None:
        on_done(AskResult(Outcome.APPROVER_UNAVAILABLE))

    def cancel(self, request_id: str | int) -> bool:
        return False

    def close(self) -> None:
        return None
