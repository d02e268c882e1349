"""What a proxy tells the approver about an ask so a grant can bind it (docs/grants.md).

The approver never sees the policy, the server's command line or its ``tools/list``; the
proxy sends their digests with each ask (proto 3). An ask without ``grant`` facts (a proxy of
proto 2) is never answered by a grant and never creates one.
"""

from __future__ import annotations

from dataclasses import dataclass

from aip.shared.protocol.codec import need


@dataclass(frozen=True, slots=True, kw_only=True)
class GrantFacts:
    """What a remembered decision is bound to: server, tool entry, arguments."""

    server_sha256: str  # sha256 of the server's command line (orjson list of argv)
    tool_sha256: str  # sha256 of the tool's tools/list entry as last relayed ("" if never)
    args_sha256: str  # sha256 of the canonical arguments (``canonical_digest``)
    never_remember: bool = False  # a rule of the tool says x-aip-never-remember

    def __post_init__(self) -> None:
        for name in ("server_sha256", "args_sha256"):
            need(_hex64(getattr(self, name)), f"{name}: 64 lowercase hex chars")
        need(self.tool_sha256 == "" or _hex64(self.tool_sha256), "tool_sha256: 64 hex or empty")


def _hex64(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)
