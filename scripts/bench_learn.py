#!/usr/bin/env python3
"""Time ``aipctl policy suggest`` and ``aipctl audit report`` on a synthetic
central log of N decision records, against a bare baseline measured in the same run: a
Python loop that reads and parses every line of the same file with orjson.

Usage: python3 scripts/bench_learn.py [--records 1000000]. Prints seconds, records per second,
the ratio to the baseline and the peak RSS of each command (flat memory: the log is streamed).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

POLICY = """\
apiVersion: aip.io/v1alpha1
kind: AgentPolicy
metadata: {name: bench}
spec:
  allowed_tools: [read_file]
  tool_rules:
    - {tool: write_file, action: ask}
    - {tool: run_query, action: ask}
"""


def make_log(path: Path, n: int) -> None:
    reasons = ["policy allowed"] * 6 + ["human approved"] * 3 + ["human denied"]
    with path.open("wb") as fh:
        for i in range(n):
            reason = reasons[i % len(reasons)]
            tool = "write_file" if reason != "human denied" else "run_query"
            record = {
                "event": "decision",
                "seq": i + 1,
                "timestamp": f"2026-12-0{1 + i % 3}T10:{i % 60:02d}:00.000Z",
                "agent_id": f"agent-{i % 7}",
                "session": f"{i % 50:016x}",
                "tool": tool if reason != "policy allowed" else "read_file",
                "arguments": {"path": f"/tmp/build/{i % 5000}.o", "content": "x"},
                "decision": "deny" if reason == "human denied" else "allow",
                "reason": reason,
            }
            if reason.startswith("human"):
                record["human_decision"] = {"approved": reason == "human approved",
                                            "response_time_ms": 800 + i % 4000}  # fmt: skip
            fh.write(orjson.dumps(record) + b"\n")


def baseline(path: Path) -> float:
    started = time.perf_counter()
    with path.open("rb") as fh:
        for line in fh:
            orjson.loads(line)
    return time.perf_counter() - started


def timed(argv: list[str]) -> tuple[float, int]:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{argv[1:4]} failed: {done.stderr.decode()[-500:]}")
    return seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()
    aipctl = str(Path(sys.executable).parent / "aipctl")
    with tempfile.TemporaryDirectory() as tmp:
        log, policy = Path(tmp, "aip-audit.jsonl"), Path(tmp, "policy.yaml")
        policy.write_text(POLICY)
        policy.chmod(0o600)
        make_log(log, args.records)
        size = log.stat().st_size >> 20
        base = baseline(log)
        print(f"log: {args.records} records, {size} MiB; baseline read+parse: {base:.2f} s")
        common = ["--since", "3650d"]
        commands = {
            "policy suggest": [aipctl, "policy", "suggest", "--policy", str(policy),
                               "--audit", str(log), *common],
            "audit report --text": [aipctl, "audit", "report", str(log), "--policy",
                                    str(policy), *common],
            "audit report --html": [aipctl, "audit", "report", str(log), "--policy",
                                    str(policy), "--html", str(Path(tmp, "r.html")), *common],
        }  # fmt: skip
        for name, argv in commands.items():
            seconds, rss = timed(argv)
            rate = args.records / seconds
            print(f"{name}: {seconds:.2f} s, {rate:,.0f} records/s, {seconds / base:.2f}x the "
                  f"baseline, peak RSS of children so far {rss} MiB")  # fmt: skip


if __name__ == "__main__":
    main()
