"""The AIP reference's decision cases (tests/data/conformance/decisions.yaml) through our engine.

Each case's spec is loaded by the real loader, its request decided by the engine, and a block
answered by the proxy's own JSON-RPC reply builder. Where we deliberately answer otherwise
(`reference` + `why` in the data; docs/conformance.md lists them), the data holds OUR answer
and that is what is asserted.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from aip.shared.errors import PolicyError
from aip.shared.jsonrpc import error_line
from aip.shared.outcomes import Outcome, row
from aip.shared.policy.decision import Verdict
from aip.shared.policy.engine import decide
from aip.shared.policy.file import find_policy_path
from aip.shared.policy.load import load_policy_text
from aip.shared.policy.ratelimit import RateLimiter
from tests.shared.enginekit import CTX, ROOT, wrap

DATA = ROOT / "tests" / "data" / "conformance" / "decisions.yaml"
DOC = ROOT / "docs" / "conformance.md"
CASES: list[dict[str, Any]] = yaml.safe_load(DATA.read_text(encoding="utf-8"))["cases"]
HUMAN = {"deny": Outcome.DENIED_BY_USER, "timeout": Outcome.TIMEOUT}


def _decide(case: dict[str, Any]) -> tuple[str, Outcome | None, dict[str, Any]]:
    """(decision word, outcome, the request as sent) for a case with a policy."""
    pol = load_policy_text(wrap(yaml.safe_dump(case["spec"]), "test-policy"), source=case["id"])
    message: dict[str, Any] = {
        "jsonrpc": "2.0",
        "id": case.get("rid", 1),
        "method": case.get("method", "tools/call"),
    }
    if "tool" in case:
        message["params"] = {"name": case["tool"], "arguments": case.get("args", {})}
    limiter = RateLimiter(clock=lambda: 0.0)  # a frozen clock: the earlier calls are "just now"
    for _ in range(case.get("after", 0)):
        decide(pol, message, limiter, CTX)
    d = decide(pol, message, limiter, CTX)
    if d.verdict is Verdict.FORWARD:
        return "ALLOW", d.outcome, {"violation": d.monitor_would is not None}
    if d.verdict is Verdict.ASK:
        if "human" not in case:
            return "ASK", None, {"violation": False}
        outcome = HUMAN[case["human"]]  # what the approver's answer turns the ask into
    else:
        assert d.outcome is not None
        outcome = d.outcome
    reply = error_line(message["id"], outcome, tool=d.tool, detail=d.detail or None, extra=d.data)
    return str(row(outcome).vector), outcome, {"violation": True, "reply": orjson.loads(reply)}


@pytest.mark.parametrize("case", [pytest.param(c, id=c["id"]) for c in CASES])
def test_case(case: dict[str, Any], tmp_path: Path) -> None:
    want, _, code = case["want"].partition(" ")
    if case["spec"] is None:
        assert want == "NO_START"
        with pytest.raises(PolicyError, match="no policy"):  # aip-proxy exits 2 on this
            find_policy_path(None, {"HOME": str(tmp_path)})
        return
    decision, outcome, seen = _decide(case)
    assert decision == want
    default_violation = want not in ("ALLOW", "ASK")
    assert seen["violation"] is case.get("violation", default_violation)
    if not code:
        assert "reply" not in seen
        assert outcome in (None, Outcome.POLICY_ALLOWED)
        return
    reply = seen["reply"]
    assert reply["jsonrpc"] == "2.0"
    assert reply["id"] == case.get("rid", 1)
    assert reply["error"]["code"] == int(code)
    if "message" in case:
        assert reply["error"]["message"] == case["message"]
    assert reply["error"]["data"] | case.get("data", {}) == reply["error"]["data"]


def test_the_data_holds_every_reference_case_once() -> None:
    ids = [c["id"] for c in CASES]
    assert len(ids) == len(set(ids)) == 56  # + 9 DLP cases = the reference's 65
    prefixes = {re.sub(r"-\d+$", "", i) for i in ids}
    assert prefixes == {"auth", "method", "err", "args", "norm"}


def test_every_deviation_says_why_and_differs_and_is_in_the_docs() -> None:
    deviations = {c["id"]: c for c in CASES if "reference" in c}
    assert set(deviations) == {"auth-050", "err-010", "err-020", "err-021", "err-040", "err-050"}
    listed = set(re.findall(r"^\| (\S+-\d+) \|", DOC.read_text(encoding="utf-8"), re.MULTILINE))
    assert listed == set(deviations), "docs/conformance.md lists exactly the deviations"
    for case in deviations.values():
        assert case["why"].strip()
        ref = case["reference"]
        for key, theirs in ref.items():
            ours = case[key]
            assert (ours | theirs != ours) if isinstance(theirs, dict) else ours != theirs
    assert [c["id"] for c in CASES if "why" in c] == list(deviations)
