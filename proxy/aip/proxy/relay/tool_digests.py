"""The proxy's part of remembered decisions (docs/grants.md): what a grant binds, per ask.

A grant in the approver names the tool's ``tools/list`` entry by digest, so a server that
changes a tool's description or schema after the human said "remember" (a rug pull) voids
it. The digest is taken over each entry exactly as the server sent it (before our filter and
DLP), canonicalized (sorted keys), on every tools/list page relayed.
"""

from __future__ import annotations

from aip.proxy.relay.session import Session
from aip.shared.digests import canonical_digest
from aip.shared.policy.names import normalize

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

    from aip.shared.protocol.facts import GrantFacts

MAX_TOOLS: Final = 4096  # entries remembered per session (a server listing more: "" digests)


def note_tool_digests(session: Session, result: dict[str, Any]) -> None:
    tools = result.get("tools")
    if not isinstance(tools, list):
        return
    digests = session.tool_digests
    for entry in tools:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            continue
        key = normalize(name)
        if key in digests or len(digests) < MAX_TOOLS:
            digests[key] = canonical_digest(entry)


def grant_facts(session: Session, tool: str | None, arguments: Any) -> GrantFacts:
    # The protocol's facts load with the first ask (as its client does), not at start-up.
    from aip.shared.protocol.facts import GrantFacts

    name = normalize(tool or "")
    return GrantFacts(
        server_sha256=session.server_sha256 or canonical_digest(None),
        tool_sha256=session.tool_digests.get(name, ""),
        args_sha256=canonical_digest(arguments),
        never_remember=session.policy.never_remember(name),
    )
