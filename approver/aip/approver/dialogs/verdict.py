"""What a dialog returns (a ``Verdict``) and what it may offer to remember (DESIGN §3).

The approver's grant code computes a ``RememberOffer`` per ask; every backend shows it as the
second step of "Allow and remember…" and returns a ``Verdict``. A backend never decides what
may be remembered: a choice outside the offer is checked by the grant code again (a program or
a dialog may answer anything) and then counts as Allow once or Deny, recorded.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

DEFAULT_SECONDS: Final = 15 * 60
MAX_SECONDS: Final = 8 * 3600  # no "forever": permanent allowances are policy edits
# The second step's choices, in order; None = "this agent session".
DURATIONS: Final[tuple[int | None, ...]] = (DEFAULT_SECONDS, 3600, None)


class Answer(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"
    ERROR = "error"  # the dialog failed: never a human denial


class Scope(enum.Enum):
    EXACT = "exact"  # same tool, same arguments (canonical digest)
    LIKE = "like"  # per-argument full-match patterns shown verbatim


@dataclass(frozen=True, slots=True)
class Example:
    matches: str
    does_not_match: str


@dataclass(frozen=True, slots=True)
class RememberOffer:
    """``offered`` False: the dialog shows only Deny / Allow once and says ``why_not``."""

    offered: bool = False
    why_not: str | None = None
    like: Mapping[str, str] = field(default_factory=dict)  # argument -> RE2 full match
    examples: Mapping[str, Example] = field(default_factory=dict)  # argument -> examples
    exact_only: bool = False  # remote asks: exact call or session only, never "like"

    def scopes(self) -> tuple[Scope, ...]:
        if not self.offered:
            return ()
        if self.exact_only or not self.like:
            return (Scope.EXACT,)
        return (Scope.EXACT, Scope.LIKE)

    def to_json(self) -> dict[str, object]:
        """The ``remember`` object of the ``exec:`` program's stdin JSON."""
        return {"offered": self.offered, "why_not": self.why_not, "like": dict(self.like)}


NOT_OFFERED: Final = RememberOffer(offered=False, why_not="not offered")


@dataclass(frozen=True, slots=True)
class Remember:
    scope: Scope
    seconds: int | None  # None: for this agent session (allow only)


@dataclass(frozen=True, slots=True)
class Verdict:
    answer: Answer
    remember: Remember | None = None  # with ALLOW: a grant; with DENY: "don't ask again"


ALLOW_ONCE: Final = Verdict(Answer.ALLOW)
DENY: Final = Verdict(Answer.DENY)
ERROR: Final = Verdict(Answer.ERROR)

_DURATION: Final = re.compile(r"([1-9][0-9]{0,5})([smh])")
_UNIT_S: Final = {"s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> int | None:
    """``90s``, ``15m``, ``1h`` -> seconds (at most MAX_SECONDS); anything else None."""
    found = _DURATION.fullmatch(text)
    if found is None:
        return None
    seconds = int(found.group(1)) * _UNIT_S[found.group(2)]
    return seconds if seconds <= MAX_SECONDS else None


def parse_answer_line(line: str) -> Verdict:
    """The ``exec:`` grammar: ``allow``, ``deny``, ``allow remember=exact|like for=D|session``,
    ``deny remember=exact|like for=D``. Anything else is a dialog error (never an allow)."""
    words = line.split(" ")
    if words == ["allow"]:
        return ALLOW_ONCE
    if words == ["deny"]:
        return DENY
    if len(words) != 3 or words[0] not in ("allow", "deny"):
        return ERROR
    answer = Answer.ALLOW if words[0] == "allow" else Answer.DENY
    scope_word, for_word = words[1], words[2]
    if not scope_word.startswith("remember=") or not for_word.startswith("for="):
        return ERROR
    try:
        scope = Scope(scope_word.removeprefix("remember="))
    except ValueError:
        return ERROR
    span = for_word.removeprefix("for=")
    if span == "session":
        if answer is not Answer.ALLOW:
            return ERROR  # "deny and don't ask again" is always timed
        return Verdict(answer, Remember(scope, None))
    seconds = parse_duration(span)
    if seconds is None:
        return ERROR
    return Verdict(answer, Remember(scope, seconds))
