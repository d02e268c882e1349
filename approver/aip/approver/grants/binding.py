"""How an ask is keyed against grants, and when a grant's binding matches it.

``same_slot``: the agent, server name, tool and asking rule a grant speaks about.
``matches``: everything else it binds (session, digests, policy, arguments). A like grant
needs the ask's display arguments to be the real ones (no DLP hit, nothing hidden, no shell
operator in any string) and every argument present to full-match its own pattern, with no
argument more or less (strict args).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from aip.approver.dialogs.verdict import Scope
from aip.approver.grants.model import Binding
from aip.shared.policy.names import normalize
from aip.shared.policy.regexes import RegexError, compile_pattern, full_match, value_bytes
from aip.shared.protocol.messages import Ask

# What chains, substitutes or separates shell commands (the bypasses of remembered prefixes
# in other agents): a value holding one is never remembered, nor matched by a like grant.
SHELL_OPERATORS: Final = re.compile(r";|&&|\||\$\(|`|\n|\r|<\(|>\(")


@dataclass(frozen=True, slots=True)
class AskKey:
    agent_id: str
    session: str
    server: str
    server_sha256: str
    tool: str  # normalized
    tool_sha256: str
    policy_sha256: str
    rule: str
    args_sha256: str
    arguments: Mapping[str, Any]  # display values (DLP-redacted)
    plain: bool  # display values are the real ones and hold no shell operator


def key_of(ask: Ask, agent_id: str, server: str, policy_sha256: str) -> AskKey | None:
    """None for an ask that carries no grant facts (a proxy of proto 2): never granted."""
    facts = ask.grant
    if facts is None:
        return None
    return AskKey(
        agent_id=agent_id,
        session=ask.session,
        server=server,
        server_sha256=facts.server_sha256,
        tool=normalize(ask.tool),
        tool_sha256=facts.tool_sha256,
        policy_sha256=policy_sha256,
        rule=ask.rule,
        args_sha256=facts.args_sha256,
        arguments=ask.arguments,
        plain=not ask.dlp and not ask.hidden_chars and not has_shell_operator(ask.arguments),
    )


def has_shell_operator(value: Any) -> bool:
    if isinstance(value, str):
        return SHELL_OPERATORS.search(value) is not None
    if isinstance(value, dict):
        return any(has_shell_operator(k) or has_shell_operator(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(has_shell_operator(v) for v in value)
    return False


def same_slot(b: Binding, key: AskKey) -> bool:
    return (
        b.tool == key.tool
        and b.agent_id == key.agent_id
        and b.server == key.server
        and b.rule == key.rule
    )


def matches(b: Binding, key: AskKey) -> bool:
    if b.session is not None and b.session != key.session:
        return False
    if (b.server_sha256, b.tool_sha256, b.policy_sha256) != (
        key.server_sha256,
        key.tool_sha256,
        key.policy_sha256,
    ):
        return False
    if b.scope is Scope.EXACT:
        return b.args_sha256 == key.args_sha256
    return key.plain and like_matches(b.patterns, key.arguments)


def like_matches(patterns: Mapping[str, str], arguments: Mapping[str, Any]) -> bool:
    if set(patterns) != set(arguments):
        return False  # strict args: no argument more, none less
    for name, pattern in patterns.items():
        data = value_bytes(arguments[name])
        regex = _compiled(pattern)
        if data is None or regex is None or not full_match(regex, data):
            return False
    return True


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> Any:
    try:
        return compile_pattern(pattern)
    except RegexError:
        return None  # cannot happen for patterns we made; never a match
