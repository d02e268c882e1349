#!/usr/bin/env python3
"""Time ``aip.shared.policy.engine.decide`` on typical messages (the proxy's per-call policy cost).

Usage: python3 scripts/bench_engine.py [--rounds N]. Prints the median of 7 runs, in
CPU microseconds per decision, for the guide's conditional-approval policy plus 20 other rules.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import timeit
from pathlib import Path

from aip.shared.policy.decision import Context
from aip.shared.policy.engine import decide, filter_tools_list
from aip.shared.policy.load import load_policy_text
from aip.shared.policy.ratelimit import RateLimiter

POLICY = """\
apiVersion: aip.io/v1alpha1
kind: AgentPolicy
metadata: {name: bench}
spec:
  allowed_tools: [list_directory]
  protected_paths: [~/.ssh, ~/.aws]
  tool_rules:
    - {tool: postgres_query, action: allow, allow_args: {query: "^SELECT [^;]*$"}}
    - {tool: postgres_query, action: ask, allow_args: {query: "^(INSERT|UPDATE) .*$"}}
    - {tool: postgres_query, action: block}
    - {tool: read_file, action: allow, allow_args: {path: "^/(tmp|srv)/[A-Za-z0-9._/-]*$"}}
%s
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=50_000)
    ns = parser.parse_args()
    filler = "\n".join(
        f'    - {{tool: tool_{i}, action: allow, allow_args: {{a: "^[a-z]+$"}}}}' for i in range(20)
    )
    policy = load_policy_text(POLICY % filler)
    limiter = RateLimiter()
    with tempfile.TemporaryDirectory() as state:
        context = Context(cwd=str(Path.cwd()), always_protected=(state,))
        cases = {
            "allow by rule (SELECT)": _call(
                "postgres_query", query="SELECT * FROM users WHERE id = 1"
            ),
            "allow by rule, path arg": _call("read_file", path="/srv/data/report.csv"),
            "allow by allowed_tools": _call("list_directory", recursive=True),
            "ask (INSERT)": _call("postgres_query", query="INSERT INTO t VALUES (1)"),
            "block (no rule)": _call("exec", command="rm -rf /"),
            "non-tool method (ping)": {"jsonrpc": "2.0", "id": 1, "method": "ping"},
        }
        for label, message in cases.items():
            runs = timeit.repeat(
                lambda m=message: decide(policy, m, limiter, context),
                number=ns.rounds,
                repeat=7,
                timer=time.process_time,  # CPU time: steadier than wall time on a busy box
            )
            print(f"{label:28s} {statistics.median(runs) / ns.rounds * 1e6:6.2f} us")
        tools = {"tools": [{"name": f"tool_{i}", "inputSchema": {}} for i in range(40)]}
        runs = timeit.repeat(
            lambda: filter_tools_list(policy, tools), number=2000, repeat=7, timer=time.process_time
        )
        print(f"{'tools/list of 40 tools':28s} {statistics.median(runs) / 2000 * 1e6:6.2f} us")


def _call(tool: str, **arguments: object) -> dict[str, object]:
    params = {"name": tool, "arguments": arguments}
    return {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}


if __name__ == "__main__":
    main()
