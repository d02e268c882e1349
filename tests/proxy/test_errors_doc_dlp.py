"""docs/errors.md explains every ``internal_error`` detail the DLP filter produces (issue 5)."""

from __future__ import annotations

import re
from pathlib import Path

import aip.proxy.relay.dlp_filter as dlp_filter

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _internal_error_section() -> str:
    text = (DOCS / "errors.md").read_text()
    start = text.index("### `internal_error`")
    end = text.index("\n## ", start)
    return text[start:end]


def test_every_dlp_detail_is_documented_under_internal_error() -> None:
    section = _internal_error_section()
    source = Path(dlp_filter.__file__).read_text()
    # The detail texts the filter builds: "<noun> could not be scanned", "<noun> over
    # max_scan_size (N bytes)" (noun "response" for what the agent sees) and the arguments'.
    assert '"arguments could not be scanned"' in source
    assert "could not be scanned" in source
    assert "over max_scan_size (" in source
    assert '"response over max_scan_size (1048576 bytes)"' in section
    assert '"response could not be scanned"' in section
    assert '"arguments could not be scanned"' in section
    assert re.search(r"bug in the proxy", section)
