"""docs/errors.md stays the DESIGN §5 table: every outcome with its own code, message, reason."""

from __future__ import annotations

import re
from pathlib import Path

from aip.shared.outcomes import Outcome, row

DOCS = Path(__file__).resolve().parents[3] / "docs"


def test_every_outcome_has_its_row_and_section() -> None:
    text = (DOCS / "errors.md").read_text()
    rows = {
        m.group(1): [c.strip() for c in m.group(2).split("|")]
        for m in re.finditer(r"^\| `([a-z_]+)` \|(.*)\|$", text, re.MULTILINE)
    }
    assert set(rows) == {o.value for o in Outcome}
    for outcome in Outcome:
        r = row(outcome)
        code, message, reason = rows[outcome.value]
        assert code.startswith(str(r.code) if r.code is not None else "—"), outcome
        assert message == (r.message or "—"), outcome
        assert reason == f"`{r.audit_reason}`", outcome
        if outcome not in (Outcome.POLICY_ALLOWED, Outcome.HUMAN_APPROVED):
            assert f"### `{outcome.value}`" in text, f"no section explains {outcome}"


def test_install_guide_covers_the_guides_troubleshooting() -> None:
    text = (DOCS / "install.md").read_text()
    for heading in (
        "### No dialog appears",
        "### macOS: accessibility permission",
        "### Linux: zenity missing",
        "### Requests are denied after 60 seconds",
    ):
        assert heading in text
    for client in ("### Claude Desktop", "### Cursor", "### Claude Code", "### Codex"):
        assert client in text
    assert "errors.md" in text
