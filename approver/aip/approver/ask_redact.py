"""The built-in DLP rules once more on an arriving ask (DESIGN §8): proxies redact with their
policy's rules before sending, and nothing unredacted may reach a screen or ``ps``."""

from __future__ import annotations

import dataclasses
import logging

from aip.shared.dlp.hidden import hidden_chars
from aip.shared.dlp.redactor import Redactor, summarize
from aip.shared.protocol.messages import Ask

log = logging.getLogger(__name__)


def redacted(redactor: Redactor, ask: Ask) -> Ask:
    """``ask`` with what the built-in rules still find redacted; raises DlpError when it
    cannot be scanned (then it cannot be shown)."""
    arguments, counts = redactor.redact_value(ask.arguments)
    tool, tool_counts = redactor.redact_text(ask.tool)
    if not counts and not tool_counts:
        return ask
    log.warning("ask %s still held secrets; redacted before display", ask.request_id)
    # Rules only this pass found join the proxy's list for the record's ``dlp``.
    listed = {entry.split(":", 1)[0] for entry in ask.dlp}
    ours = [e for e in summarize(counts + tool_counts) if e.split(":", 1)[0] not in listed]
    hidden = ask.hidden_chars + hidden_chars(ask.arguments, arguments)
    return dataclasses.replace(
        ask, arguments=arguments, tool=tool, dlp=[*ask.dlp, *ours], hidden_chars=hidden
    )
