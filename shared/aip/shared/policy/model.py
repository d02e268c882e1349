"""The loaded ``AgentPolicy`` (DESIGN §4.1): immutable, validated, regexes compiled.

Built only by ``aip.shared.policy.load``; read by the engine, the proxy and ``aipctl``. Names in
``allowed_tools``, ``denied_tools``, rules and method lists are stored normalized (§4.2);
``allow_args`` keys are kept exactly as written.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

DEFAULT_METHODS: Final = frozenset(
    {
        "initialize",
        "server/discover",
        "ping",
        "tools/list",
        "tools/call",
        "completion/complete",
        "notifications/initialized",
        "notifications/cancelled",
        "notifications/progress",
        "notifications/roots/list_changed",
    }
)
# Allowed whatever allowed_methods says; only denied_methods can take them away (§4.6).
# The lifecycle: ``initialize`` (handshake era) and ``server/discover`` (MCP 2026-07-28, what
# an SDK client in auto mode probes first; blocking it silently downgrades the protocol).
ALWAYS_ALLOWED_METHODS: Final = frozenset(
    {
        "initialize",
        "server/discover",
        "notifications/initialized",
        "ping",
        "notifications/cancelled",
    }
)


class Mode(enum.StrEnum):
    ENFORCE = "enforce"
    MONITOR = "monitor"


class Action(enum.StrEnum):
    ALLOW = "allow"
    ASK = "ask"
    BLOCK = "block"


class OnRequestMatch(enum.StrEnum):
    BLOCK = "block"
    REDACT = "redact"
    WARN = "warn"


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A rule's ``rate_limit``: ``count`` calls per ``period_s`` seconds."""

    count: int
    period_s: float
    text: str  # as written, for messages and the audit log


@dataclass(frozen=True, slots=True)
class ArgPattern:
    """One ``allow_args`` entry: argument name (exact) and its RE2 pattern, full-match."""

    name: str
    pattern: str
    regex: Any  # re2 compiled pattern; typed Any because google-re2 ships no stubs
    # Memo of full-match answers by string value (``aip.shared.policy.authorize``): a compiled
    # pattern's answer for the same bytes never changes. Never part of equality or repr.
    results: dict[str, bool] = field(default_factory=dict, init=False, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class ToolRule:
    """One entry of ``spec.tool_rules`` (DESIGN §4.4), in policy order."""

    index: int  # position in tool_rules, 0-based: the rule's identity (rate limiter, audit)
    tool: str  # normalized
    tool_raw: str
    action: Action
    allow_args: tuple[ArgPattern, ...]
    strict_args: bool | None  # None: use spec.strict_args_default
    rate_limit: RateLimit | None
    line: int  # 1-based line in the policy file, for messages
    never_remember: bool = False  # ``x-aip-never-remember``: no grant from this rule's asks
    # Derived, not init arguments: names in allow_args (for strict_args) and the label.
    arg_names: frozenset[str] = field(init=False, repr=False, compare=False)
    label: str = field(init=False, repr=False, compare=False)
    """How dialogs, errors and the audit log name a rule: ``tool_rules[2] (write_file ask)``."""
    matched: str = field(init=False, repr=False, compare=False)  # "<label> matched"

    def __post_init__(self) -> None:
        object.__setattr__(self, "arg_names", frozenset(a.name for a in self.allow_args))
        label = f"tool_rules[{self.index}] ({self.tool_raw} {self.action.value})"
        object.__setattr__(self, "label", label)
        object.__setattr__(self, "matched", f"{label} matched")


@dataclass(frozen=True, slots=True)
class DlpPattern:
    """A policy's own DLP pattern (``spec.dlp.patterns``), compiled."""

    name: str
    pattern: str
    regex: Any


@dataclass(frozen=True, slots=True)
class DlpConfig:
    """``spec.dlp`` (DESIGN §8)."""

    enabled: bool = False
    patterns: tuple[DlpPattern, ...] = ()
    builtin: bool = False
    detect_encoding: bool = False
    filter_stderr: bool = False
    scan_requests: bool = False
    on_request_match: OnRequestMatch = OnRequestMatch.BLOCK
    max_scan_size: int = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Policy:
    """A loaded, validated AgentPolicy (DESIGN §4.1)."""

    name: str
    api_version: str
    path: str | None  # absolute path of the file it came from, None when built from text
    sha256: str  # of the file's bytes
    mode: Mode = Mode.ENFORCE
    allowed_tools: frozenset[str] = frozenset()
    denied_tools: frozenset[str] = frozenset()
    tool_rules: tuple[ToolRule, ...] = ()
    strict_args_default: bool = False
    allowed_methods: frozenset[str] | None = None  # None: DEFAULT_METHODS; "*" allowed
    denied_methods: frozenset[str] = frozenset()
    protected_paths: tuple[str, ...] = ()  # absolute, normalized; the always-protected added later
    dlp: DlpConfig = field(default_factory=DlpConfig)
    version: str | None = None
    owner: str | None = None
    # Derived once, here, so every way of building a Policy gets it: the engine's hot path
    # looks rules up by tool instead of scanning the list.
    rules_by_tool: Mapping[str, tuple[ToolRule, ...]] = field(init=False, repr=False, compare=False)
    # Memo of data its readers derive from this policy (the engine's protected-path roots per
    # Context). Never part of equality or repr.
    memo: dict[Any, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[str, list[ToolRule]] = {}
        for rule in self.tool_rules:
            index.setdefault(rule.tool, []).append(rule)
        frozen = MappingProxyType({tool: tuple(rules) for tool, rules in index.items()})
        object.__setattr__(self, "rules_by_tool", frozen)

    def rules_for(self, tool: str) -> tuple[ToolRule, ...]:
        """Rules for a normalized tool name, in file order."""
        return self.rules_by_tool.get(tool, ())

    def never_remember(self, tool: str) -> bool:
        """A rule of this tool (normalized name) says ``x-aip-never-remember: true``: no
        answer about the tool is ever remembered, nor learned by ``policy suggest``."""
        return any(rule.never_remember for rule in self.rules_for(tool))
