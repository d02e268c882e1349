#!/usr/bin/env python3
"""The approver's CPU per proxy audit record, in-process, by stage (issue 16).

What the approver does with one ``audit`` message, as its server does it: decode the frame
(``Audit``'s checks), ``stamp`` (origin), ``AuditSink.ingest`` (``accept_batch``, then
``AuditLog.append_proxy_records``: ``proxy_batch.build``, one ``write()``), the ``audit_ack``
encoded. Messages of 64 records shaped like a proxy's allowed calls, into a real log in a
temporary folder. Two paths alternate within each round, so drift hits both alike:

- ``whole``: as shipped: a message of one session's next records is checked and built in
  whole-message passes (``ingest._accept_whole``, ``proxy_batch._whole_run``);
- ``general``: those two answering None, so every record takes the per-record path (what
  every unusual message still takes; before issue 16 it also copied each record).

    scripts/bench_ingest.py --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aip.approver.audit import ingest, proxy_batch
from aip.approver.audit.sink import AuditSink
from aip.approver.remote.bridge import stamp
from aip.shared.protocol.codec import encode
from aip.shared.protocol.frames import decode_to_approver
from aip.shared.protocol.messages import AuditAck, audit_frame

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_audit_client  # the record a proxy sends (one shape for both benchmarks)

SESSION = bench_audit_client.SESSION
STAGES = ("decode", "stamp", "ingest", "ack")


def record(rseq: int) -> bytes:
    """A proxy's record of an allowed call, as scripts/bench_audit_client.py sends it (its
    line, newline included: what ``audit_frame`` takes)."""
    return bench_audit_client.record(rseq)


def run(sink: AuditSink, frames: list[bytes]) -> dict[str, float]:
    """CPU seconds per stage over ``frames`` (thread time: this thread only)."""
    clock = time.thread_time
    spent = dict.fromkeys(STAGES, 0.0)
    for frame in frames:
        t0 = clock()
        msg = decode_to_approver(frame)
        t1 = clock()
        records = stamp(msg.records, None)  # type: ignore[union-attr]
        t2 = clock()
        rseqs = sink.ingest(records)
        t3 = clock()
        encode(AuditAck(session=SESSION, batch=msg.batch, rseqs=rseqs))  # type: ignore[union-attr]
        t4 = clock()
        spent["decode"] += t1 - t0
        spent["stamp"] += t2 - t1
        spent["ingest"] += t3 - t2
        spent["ack"] += t4 - t3
    return spent


async def bench(ns: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    results: dict[str, list[dict[str, float]]] = {"whole": [], "general": []}
    with tempfile.TemporaryDirectory(prefix="aip-ingest-") as name:
        async with AuditSink(Path(name) / "audit.jsonl", spool_dir=Path(name) / "s") as sink:
            rseq = 1
            for _ in range(ns.rounds):
                for path in ("whole", "general"):  # alternating: drift hits both alike
                    frames = []
                    for batch in range(ns.messages):
                        lines = [record(rseq + i) for i in range(64)]
                        frames.append(audit_frame(SESSION, batch, lines))
                        rseq += 64
                    saved = (proxy_batch._whole_run, ingest._accept_whole)
                    if path == "general":
                        proxy_batch._whole_run = _none
                        ingest._accept_whole = _none
                    try:
                        spent = run(sink, frames)
                    finally:
                        proxy_batch._whole_run, ingest._accept_whole = saved
                    per = 1e6 / (ns.messages * 64)
                    results[path].append({k: v * per for k, v in spent.items()})
                await sink.log.flush()
    return results


def _none(*args: Any) -> None:
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--messages", type=int, default=200, help="64-record messages per round")
    ns = ap.parse_args()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"# approver CPU per proxy record, in-process (load {load}, {ns.rounds} rounds)\n")
    results = asyncio.run(bench(ns))
    print("| path | total µs | " + " | ".join(STAGES) + " |")
    print("|---|---|" + "---|" * len(STAGES))
    for path, rows in results.items():
        m = {k: statistics.median(r[k] for r in rows) for k in STAGES}
        total = statistics.median(sum(r.values()) for r in rows)
        print(f"| {path} | {total:.2f} | " + " | ".join(f"{m[k]:.2f}" for k in STAGES) + " |")
    print(f"\nload after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
