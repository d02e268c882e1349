"""The loaded ``AgentPolicy`` (DESIGN §4.1): immutable, validated, regexes compiled.

Built only by ``aip.shared.policy.load``; read by the engine, the proxy and ``aipctl``. Names in
``allowed_tools``, ``denied_tools``, rules and method lists are stored normalized (§4.2);
``allow_args`` keys are kept exactly as written.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType

from aip.shared import slotclass
from aip.shared.slotclass import FrozenSlotted

TYPE_CHECKING = False
if TYPE_CHECKING:
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


class RateLimit(FrozenSlotted):
    """A rule's ``rate_limit``: ``count`` calls per ``period_s`` seconds."""

    __slots__ = ("count", "period_s", "text")
    count: int
    period_s: float
    text: str  # as written, for messages and the audit log

    def __init__(self, count: int, period_s: float, text: str) -> None:
        slotclass.init(self, "count", count)
        slotclass.init(self, "period_s", period_s)
        slotclass.init(self, "text", text)


class ArgPattern(FrozenSlotted, derived=("results",)):
    """One ``allow_args`` entry: argument name (exact) and its RE2 pattern, full-match."""

    __slots__ = ("name", "pattern", "regex", "results")
    name: str
    pattern: str
    regex: Any  # re2 compiled pattern; typed Any because google-re2 ships no stubs
    # Memo of full-match answers by string value (``aip.shared.policy.authorize``): a compiled
    # pattern's answer for the same bytes never changes. Never part of equality or repr.
    results: dict[str, bool]

    def __init__(self, name: str, pattern: str, regex: Any) -> None:
        slotclass.init(self, "name", name)
        slotclass.init(self, "pattern", pattern)
        slotclass.init(self, "regex", regex)
        slotclass.init(self, "results", {})


class ToolRule(FrozenSlotted, derived=("arg_names", "label", "matched")):
    """One entry of ``spec.tool_rules`` (DESIGN §4.4), in policy order."""

    __slots__ = (
        "action",
        "allow_args",
        "arg_names",
        "index",
        "label",
        "line",
        "matched",
        "never_remember",
        "rate_limit",
        "strict_args",
        "tool",
        "tool_raw",
    )
    index: int  # position in tool_rules, 0-based: the rule's identity (rate limiter, audit)
    tool: str  # normalized
    tool_raw: str
    action: Action
    allow_args: tuple[ArgPattern, ...]
    strict_args: bool | None  # None: use spec.strict_args_default
    rate_limit: RateLimit | None
    line: int  # 1-based line in the policy file, for messages
    never_remember: bool  # ``x-aip-never-remember``: no grant from this rule's asks
    # Derived, not init arguments: names in allow_args (for strict_args) and the label.
    arg_names: frozenset[str]
    label: str
    """How dialogs, errors and the audit log name a rule: ``tool_rules[2] (write_file ask)``."""
    matched: str  # "<label> matched"

    def __init__(
        self,
        index: int,
        tool: str,
        tool_raw: str,
        action: Action,
        allow_args: tuple[ArgPattern, ...],
        strict_args: bool | None,
        rate_limit: RateLimit | None,
        line: int,
        never_remember: bool = False,
    ) -> None:
        slotclass.init(self, "index", index)
        slotclass.init(self, "tool", tool)
        slotclass.init(self, "tool_raw", tool_raw)
        slotclass.init(self, "action", action)
        slotclass.init(self, "allow_args", allow_args)
        slotclass.init(self, "strict_args", strict_args)
        slotclass.init(self, "rate_limit", rate_limit)
        slotclass.init(self, "line", line)
        slotclass.init(self, "never_remember", never_remember)
        slotclass.init(self, "arg_names", frozenset(a.name for a in allow_args))
        label = f"tool_rules[{index}] ({tool_raw} {action.value})"
        slotclass.init(self, "label", label)
        slotclass.init(self, "matched", f"{label} matched")


class DlpPattern(FrozenSlotted):
    """A policy's own DLP pattern (``spec.dlp.patterns``), compiled."""

    __slots__ = ("name", "pattern", "regex")
    name: str
    pattern: str
    regex: Any

    def __init__(self, name: str, pattern: str, regex: Any) -> None:
        slotclass.init(self, "name", name)
        slotclass.init(self, "pattern", pattern)
        slotclass.init(self, "regex", regex)


