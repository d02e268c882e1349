"""What the engine returns (DESIGN §4): ``Verdict``, ``Decision``, and the ``Context`` it needs.

The proxy codes against these names (through ``aip.shared.policy.engine``): a FORWARD carries
POLICY_ALLOWED, a BLOCK the outcome whose error (DESIGN §5) answers the request, an ASK no
outcome until the approver gives one.
"""

from __future__ import annotations

import enum

from aip.shared import slotclass
from aip.shared.outcomes import Outcome
from aip.shared.policy.model import ToolRule
from aip.shared.slotclass import FrozenSlotted

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final


class Verdict(enum.StrEnum):
    FORWARD = "forward"  # send it on (policy allow, or monitor mode)
    BLOCK = "block"  # answer with the outcome's error (requests) or drop (notifications)
    ASK = "ask"  # ask a human; the outcome comes from the approver


class Context(FrozenSlotted):
    """What the decision needs besides the policy: where the child runs, the other directories
    it may resolve a relative path against (absolute dirs on its command line, the roots the
    client declared) and what is always protected (the policy file and folder, the aip
    state/runtime dirs, the audit log; DESIGN §4.5)."""

    __slots__ = ("always_protected", "bases", "cwd")
    cwd: str
    always_protected: tuple[str, ...]
    bases: tuple[str, ...]

    def __init__(
        self, cwd: str, always_protected: tuple[str, ...] = (), bases: tuple[str, ...] = ()
    ) -> None:
        slotclass.init(self, "cwd", cwd)
        slotclass.init(self, "always_protected", always_protected)
        slotclass.init(self, "bases", bases)


class Decision(FrozenSlotted):
    """What the engine decided for one message, and why."""

    __slots__ = (
        "data",
        "detail",
        "monitor_would",
        "outcome",
        "rule",
        "token_reserved",
        "tool",
        "verdict",
    )
    verdict: Verdict
    outcome: Outcome | None  # None only for ASK; POLICY_ALLOWED for a forward
    rule: ToolRule | None  # the rule that decided, if any
    detail: str  # readable why, e.g. "tool_rules[2] (postgres_query block) matched"
    data: dict[str, Any]  # extra error data (argument, pattern)
    monitor_would: Outcome | str | None  # monitor mode: what enforce would have done
    token_reserved: bool  # an ASK holding a rate-limit token: give it back on deny
    tool: str | None  # raw tool name for tools/call, else None

    def __init__(
        self,
        verdict: Verdict,
        outcome: Outcome | None,
        rule: ToolRule | None = None,
        detail: str = "",
        data: dict[str, Any] | None = None,  # None: a fresh {}
        monitor_would: Outcome | str | None = None,
        token_reserved: bool = False,
        tool: str | None = None,
    ) -> None:
        # Setting each field through object.__setattr__ (as a frozen dataclass's __init__ does)
        # costs ~1.7 us per Decision, one per message; the slots' own setters ~1 us. Still
        # frozen: assigning a field afterwards raises.
        a, b, c, d, e, f, g, h = _SETTERS
        a(self, verdict)
        b(self, outcome)
        c(self, rule)
        d(self, detail)
        e(self, {} if data is None else data)
        f(self, monitor_would)
        g(self, token_reserved)
        h(self, tool)


# In field order: a field added without its line in __init__ fails the unpacking at once.
_SETTERS: Final = tuple(getattr(Decision, name).__set__ for name in Decision._all)
