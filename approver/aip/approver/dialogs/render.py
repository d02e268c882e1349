"""The dialog text (DESIGN §7): who asks first, then the call with every argument named.

The renderer, never a backend, decides what a dialog shows. A backend states what it can
hold (``Fit``): the text of one dialog, and optionally a scrolling view (zenity's text-info).
The whole request goes into the dialog when it fits; else into the scrolling view, after a
summary that names every argument and shows long values head + tail with a count; else the
dialog says why Allow is withheld and the only answer is Deny (``too_large_to_review``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from aip.approver.dialogs.escape import (
    flags,
    ordinal,
    prose,
    show_name,
    show_value,
    strings,
    truncate,
    wrap,
)

TITLE: Final = "Agent Identity Protocol"
IDENTITY_MAX: Final = 120  # escaped chars of the agent id, server and rule
KEY_MAX: Final = 48  # escaped chars of an argument name in a summary
# A summary shortens every long value to the first of these that makes the text fit.
VALUE_LIMITS: Final = (240, 120, 64, 40, 24, 12)
# The most any scrolling view or program is given: the approver's ask cap (256 KiB of JSON)
# renders to about 300,000 characters, so a request the proxy sends always fits.
FULL_TEXT_MAX: Final = 1024 * 1024
NO_LINE_LIMIT: Final = 1 << 62
SCROLL_HEADING: Final = "=== The whole request, nothing left out (scroll down) ==="
_MARKER: Final = re.compile(r"\[REDACTED:([A-Za-z0-9_.-]{1,64})\]")


@dataclass(frozen=True, slots=True)
class DialogFacts:
    """Everything the dialog says besides the arguments; all of it is escaped here too."""

    tool: str
    agent_id: str
    server: str
    rule: str
    ordinal: int  # this session's Nth ask in the last 60 s
    seconds_left: int
    waiting: int  # other asks waiting behind this one
    hidden_chars: int = 0  # what the DLP markers in the arguments stand for (Ask.hidden_chars)
    origin: str = ""  # where a remote ask comes from (extra_socket.origin_label); "" local


@dataclass(frozen=True, slots=True)
class Limits:
    """How much text one dialog shows with every line on screen and nothing cut."""

    chars: int  # in the backend's own encoding: bytes (the text itself is ASCII)
    lines: int
    backslash_size: int = 1  # Xdialog shows "\" as a 3-byte lookalike

    def size(self, text: str) -> int:
        return len(text) + (self.backslash_size - 1) * text.count("\\")

    def holds(self, lines: list[str]) -> bool:
        return len(lines) <= self.lines and self.size("\n".join(lines)) <= self.chars


UNLIMITED: Final = Limits(FULL_TEXT_MAX, NO_LINE_LIMIT)


@dataclass(frozen=True, slots=True)
class Fit:
    """What a backend can show: its dialog, and a scrolling view of longer text if any."""

    dialog: Limits
    scroll: Limits | None = None


WHOLE: Final = Fit(UNLIMITED)  # a program or a terminal: any text up to FULL_TEXT_MAX


@dataclass(frozen=True, slots=True)
class Rendering:
    text: str
    scroll: bool = False  # ``text`` is for the backend's scrolling view, not its dialog
    withheld: str = ""  # why Allow is withheld; empty when the human may allow


def render(facts: DialogFacts, arguments: dict[str, Any], fit: Fit) -> Rendering:
    """The text for a backend that can show ``fit``; never more than it holds."""
    head = _identity(facts)
    notes = _redactions(arguments, facts.hidden_chars)
    whole = _call(facts.tool, arguments, None)
    full = [*head, "", *whole, *notes]
    if fit.dialog.holds(full):
        return Rendering("\n".join(full))
    summary = _summary(facts.tool, arguments, head, notes, fit.dialog)
    if fit.scroll is not None:
        # A summary first (every name, long values head + tail) when it says less than
        # the whole; the whole request after it.
        shortened = summary != [*whole, *notes]
        text = [*head, "", *summary, "", SCROLL_HEADING, *whole] if shortened else full
        if fit.scroll.holds(text):
            return Rendering("\n".join(text), scroll=True)
    return _withheld(facts.tool, arguments, head, notes, len("\n".join(full)), fit.dialog)


def dialog_text(facts: DialogFacts, arguments: dict[str, Any]) -> str:
    """The whole text as an unlimited backend (an ``exec:`` program) gets it."""
    return render(facts, arguments, WHOLE).text


def display_arguments(arguments: dict[str, Any]) -> dict[str, str]:
    """Argument name -> display text (escaped, head + tail, unwrapped) for ``exec:`` programs;
    every argument is there, the full text is ``Prompt.text``."""
    return {show_name(k): truncate(show_value(v)) for k, v in arguments.items()}


def _identity(facts: DialogFacts) -> list[str]:
    """Who asks, first: no argument can push these lines out of a dialog."""
    lines: list[str] = []
    if facts.origin:  # a remote device first: the human must know the ask is not from here
        lines += wrap(f"REMOTE, from {truncate(show_value(facts.origin), IDENTITY_MAX)}")
    for label, value in (("Agent", facts.agent_id), ("Server", facts.server), ("Rule", facts.rule)):
        lines += wrap(f"{label}: {truncate(show_value(value), IDENTITY_MAX)}")
    status = f"{ordinal(facts.ordinal)} request from this agent in 60 s. "
    status += f"Auto-deny in {facts.seconds_left} s."
    if facts.waiting:
        status += f" {facts.waiting} more waiting."
    return [*lines, *wrap(status)]


def _call(tool: str, arguments: dict[str, Any], value_max: int | None) -> list[str]:
    """The call; ``value_max`` None: every name and value whole, else head + tail."""
    name = show_name(tool) if value_max is None else truncate(show_name(tool), IDENTITY_MAX)
    lines = ["The agent wants to call:", *wrap(f"Tool: {name}")]
    tool_flags = flags(tool)
    if tool_flags:
        lines += wrap(f"[!] tool name contains: {', '.join(tool_flags)}")
    lines.append(f"Arguments ({len(arguments)}):" if arguments else "Arguments: (none)")
    warnings: list[str] = []
    for key, value in arguments.items():
        shown, label = show_value(value), show_name(key)
        cut = shown
        if value_max is not None:
            cut, label = truncate(shown, value_max), truncate(label, KEY_MAX)
        lines += wrap(f"  {label}: {cut}")
        marks = flags(value) + ([f"shortened, {len(shown)} chars"] if cut != shown else [])
        if marks:
            warnings += wrap(f"[!] {truncate(show_name(key), 24)}: {', '.join(marks)}")
    return lines + warnings


def _summary(
    tool: str, arguments: dict[str, Any], head: list[str], notes: list[str], limits: Limits
) -> list[str]:
    """Every argument named, long values head + tail: the first value limit that fits the
    dialog, or the shortest (then it does not fit and only a scrolling view can show it)."""
    call: list[str] = []
    for value_max in VALUE_LIMITS:
        call = [*_call(tool, arguments, value_max), *notes]
        if limits.holds([*head, "", *call]):
            break
    return call


def _withheld(
    tool: str,
    arguments: dict[str, Any],
    head: list[str],
    notes: list[str],
    size: int,
    limits: Limits,
) -> Rendering:
    reason = (
        f"too large to review in this dialog: {len(arguments)} argument(s), {size:,} chars; "
        f"it shows at most {limits.chars:,} chars in {min(limits.lines, 9999):,} lines"
    )
    why = prose(f"ALLOW IS WITHHELD: this request is {reason}. The only answer is Deny.")
    top = [*head, "", *why, ""]
    summary = _summary(tool, arguments, top, notes, limits)
    body: list[str] = []
    for index, line in enumerate(summary):
        more = f"...[{len(summary) - index} more lines not shown]"
        if not limits.holds([*top, *body, line, more]):
            body.append(more)
            break
        body.append(line)
    return Rendering("\n".join([*top, *body]), withheld=reason)


def _redactions(arguments: dict[str, Any], hidden: int) -> list[str]:
    """Say what DLP hid and how much: a marker replaces only the secret, and the server gets
    the secret. Markers that hide nothing (the agent wrote them, or the policy redacts what
    is forwarded too) are said to be what the server gets."""
    found: dict[str, int] = {}
    for text in strings(arguments):
        for name in _MARKER.findall(text):
            found[name] = found.get(name, 0) + 1
    if not found:
        return []
    total = sum(found.values())
    rules = ", ".join(f"{name}: {n}" for name, n in sorted(found.items()))
    if hidden:
        line = (
            f"[!] {total} secret(s) hidden ({rules}): the redacted spans are {hidden:,} "
            "characters in all. Each [REDACTED:...] stands for the secret itself, nothing "
            "around it; the server receives the real value."
        )
    else:
        line = (
            f"[!] {total} [REDACTED:...] marker(s) ({rules}) hide nothing: the server "
            "receives them as written."
        )
    return prose(line)
