"""What the two steps of a remembering dialog say (issue 13; part of the renderer).

Step 1 is the request as render.render made it, plus, when remembering is not offered, one
short note saying why. Step 2 (after "Allow and remember…") names the choices; its text says
what "this exact call" and "calls like this" mean, each pattern verbatim as the RE2 it is with
one value it matches and one it does not. Choice labels are our constants, never data.
The list's first choice and every way out of step 2 (Return on nothing, Cancel, Escape,
closing it) are Allow once: the human allowed in step 1, and nothing is remembered unless
a choice is made. No text here is ever cut: patterns that do not fit whole are not offered.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Final

from aip.approver.dialogs.base import Prompt
from aip.approver.dialogs.escape import WIDTH, prose, truncate, wrap
from aip.approver.dialogs.render import Limits
from aip.approver.dialogs.verdict import (
    ALLOW_ONCE,
    DURATIONS,
    NOT_OFFERED,
    Answer,
    Remember,
    RememberOffer,
    Scope,
    Verdict,
)

REMEMBER_BUTTON: Final = "Allow and remember\u2026"
ALLOW_ONCE_LABEL: Final = "Allow once"
WHY_MAX: Final = 100  # chars of the reason remembering is not offered
# Room every step-1 dialog keeps for that note: a blank line and two lines of text.
NOTE_RESERVE: Final = Limits(chars=2 * WIDTH + 3, lines=3)
SCROLL_WHY_NOT: Final = "this request is shown in a scrolling view"
IDENTITY_MAX: Final = 60
_PRINTABLE: Final = re.compile(r"[!-~]([ -~]*[!-~])?")
_UNSAFE_NOTE: Final = re.compile(r"[^ -\[\]-~]")  # printable ASCII without backslash


def body_limits(limits: Limits) -> Limits:
    """What the request itself may use of a dialog: the note always fits in the rest."""
    return Limits(
        limits.chars - NOTE_RESERVE.chars, limits.lines - NOTE_RESERVE.lines, limits.backslash_size
    )


def offer_for(prompt: Prompt) -> RememberOffer:
    """What this dialog offers: nothing for a withheld prompt (Deny only), and nothing from a
    scrolling view (its Allow needs "I have read the whole request"; a third button would not)."""
    if prompt.withheld:
        return RememberOffer(offered=False, why_not="")
    if prompt.scroll and prompt.remember.offered:
        return RememberOffer(offered=False, why_not=SCROLL_WHY_NOT)
    return prompt.remember


def first_text(prompt: Prompt) -> str:
    """Step 1: the request, and why remembering is not offered (if it is not)."""
    offer = offer_for(prompt)
    if prompt.withheld or offer.offered or not offer.why_not or offer == NOT_OFFERED:
        return prompt.text  # NOT_OFFERED: no grant code asked (nothing to explain)
    why = _UNSAFE_NOTE.sub("?", offer.why_not.strip())
    if len(why) > WHY_MAX:  # our own sentence; a hard cut keeps the note in two lines
        why = why[: WHY_MAX - 3] + "..."
    note = "\n".join(wrap(f"Remembering is not offered: {why}."))
    if prompt.scroll:
        return f"{note}\n\n{prompt.text}"  # a scrolling view would hide it at the end
    return f"{prompt.text}\n\n{note}"


@dataclass(frozen=True, slots=True)
class Choice:
    key: str  # what a backend prints or returns; constant
    label: str  # what the human reads; constant
    verdict: Verdict


ONCE: Final = Choice("once", "Allow once, remember nothing", ALLOW_ONCE)


def _span(seconds: int | None) -> str:
    if seconds is None:
        return "this agent session"
    if seconds < 3600:
        return f"{seconds // 60} minutes"
    return "1 hour" if seconds == 3600 else f"{seconds // 3600} hours"


def choices(scopes: tuple[Scope, ...]) -> tuple[Choice, ...]:
    what = {Scope.EXACT: "this exact call", Scope.LIKE: "calls like this"}
    rows = [ONCE]
    for scope in scopes:
        for seconds in DURATIONS:
            key = f"{scope.value}-{seconds if seconds is not None else 'session'}"
            label = f"Allow {what[scope]} for {_span(seconds)}"
            rows.append(Choice(key, label, Verdict(Answer.ALLOW, Remember(scope, seconds))))
    for scope in scopes:
        for seconds in DURATIONS:
            if seconds is not None:  # "deny and don't ask again" is always timed
                key = f"deny-{seconds}" if scope is Scope.EXACT else f"deny-like-{seconds}"
                label = f"Deny {what[scope]}, don't ask again for {_span(seconds)}"
                rows.append(Choice(key, label, Verdict(Answer.DENY, Remember(scope, seconds))))
    return tuple(rows)


@dataclass(frozen=True, slots=True)
class SecondStep:
    text: str
    choices: tuple[Choice, ...]

    def verdict(self, key: str | None) -> Verdict:
        """The chosen row; anything else (nothing chosen, cancelled) is Allow once."""
        for choice in self.choices:
            if choice.key == key:
                return choice.verdict
        return ALLOW_ONCE


def show_pattern(pattern: str) -> str:
    """Printable ASCII is shown verbatim (it is the RE2); anything else as escaped JSON."""
    if _PRINTABLE.fullmatch(pattern):
        return pattern
    return json.dumps(pattern, ensure_ascii=True) + " (JSON-escaped)"


def _like_lines(offer: RememberOffer) -> list[str]:
    lines = prose(
        "Calls like this: the same tool and arguments, except that each argument below may be "
        "any value that is a full match of its pattern:"
    )
    for name, pattern in offer.like.items():
        lines += wrap(f"  {show_pattern(name)}: {show_pattern(pattern)}")
        example = offer.examples.get(name)
        if example is not None:
            lines += wrap(f"      matches: {show_pattern(example.matches)}")
            lines += wrap(f"      does not match: {show_pattern(example.does_not_match)}")
    return lines


def second_step(prompt: Prompt, seconds_left: int, limits: Limits) -> SecondStep:
    """Step 2's text and rows for a dialog of ``limits``; never more than it holds."""
    offer = offer_for(prompt)
    agent = truncate(prompt.agent_id, IDENTITY_MAX)
    head = [
        *wrap(
            f"Remember your answer for agent {agent}, tool {truncate(prompt.tool, IDENTITY_MAX)}?"
        ),
        *prose(
            "Nothing is remembered unless you choose it below. Cancel allows this call once; "
            f"auto-deny in {seconds_left} s."
        ),
        "",
        *prose("This exact call: the same tool with the same arguments."),
    ]
    scopes = offer.scopes()
    if Scope.LIKE in scopes:
        whole = [*head, *_like_lines(offer)]
        if limits.holds(whole):
            return SecondStep("\n".join(whole), choices(scopes))
        head += prose("Calls like this: not offered, its patterns do not fit this dialog whole.")
        scopes = (Scope.EXACT,)
    return SecondStep("\n".join(head), choices(scopes))
