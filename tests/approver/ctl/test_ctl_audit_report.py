"""``aipctl audit report``: the figures in the terminal, and one self-contained HTML page that
headless Chromium (Debian's) renders with every chart, JavaScript off."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest

from aip.approver.audit.writer import AuditLog
from aip.shared.audit.record import decision_record
from aip.shared.audit.stamp import rfc3339
from aip.shared.outcomes import Outcome
from aip.shared.protocol.messages import HumanDecision
from tests.support.aipctl import aipctl

pytestmark = pytest.mark.e2e
HOSTILE = "<script>alert(1)</script>\u202e"


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "aip-audit.jsonl"

    async def write() -> None:
        async with AuditLog(path) as audit:
            plan = [
                (Outcome.HUMAN_APPROVED, "write_file", 800.0),
                (Outcome.HUMAN_APPROVED, "write_file", 900.0),
                (Outcome.HUMAN_APPROVED, "write_file", 4000.0),
                (Outcome.DENIED_BY_USER, "delete_file", 2500.0),
                (Outcome.TIMEOUT, "delete_file", None),
                (Outcome.POLICY_ALLOWED, "read_file", None),
                (Outcome.APPROVER_UNAVAILABLE, HOSTILE, None),
            ]
            for i, (outcome, tool, ms) in enumerate(plan):
                human = (
                    None
                    if ms is None
                    else HumanDecision(
                        approved=outcome is Outcome.HUMAN_APPROVED,
                        response_time_ms=round(ms),
                        dialog_shown_at=rfc3339(1000.0),
                    )
                )
                await audit.append(
                    decision_record(
                        outcome=outcome,
                        session="0123456789abcdef",
                        agent_id="agent-a" if i % 2 else "agent-b",
                        tool=tool,
                        arguments={"path": f"/tmp/{i}"},
                        human=human,
                        rseq=i + 1,
                    )
                )

    asyncio.run(write())
    return path


def test_text_report_has_the_figures(log: Path) -> None:
    done = aipctl("audit", "report", str(log), "--since", "1d", timeout_s=60)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "7 decisions" in text
    assert "approvals answered in under 1.5 s: 2 of 3 (67%)" in text
    assert "approval fatigue" in text
    row = next(line for line in text.splitlines() if line.startswith("delete_file"))
    assert row.split()[1:] == ["0", "1", "1", "0"]  # allowed, denied, timed out, unavailable
    assert HOSTILE not in text  # escaped for the terminal


def test_html_report_renders_in_headless_chromium_with_no_script_allowed(
    log: Path, tmp_path: Path
) -> None:
    page = tmp_path / "report.html"
    done = aipctl("audit", "report", str(log), "--since", "1d", "--html", str(page), timeout_s=60)
    assert done.returncode == 0, done.stderr
    source = page.read_text()
    assert source.count("<svg") == 4  # asks per day, response times, fatigue, outcomes
    assert "<script" not in source.lower()  # nothing runs, nothing loads
    assert "default-src 'none'" in source  # and the page forbids it (JS off by policy)
    assert 'src="http' not in source
    assert 'href="http' not in source
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in source  # hostile names escaped
    chromium = shutil.which("chromium")
    assert chromium is not None, "apt-get install chromium (.ci/run does)"
    shot = tmp_path / "report.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1000,2400"]  # fmt: skip
    subprocess.run(
        [chromium, *flags, f"--screenshot={shot}", page.as_uri()],
        capture_output=True, timeout=90, check=True,
    )  # fmt: skip
    colours = subprocess.run(
        ["identify", "-format", "%k", str(shot)], capture_output=True, text=True, check=True
    )
    assert int(colours.stdout) > 50  # charts drawn, not a blank page
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=90, check=True,
    ).stdout  # fmt: skip
    assert dom.count("<svg") == 4
    assert "Outcomes per tool" in dom
    assert "delete_file" in dom
