"""What the second step of "Allow and remember…" may offer for one ask (a ``RememberOffer``).

Never offered (the dialog says why): an ask without grant facts, one withheld as too large
to review, one with a DLP hit or hidden characters, one whose values hold a shell operator,
a tool the policy marks ``x-aip-never-remember``, or a session in a prompt storm (the
``STORM_ASKS``-th ask in 60 s and later: approval fatigue is when grants are most dangerous).

"Calls like this" is derived only from the values shown for the rule that asked (a grant is
bound to that rule, so it never reaches calls the rule would not ask about): an absolute path
becomes "another entry of the same folder" (never ``..``, never a subfolder), every other
value stays exact. Each generalized argument comes with one example that matches and one
that does not, both checked with RE2; a pattern that fails its examples stays exact. When
nothing generalizes, only the exact call is offered. Remote asks get exact only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from aip.approver.dialogs.verdict import Example, RememberOffer
from aip.approver.grants.binding import AskKey, has_shell_operator, like_matches
from aip.shared.policy.literal import folder_pattern, folder_prefix, re2_literal
from aip.shared.policy.regexes import value_bytes
from aip.shared.protocol.messages import Ask

STORM_ASKS: Final = 6  # this many asks from one session in 60 s: nothing is remembered

NO_FACTS: Final = "this proxy is too old to bind a remembered answer"
WITHHELD: Final = "the request is too large to review"
DLP: Final = "a secret was found in the arguments"
HIDDEN: Final = "the arguments hold hidden characters"
SHELL: Final = "an argument holds a shell operator (; && | $( ` or a newline)"
NEVER: Final = "the policy marks this tool never to be remembered"


def storm_text(ordinal: int) -> str:
    return f"too many requests from this agent ({ordinal} in 60 s)"


def offer_for(
    ask: Ask, key: AskKey | None, *, ordinal: int, withheld: bool, remote: bool = False
) -> RememberOffer:
    why = _why_not(ask, key, ordinal=ordinal, withheld=withheld)
    if why is not None:
        return RememberOffer(offered=False, why_not=why)
    if remote:
        return RememberOffer(offered=True, exact_only=True)
    like, examples = like_patterns(ask.arguments)
    return RememberOffer(offered=True, like=like, examples=examples)


def _why_not(ask: Ask, key: AskKey | None, *, ordinal: int, withheld: bool) -> str | None:
    if key is None or ask.grant is None:
        return NO_FACTS
    if withheld:
        return WITHHELD
    if ask.dlp:
        return DLP
    if ask.hidden_chars:
        return HIDDEN
    if has_shell_operator(ask.arguments):
        return SHELL
    if ask.grant.never_remember:
        return NEVER
    if ordinal >= STORM_ASKS:
        return storm_text(ordinal)
    return None


def like_patterns(arguments: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, Example]]:
    """({argument: RE2}, {generalized argument: examples}); ({}, {}) when nothing
    generalizes (then "like" would only be "exact" under another name)."""
    patterns: dict[str, str] = {}
    examples: dict[str, Example] = {}
    for name, value in arguments.items():
        made = _folder(value)
        if made is not None:
            patterns[name], examples[name] = made
            continue
        data = value_bytes(value)
        if data is None:
            return {}, {}
        patterns[name] = re2_literal(data.decode("utf-8"))
    if not examples or not like_matches(patterns, arguments):
        return {}, {}
    return patterns, examples


def _folder(value: Any) -> tuple[str, Example] | None:
    if not isinstance(value, str):
        return None
    prefix = folder_prefix(value)
    if prefix is None:
        return None
    pattern = folder_pattern(prefix)
    base = value[len(prefix) :]
    dot = base.rfind(".")
    extension = base[dot:] if dot > 0 else ""
    sibling = prefix + ("other" + extension if base != "other" + extension else "another")
    outside = prefix + "../" + (base or "x")
    example = Example(matches=sibling, does_not_match=outside)
    checks = ((value, True), (sibling, True), (outside, False), (prefix + "a/b", False))
    for text, wanted in checks:
        if like_matches({"v": pattern}, {"v": text}) is not wanted:
            return None
    return pattern, example
