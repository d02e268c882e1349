#!/usr/bin/env python3
"""What a proxy's audit records cost on their way to a real aip-approver, per record.

A real approver (started as scripts/bench_proxy.py starts it) and, in this process, the
proxy's approval client with its outbox. Records like the benchmarked call's are submitted
one every ``--gap`` seconds (a proxy with one call in flight); reported: how many ``audit``
messages carried them (mean batch), the approver's CPU per record, and this process's CPU
per record (the approval thread, plus the submitting loop: spool write and sleep). Compare
``--flush`` values (the outbox's FLUSH_S) in one run:

    scripts/bench_audit_client.py --gap 0.0004 --flush 0.01 0.05
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import orjson
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_proxy  # the approver launcher

SESSION = "0123456789abcdef"


def record(rseq: int) -> bytes:
    rec = {
        "timestamp": "2026-12-04T14:54:54.891Z", "agent_id": "bench", "user": None,
        "tool": "read_file",
        "arguments": {"path": "/home/user/project/src/main.py", "encoding": "utf-8"},
        "decision": "allow", "reason": "policy allowed", "event": "decision",
        "request_id": rseq, "rseq": rseq, "session": SESSION, "method": "tools/call",
        "rule": "tool_rules[19] (read_file allow)", "outcome": "policy_allowed", "dlp": [],
        "monitor": None, "queue_wait_ms": None, "policy": {"name": "p", "sha256": "ab" * 32},
        "server": "bench", "pid": 1, "mode": "enforce",
    }  # fmt: skip
    return orjson.dumps(rec, option=orjson.OPT_APPEND_NEWLINE)


def cpu_s(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system


def run(endpoint: str, tmp: Path, flush: float, n: int, gap: float) -> dict[str, float]:
    from aip.proxy.approval.zmq_client import ZmqApprovalClient
    from aip.proxy.audit.outbox import AuditOutbox
    from aip.shared.audit.spool import Spool
    from aip.shared.protocol.messages import Hello, PolicyRef

    approver = next(
        p
        for p in psutil.process_iter(["cmdline"])
        if p.info["cmdline"] and endpoint in p.info["cmdline"]
    )
    session = os.urandom(8).hex()
    outbox = AuditOutbox(Spool(session, tmp / f"spool-{session}"), flush_s=flush)
    sizes: list[int] = []
    take = outbox.take_batches

    def counted(now: float) -> list[tuple[int, list[bytes]]]:
        out = take(now)
        sizes.extend(len(records) for _, records in out)
        return out

    outbox.take_batches = counted  # type: ignore[method-assign]
    hello = Hello(
        session=session, pid=os.getpid(), agent_id="bench", server="bench",
        policy=PolicyRef(name="p", sha256="ab" * 32),
    )  # fmt: skip
    client = ZmqApprovalClient(endpoint, hello, audit=outbox)
    time.sleep(0.5)  # connected and welcomed
    me = psutil.Process()
    a0, m0 = cpu_s(approver), cpu_s(me)
    for rseq in range(1, n + 1):
        outbox.submit(rseq, record(rseq).replace(SESSION.encode(), session.encode()))
        time.sleep(gap)
    deadline = time.monotonic() + 10
    while len(outbox.spool.pending()) and time.monotonic() < deadline:
        time.sleep(0.01)  # every record acknowledged
    a1, m1 = cpu_s(approver), cpu_s(me)
    client.close()
    return {
        "messages": len(sizes),
        "mean batch": sum(sizes) / max(1, len(sizes)),
        "approver CPU us/record": (a1 - a0) / n * 1e6,
        "proxy side CPU us/record": (m1 - m0) / n * 1e6,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--gap", type=float, default=0.0004, help="seconds between records")
    ap.add_argument("--records", type=int, default=4000)
    ap.add_argument("--flush", type=float, nargs="+", default=[0.05], help="FLUSH_S values")
    ap.add_argument("--rounds", type=int, default=2)
    ns = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="aip-bench-") as name:
        tmp = Path(name)
        bench_proxy.ENV.update(os.environ)
        bench_proxy.ENV["XDG_STATE_HOME"] = str(tmp)
        os.environ["XDG_STATE_HOME"] = str(tmp)
        print(f"# load {' '.join(f'{x:.2f}' for x in os.getloadavg())}, gap {ns.gap} s\n")
        print("| flush s | messages | mean batch | approver CPU µs/record | proxy side µs/record |")
        print("|---|---|---|---|---|")
        with bench_proxy.approver(tmp, False) as (endpoint, _audit):
            for _ in range(ns.rounds):
                for flush in ns.flush:  # alternating: drift hits every value alike
                    r = run(endpoint, tmp, flush, ns.records, ns.gap)
                    print(f"| {flush} | " + " | ".join(f"{v:.1f}" for v in r.values()) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
