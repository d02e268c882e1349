"""The AIP conformance DLP vectors (``../shared/conformance/full/dlp.yaml``), via the real loader.

Each case's policy is loaded with ``load_policy_text``; its ``content`` is redacted as a tool
result's text (``redact_line``, as the proxy relays it) and as plain text. Deviations: none —
every vector is asserted as written, including the per-rule ``dlp_events`` counts. A policy
with ``dlp.enabled: false`` scans nothing (the proxy does not call the redactor on responses).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from aip.shared.dlp.redactor import Redactor
from aip.shared.policy.load import load_policy_text

VECTORS = Path(__file__).resolve().parents[4] / "shared" / "conformance" / "full" / "dlp.yaml"


def _cases() -> list[Any]:
    if not VECTORS.is_file():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"{VECTORS} not present"))]
    doc = yaml.safe_load(VECTORS.read_text(encoding="utf-8"))
    return [pytest.param(case, id=case["id"]) for case in doc["tests"]]


@pytest.mark.parametrize("case", _cases())
def test_dlp_vector(case: dict[str, Any]) -> None:
    assert case["input"]["type"] == "response"
    policy = load_policy_text(case["policy"], source=case["id"])
    content: str = case["input"]["content"]
    expected = case["expected"]
    events = {e["rule"]: e["count"] for e in expected.get("dlp_events") or []}

    if not policy.dlp.enabled:
        output, counts = content, Counter[str]()
    else:
        red = Redactor.from_config(policy.dlp)
        output, counts = red.redact_text(content)
        msg = {
            "jsonrpc": "2.0",
            "id": 1,
            "result": {"content": [{"type": "text", "text": content}]},
        }
        line = red.redact_line(orjson.dumps(msg))
        assert line.line is not None
        assert orjson.loads(line.line)["result"]["content"][0]["text"] == output
        assert line.counts == counts

    assert output == expected["output"]
    assert (output != content) is expected["redacted"]
    if "dlp_events" in expected:
        assert dict(counts) == events
