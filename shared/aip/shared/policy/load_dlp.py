"""The ``spec.dlp`` section of a policy (DESIGN §8), read into ``DlpConfig``.

Only parsing and validation live here; scanning and redaction belong to the DLP module.
A ``dlp`` block that is present is enabled unless it says ``enabled: false`` (as in the
reference); without a block, DLP on requests and responses is off.
"""

from __future__ import annotations

import re

from aip.shared.policy.model import DlpConfig, DlpPattern, OnRequestMatch
from aip.shared.policy.nodes import INT, Node, Scalar
from aip.shared.policy.regexes import RegexError, compile_pattern
from aip.shared.policy.yaml_nodes import NodeReader, join

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

_DLP: Final = frozenset(
    {
        "enabled",
        "patterns",
        "builtin",
        "detect_encoding",
        "filter_stderr",
        "scan_requests",
        "on_request_match",
        "max_scan_size",
    }
)
_DLP_UNSUPPORTED: Final = frozenset(
    {"scan_responses", "on_redaction_failure", "log_original_on_failure"}
)
_PATTERN: Final = frozenset({"name", "regex"})
_PATTERN_UNSUPPORTED: Final = frozenset({"scope"})
_MAX_NAME_CHARS: Final = 64
_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]*")
_SIZE_RE: Final = re.compile(r"\s*([0-9]+)\s*([KMG]i?B|B)?\s*", re.IGNORECASE)
_UNITS: Final = {"": 1, "b": 1, "kb": 1 << 10, "kib": 1 << 10, "mb": 1 << 20, "mib": 1 << 20,
                 "gb": 1 << 30, "gib": 1 << 30}  # fmt: skip
MAX_SCAN_SIZE_LIMIT: Final = 1 << 30


def read_dlp(reader: NodeReader, node: Node, path: str) -> DlpConfig:
    fields = reader.mapping(node, path, _DLP, _DLP_UNSUPPORTED)
    if fields is None:
        return DlpConfig()

    def flag(key: str, default: bool) -> bool:
        if key not in fields:
            return default
        value = reader.boolean(fields[key], join(path, key))
        return default if value is None else value

    on_match = OnRequestMatch.BLOCK
    if "on_request_match" in fields:
        word = reader.string(fields["on_request_match"], join(path, "on_request_match"))
        if word is not None:
            try:
                on_match = OnRequestMatch(word.strip().lower())
            except ValueError:
                reader.problem(
                    fields["on_request_match"],
                    join(path, "on_request_match"),
                    f"must be block, redact or warn, not {word!r}",
                )
    defaults = DlpConfig()
    return DlpConfig(
        enabled=flag("enabled", True),
        patterns=_patterns(reader, fields.get("patterns"), join(path, "patterns")),
        builtin=flag("builtin", False),
        detect_encoding=flag("detect_encoding", False),
        filter_stderr=flag("filter_stderr", False),
        scan_requests=flag("scan_requests", False),
        on_request_match=on_match,
        max_scan_size=_size(reader, fields.get("max_scan_size"), join(path, "max_scan_size"))
        or defaults.max_scan_size,
    )


def _patterns(reader: NodeReader, node: Node | None, path: str) -> tuple[DlpPattern, ...]:
    if node is None:
        return ()
    out: list[DlpPattern] = []
    seen: set[str] = set()
    for item_path, item in reader.sequence(node, path):
        fields = reader.mapping(item, item_path, _PATTERN, _PATTERN_UNSUPPORTED)
        if fields is None:
            continue
        if "name" not in fields or "regex" not in fields:
            reader.problem(item, item_path, "each pattern needs a name and a regex")
            continue
        name = reader.string(fields["name"], join(item_path, "name"))
        regex = reader.string(fields["regex"], join(item_path, "regex"))
        if name is None or regex is None:
            continue
        if len(name) > _MAX_NAME_CHARS or not _NAME_RE.fullmatch(name):
            reader.problem(
                fields["name"],
                join(item_path, "name"),
                f"use up to {_MAX_NAME_CHARS} letters, digits, spaces, '.', '_' or '-'",
            )
            continue
        if name in seen:
            reader.problem(
                fields["name"], join(item_path, "name"), f"duplicate pattern name {name!r}"
            )
            continue
        seen.add(name)
        try:
            out.append(DlpPattern(name, regex, compile_pattern(regex, reader.budget)))
        except RegexError as exc:
            reader.problem(fields["regex"], join(item_path, "regex"), f"bad regex {regex!r}: {exc}")
    return tuple(out)


def _size(reader: NodeReader, node: Node | None, path: str) -> int | None:
    """``max_scan_size``: an integer of bytes, or a string like "1MB" / "512KB" (KB = 1024)."""
    if node is None:
        return None
    if isinstance(node, Scalar) and node.tag == INT:
        try:
            size = int(node.value.replace("_", ""), 0)
        except ValueError:
            size = -1
    else:
        text = reader.string(node, path)
        if text is None:
            return None
        match = _SIZE_RE.fullmatch(text)
        if match is None:
            reader.problem(node, path, f'{text!r} is not a size such as 1048576, "512KB" or "1MB"')
            return None
        digits = match.group(1)  # bounded before int(): 4,301+ digits would raise
        size = int(digits) * _UNITS[(match.group(2) or "").lower()] if len(digits) <= 18 else -1
    if not 0 < size <= MAX_SCAN_SIZE_LIMIT:
        reader.problem(node, path, f"must be between 1 byte and {MAX_SCAN_SIZE_LIMIT} bytes")
        return None
    return size
