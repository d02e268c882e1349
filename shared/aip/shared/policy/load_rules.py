"""The ``spec.tool_rules`` list of a policy (DESIGN §4.4), read into ``ToolRule`` objects.

Order is kept: it is the decision order. Tool names are stored normalized, ``allow_args``
keys exactly as written, patterns compiled with RE2; ``rate_limit`` is "N/second|minute|hour"
(with the reference's aliases sec|s, min|m, hr|h).
"""

from __future__ import annotations

import re

from aip.shared.policy.model import Action, ArgPattern, RateLimit, ToolRule
from aip.shared.policy.names import normalize
from aip.shared.policy.nodes import Mapping, Node, Scalar
from aip.shared.policy.regexes import RegexError, compile_pattern
from aip.shared.policy.yaml_nodes import NodeReader, join

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

# ``x-aip-never-remember`` (our extension, docs/grants.md): a human's answer to this rule's
# asks is never remembered, and ``aipctl policy suggest`` never proposes an allow for the tool.
NEVER_REMEMBER_KEY: Final = "x-aip-never-remember"
_RULE: Final = frozenset(
    {"tool", "action", "allow_args", "strict_args", "rate_limit", NEVER_REMEMBER_KEY}
)
_RULE_UNSUPPORTED: Final = frozenset({"schema_hash"})  # v1alpha2, not implemented
_RATE_RE: Final = re.compile(r"\s*([0-9]+)\s*/\s*([A-Za-z]+)\s*")
_PERIODS_S: Final = {
    "second": 1.0, "sec": 1.0, "s": 1.0,
    "minute": 60.0, "min": 60.0, "m": 60.0,
    "hour": 3600.0, "hr": 3600.0, "h": 3600.0,
}  # fmt: skip
MAX_RATE_COUNT: Final = 1_000_000


def read_rules(reader: NodeReader, node: Node | None, path: str) -> tuple[ToolRule, ...]:
    if node is None:
        return ()
    rules = []
    for index, (item_path, item) in enumerate(reader.sequence(node, path)):
        rule = _rule(reader, item, item_path, index)
        if rule is not None:
            rules.append(rule)
    return tuple(rules)


def _rule(reader: NodeReader, node: Node, path: str, index: int) -> ToolRule | None:
    fields = reader.mapping(node, path, _RULE, _RULE_UNSUPPORTED)
    if fields is None:
        return None
    before = len(reader.problems)
    tool_raw = _tool(reader, node, fields, join(path, "tool"))
    action = _action(reader, node, fields, join(path, "action"))
    allow_args = _allow_args(reader, fields.get("allow_args"), join(path, "allow_args"))
    strict = None
    if "strict_args" in fields:
        strict = reader.boolean(fields["strict_args"], join(path, "strict_args"))
    rate = _rate(reader, fields.get("rate_limit"), join(path, "rate_limit"))
    never = False
    if NEVER_REMEMBER_KEY in fields:
        never = bool(reader.boolean(fields[NEVER_REMEMBER_KEY], join(path, NEVER_REMEMBER_KEY)))
    if tool_raw is None or action is None or len(reader.problems) != before:
        return None
    return ToolRule(
        index=index,
        tool=normalize(tool_raw),
        tool_raw=tool_raw,
        action=action,
        allow_args=allow_args,
        strict_args=strict,
        rate_limit=rate,
        line=node.line,
        never_remember=never,
    )


def _tool(reader: NodeReader, node: Node, fields: dict[str, Node], path: str) -> str | None:
    if "tool" not in fields:
        reader.problem(node, path, "required")
        return None
    raw = reader.string(fields["tool"], path)
    if raw is not None and not normalize(raw):
        reader.problem(fields["tool"], path, f"{raw!r} is empty once normalized")
        return None
    return raw


def _action(reader: NodeReader, node: Node, fields: dict[str, Node], path: str) -> Action | None:
    if "action" not in fields:
        reader.problem(node, path, "required: allow, ask or block")
        return None
    word = reader.string(fields["action"], path)
    if word is None:
        return None
    try:
        return Action(word.strip().lower())
    except ValueError:
        reader.problem(fields["action"], path, f"must be allow, ask or block, not {word!r}")
        return None


def _allow_args(reader: NodeReader, node: Node | None, path: str) -> tuple[ArgPattern, ...]:
    if node is None:
        return ()
    if not isinstance(node, Mapping):
        reader.mapping(node, path, frozenset())  # records "must be a mapping"
        return ()
    # Argument names are the user's: any string key is known; duplicates are still refused.
    names = frozenset(k.value for k, _ in node.value if isinstance(k, Scalar))
    out = []
    for name, value_node in (reader.mapping(node, path, names) or {}).items():
        pattern = reader.string(value_node, join(path, name), allow_empty=True)
        if pattern is None:
            continue
        try:
            out.append(ArgPattern(name, pattern, compile_pattern(pattern, reader.budget)))
        except RegexError as exc:
            reader.problem(value_node, join(path, name), f"bad regex {pattern!r}: {exc}")
    return tuple(out)


def _rate(reader: NodeReader, node: Node | None, path: str) -> RateLimit | None:
    if node is None:
        return None
    text = reader.string(node, path)
    if text is None:
        return None
    match = _RATE_RE.fullmatch(text)
    period = _PERIODS_S.get(match.group(2).lower()) if match else None
    if match is None or period is None:
        reader.problem(node, path, f"{text!r} is not N/second, N/minute or N/hour")
        return None
    digits = match.group(1)
    # Bounded before int(): 4,301+ digits would raise (CPython's int limit), not report.
    count = int(digits) if len(digits) <= 18 else MAX_RATE_COUNT + 1
    if not 0 < count <= MAX_RATE_COUNT:
        reader.problem(node, path, f"the count must be between 1 and {MAX_RATE_COUNT}")
        return None
    return RateLimit(count, period, text.strip())
