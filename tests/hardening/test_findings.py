"""Failures the hardening suite found: regression tests for those fixed, and a precise strict
xfail for each one not fixed yet (the fix turns it into a failure saying "remove the mark")."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from aip.approver.audit.dedup import SeenPairs
from aip.proxy.audit import recorder as decisions
from aip.shared.dlp.redactor import Redactor
from aip.shared.outcomes import Outcome


@pytest.mark.parametrize("text", ["2 4111 1111 1111 1111", "qty 3 5500-0000-0000-0004"])
def test_card_after_a_lone_digit_is_redacted(text: str) -> None:
    """Found by fuzzing: the card candidate started at the lone digit and the validator only
    tried prefixes of it. Fixed in aip.shared.dlp.builtin (every group-aligned window)."""
    redacted, counts = Redactor.builtin_only().redact_text(text)
    assert counts["card-number"] == 1, redacted


def test_rseqs_sent_to_the_approver_have_no_gaps(tmp_path: Path) -> None:
    """Found by the soak (approver RSS grew ~0.15 KB per call): the proxy spent an rseq on
    each approver-answered ask's record without sending it, and the approver's dedup keeps
    every rseq above a gap of a session in a set, forever. Fixed in aip.proxy.audit.recorder."""
    sent: list[int] = []

    class Outbox:
        def submit(self, rseq: int, line: bytes) -> None:
            sent.append(rseq)

    fd = os.open(tmp_path / "stderr", os.O_WRONLY | os.O_CREAT, 0o600)
    rec = decisions.Recorder(
        session="0123456789abcdef",
        server="s",
        policy_name="p",
        policy_sha256="0" * 64,
        mode="enforce",
        agent_id="a",
        fd=fd,
        audit=Outbox(),  # type: ignore[arg-type]
    )
    answered: dict[str, Any] = {"answered_by_approver": True}
    try:
        for n in range(50):
            decisions.record_decision(rec, Outcome.POLICY_ALLOWED, tool="t", request_id=n)
            if n % 5 == 0:
                decisions.record_decision(
                    rec, Outcome.HUMAN_APPROVED, tool="w", request_id=f"a{n}", extra=answered
                )
            if n % 7 == 0:
                decisions.record_decision(
                    rec, Outcome.SERVER_EXITED, tool="w", request_id=f"x{n}", extra=answered
                )
    finally:
        os.close(fd)
    assert sent == list(range(1, len(sent) + 1))
    seen = SeenPairs()
    for rseq in sent:
        seen.add(rec.session, rseq)
    assert (rec.session, len(sent)) in seen
    assert not seen._above  # nothing held above a gap