class DlpConfig(FrozenSlotted):
    """``spec.dlp`` (DESIGN §8)."""

    __slots__ = (
        "builtin",
        "detect_encoding",
        "enabled",
        "filter_stderr",
        "max_scan_size",
        "on_request_match",
        "patterns",
        "scan_requests",
    )
    enabled: bool
    patterns: tuple[DlpPattern, ...]
    builtin: bool
    detect_encoding: bool
    filter_stderr: bool
    scan_requests: bool
    on_request_match: OnRequestMatch
    max_scan_size: int

    def __init__(
        self,
        enabled: bool = False,
        patterns: tuple[DlpPattern, ...] = (),
        builtin: bool = False,
        detect_encoding: bool = False,
        filter_stderr: bool = False,
        scan_requests: bool = False,
        on_request_match: OnRequestMatch = OnRequestMatch.BLOCK,
        max_scan_size: int = 1024 * 1024,
    ) -> None:
        slotclass.init(self, "enabled", enabled)
        slotclass.init(self, "patterns", patterns)
        slotclass.init(self, "builtin", builtin)
        slotclass.init(self, "detect_encoding", detect_encoding)
        slotclass.init(self, "filter_stderr", filter_stderr)
        slotclass.init(self, "scan_requests", scan_requests)
        slotclass.init(self, "on_request_match", on_request_match)
        slotclass.init(self, "max_scan_size", max_scan_size)


class Policy(FrozenSlotted, derived=("rules_by_tool", "memo")):
    """A loaded, validated AgentPolicy (DESIGN §4.1)."""

    __slots__ = (
        "allowed_methods",
        "allowed_tools",
        "api_version",
        "denied_methods",
        "denied_tools",
        "dlp",
        "memo",
        "mode",
        "name",
        "owner",
        "path",
        "protected_paths",
        "rules_by_tool",
        "sha256",
        "strict_args_default",
        "tool_rules",
        "version",
    )
    name: str
    api_version: str
    path: str | None  # absolute path of the file it came from, None when built from text
    sha256: str  # of the file's bytes
    mode: Mode
    allowed_tools: frozenset[str]
    denied_tools: frozenset[str]
    tool_rules: tuple[ToolRule, ...]
    strict_args_default: bool
    allowed_methods: frozenset[str] | None  # None: DEFAULT_METHODS; "*" allowed
    denied_methods: frozenset[str]
    protected_paths: tuple[str, ...]  # absolute, normalized; the always-protected added later
    dlp: DlpConfig
    version: str | None
    owner: str | None
    # Derived once, here, so every way of building a Policy gets it: the engine's hot path
    # looks rules up by tool instead of scanning the list.
    rules_by_tool: Mapping[str, tuple[ToolRule, ...]]
    # Memo of data its readers derive from this policy (the engine's protected-path roots per
    # Context). Never part of equality or repr.
    memo: dict[Any, Any]

    def __init__(
        self,
        name: str,
        api_version: str,
        path: str | None,
        sha256: str,
        mode: Mode = Mode.ENFORCE,
        allowed_tools: frozenset[str] = frozenset(),
        denied_tools: frozenset[str] = frozenset(),
        tool_rules: tuple[ToolRule, ...] = (),
        strict_args_default: bool = False,
        allowed_methods: frozenset[str] | None = None,
        denied_methods: frozenset[str] = frozenset(),
        protected_paths: tuple[str, ...] = (),
        dlp: DlpConfig | None = None,  # None: a new DlpConfig() (a dataclass default_factory)
        version: str | None = None,
        owner: str | None = None,
    ) -> None:
        slotclass.init(self, "name", name)
        slotclass.init(self, "api_version", api_version)
        slotclass.init(self, "path", path)
        slotclass.init(self, "sha256", sha256)
        slotclass.init(self, "mode", mode)
        slotclass.init(self, "allowed_tools", allowed_tools)
        slotclass.init(self, "denied_tools", denied_tools)
        slotclass.init(self, "tool_rules", tool_rules)
        slotclass.init(self, "strict_args_default", strict_args_default)
        slotclass.init(self, "allowed_methods", allowed_methods)
        slotclass.init(self, "denied_methods", denied_methods)
        slotclass.init(self, "protected_paths", protected_paths)
        slotclass.init(self, "dlp", DlpConfig() if dlp is None else dlp)
        slotclass.init(self, "version", version)
        slotclass.init(self, "owner", owner)
        index: dict[str, list[ToolRule]] = {}
        for rule in tool_rules:
            index.setdefault(rule.tool, []).append(rule)
        frozen = MappingProxyType({tool: tuple(rules) for tool, rules in index.items()})
        slotclass.init(self, "rules_by_tool", frozen)
        slotclass.init(self, "memo", {})

    def rules_for(self, tool: str) -> tuple[ToolRule, ...]:
        """Rules for a normalized tool name, in file order."""
        return self.rules_by_tool.get(tool, ())

    def never_remember(self, tool: str) -> bool:
        """A rule of this tool (normalized name) says ``x-aip-never-remember: true``: no
        answer about the tool is ever remembered, nor learned by ``policy suggest``."""
        return any(rule.never_remember for rule in self.rules_for(tool))
