"""The AIP reference's DLP cases (tests/data/conformance/dlp.yaml) through the real loader.

Each case's `spec.dlp` is loaded with ``load_policy_text``; its text is redacted as a tool
result (``redact_line``, as the proxy relays it) and as plain text. No deviations. A policy
with ``dlp.enabled: false`` scans nothing (the proxy does not call the redactor on results).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
import pytest
import yaml

from aip.shared.dlp.redactor import Redactor
from aip.shared.policy.load import load_policy_text
from tests.shared.enginekit import ROOT, wrap

DATA = ROOT / "tests" / "data" / "conformance" / "dlp.yaml"
CASES: list[dict[str, Any]] = yaml.safe_load(DATA.read_text(encoding="utf-8"))["cases"]


@pytest.mark.parametrize("case", [pytest.param(c, id=c["id"]) for c in CASES])
def test_case(case: dict[str, Any]) -> None:
    spec = {"allowed_tools": ["any_tool"], "dlp": case["dlp"]}
    policy = load_policy_text(wrap(yaml.safe_dump(spec), "test-policy"), source=case["id"])
    text: str = case["text"]
    if not policy.dlp.enabled:
        output, counts = text, Counter[str]()
    else:
        red = Redactor.from_config(policy.dlp)
        output, counts = red.redact_text(text)
        msg = {"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": text}]}}
        line = red.redact_line(orjson.dumps(msg))
        assert line.line is not None
        assert orjson.loads(line.line)["result"]["content"][0]["text"] == output
        assert line.counts == counts
    assert output == case["out"]
    assert dict(counts) == case["counts"]


def test_the_data_holds_every_reference_case_once() -> None:
    ids = [c["id"] for c in CASES]
    assert len(ids) == len(set(ids)) == 9
