#!/usr/bin/env python3
"""Benchmark a remembered decision (issue 13): a call answered by a grant against a
policy-allowed call, both through the real aip-proxy and aip-approver, interleaved in one run
so load hits both alike; next to one bare approver round trip (a granted ask sent straight to
the approver over a DEALER: lookup + durable record + reply). Target: a granted call costs at
most one approver round trip more than a policy-allowed one.

    python scripts/bench_grant.py [--calls 400] [--json OUT]

An exact-call grant ends after 20 uses, so each proxy session makes one grant (its first call
asks; the instant ``exec:`` answer remembers it) and measures its 20 uses.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aip.shared.digests import canonical_digest  # noqa: E402
from aip.shared.protocol.facts import GrantFacts  # noqa: E402
from aip.shared.protocol.messages import Ask, new_nonce  # noqa: E402
from tests.support.approverproc import Dealer  # noqa: E402
from tests.support.grantkit import desk, proxy  # noqa: E402

CYCLE = 21  # one ask that creates a grant, then its 20 uses


def summary(values_s: list[float]) -> dict[str, float]:
    ms = sorted(v * 1000 for v in values_s)
    return {
        "p50_ms": round(ms[len(ms) // 2], 3),
        "p90_ms": round(ms[int(len(ms) * 0.9)], 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "n": len(ms),
    }


def through_proxy(folder: Path, endpoint: str, calls: int) -> dict[str, dict[str, float]]:
    """One proxy session per grant: a session's 6th ask in 60 s is a prompt storm, where
    nothing is remembered, so a long run in one session would measure asks, not grants."""
    allowed: list[float] = []
    granted: list[float] = []
    args = {"path": "/tmp/bench/a.txt", "content": "x"}
    for cycle in range(calls // (CYCLE - 1) + 1):
        with proxy(folder, endpoint) as p:
            assert "result" in p.call(0, "write_file", args)  # asks: the grant is made
            for i in range(1, CYCLE):
                t0 = time.perf_counter()
                assert "result" in p.call(2 * i + 1, "read_file", {"path": f"/tmp/{i}"})
                t1 = time.perf_counter()
                assert "result" in p.call(2 * i + 2, "write_file", args)
                t2 = time.perf_counter()
                if cycle:  # the first session warms up
                    allowed.append(t1 - t0)
                    granted.append(t2 - t1)
    return {"policy_allowed": summary(allowed), "granted": summary(granted)}


def approver_round_trip(endpoint: str, calls: int) -> dict[str, float]:
    """Granted asks straight to the approver over a raw DEALER (a new session per grant)."""
    facts = GrantFacts(server_sha256="b" * 64, tool_sha256="", args_sha256=canonical_digest({}))
    times: list[float] = []
    for cycle in range(calls // (CYCLE - 1) + 1):
        with Dealer(endpoint) as d:
            d.hello()
            for i in range(CYCLE):
                ask = Ask(session=d.session, request_id=i, nonce=new_nonce(), digest="c" * 64,
                          tool="write_file", arguments={}, rule="r", size=2,
                          grant=facts)  # fmt: skip
                t0 = time.perf_counter()
                d.send(ask)
                got = d.decision()
                elapsed = time.perf_counter() - t0
                if i:
                    assert got.outcome.value == "granted", got
                    if cycle:
                        times.append(elapsed)
    return summary(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aip-bg-", dir="/tmp") as tmp:
        folder = Path(tmp)
        (folder / "run").mkdir(mode=0o700)
        env = {"AIP_TEST_ANSWER": "allow remember=exact for=1h"}
        with desk(folder, "allow remember=exact for=1h", env) as d:
            results: dict[str, Any] = through_proxy(folder, d.approver.endpoint, args.calls)
            results["approver_round_trip"] = approver_round_trip(d.approver.endpoint, args.calls)
    extra = results["granted"]["p50_ms"] - results["policy_allowed"]["p50_ms"]
    trip = results["approver_round_trip"]["p50_ms"]
    results["granted_minus_allowed_p50_ms"] = round(extra, 3)
    results["extra_in_approver_round_trips"] = round(extra / trip, 2) if trip else None
    results["ratio_granted_to_allowed_p50"] = round(
        results["granted"]["p50_ms"] / results["policy_allowed"]["p50_ms"], 2
    )
    results["load"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
