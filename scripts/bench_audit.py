#!/usr/bin/env python3
"""Benchmark of the central audit log (issue 4).

1. Throughput: 50 proxies (DEALERs spread over a few client processes) send ``audit``
   messages of B records each to a zmq.asyncio ROUTER, W messages in flight per proxy.
   Mode ``echo`` decodes each message and acks it (the bare ROUTER); mode ``audit`` also
   writes every record through AuditLog (dedup, chain, one write() per record, group
   commit). Both modes alternate in the same run; medians are reported.
2. Durable latency: ``append(durable=True)`` (fsync before an ask's allow) vs a plain append,
   idle and while the 50-proxy stream is running.

Usage: python scripts/bench_audit.py [--batch 16] [--reps 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import zmq
import zmq.asyncio

from aip.approver.audit.writer import AuditLog
from aip.shared.audit.record import decision_record
from aip.shared.outcomes import Outcome
from aip.shared.protocol.codec import encode
from aip.shared.protocol.frames import decode_to_approver
from aip.shared.protocol.messages import Audit, AuditAck

MODES = ("echo1", "audit1", "echo", "audit")  # "1": one record per message, else --batch


def make_record(session: str, rseq: int) -> dict[str, Any]:
    return decision_record(
        outcome=Outcome.POLICY_ALLOWED,
        session=session,
        agent_id=f"claude-code-{session[:6]}",
        server="filesystem",
        pid=os.getpid(),
        tool="read_file",
        arguments={"path": f"/home/user/project/src/module_{rseq}.py"},
        request_id=rseq,
        policy={"name": "dev-policy", "sha256": "ab" * 32},
        rule="tool_rules[0] (read_file allow)",
        rseq=rseq,
    )


# --- client process ------------------------------------------------------------------------


def run_client(endpoint: str, socks: int, messages: int, batch: int, window: int) -> None:
    ctx = zmq.Context()
    sessions = [os.urandom(8).hex() for _ in range(socks)]
    dealers = []
    poller = zmq.Poller()
    for _ in sessions:
        s = ctx.socket(zmq.DEALER)
        s.linger = 0
        s.connect(endpoint)
        poller.register(s, zmq.POLLIN)
        dealers.append(s)
    frames = {
        sess: [
            encode(
                Audit(
                    session=sess,
                    batch=m,
                    records=[make_record(sess, m * batch + i + 1) for i in range(batch)],
                )
            )
            for m in range(messages)
        ]
        for sess in sessions
    }
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.readline()  # go
    sent = [0] * socks
    acked = [0] * socks
    for i, s in enumerate(dealers):
        while sent[i] < min(window, messages):
            s.send(frames[sessions[i]][sent[i]])
            sent[i] += 1
    index = {s: i for i, s in enumerate(dealers)}
    while sum(acked) < socks * messages:
        for sock, _ in poller.poll(10000):
            i = index[sock]  # type: ignore[index]
            while True:
                try:
                    sock.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                acked[i] += 1
                if sent[i] < messages:
                    sock.send(frames[sessions[i]][sent[i]])
                    sent[i] += 1
    sys.stdout.write("done\n")
    sys.stdout.flush()
    for s in dealers:
        s.close()
    ctx.term()


# --- server --------------------------------------------------------------------------------


async def serve(
    endpoint: str, mode: str, expected: int, audit: AuditLog | None, ready: asyncio.Event
) -> dict[str, float]:
    ctx = zmq.asyncio.Context.instance()
    router = ctx.socket(zmq.ROUTER)
    router.linger = 0
    router.bind(endpoint)
    ready.set()
    got = records = 0
    t0 = 0.0
    try:
        while got < expected:
            peer, frame = await router.recv_multipart()
            if got == 0:
                t0 = time.perf_counter()
            msg = decode_to_approver(frame)
            assert isinstance(msg, Audit)
            if audit is not None:
                audit.append_proxy_records(msg.records)
            ack = AuditAck(
                session=msg.session, batch=msg.batch, rseqs=[r["rseq"] for r in msg.records]
            )
            await router.send_multipart([peer, encode(ack)])
            # A ready zmq.asyncio recv completes without yielding; yield once per message so
            # the group commit and the asks' fsync waiters get the loop (as the server must).
            await asyncio.sleep(0)
            got += 1
            records += len(msg.records)
        elapsed = time.perf_counter() - t0
    finally:
        router.close()
    return {"seconds": elapsed, "msgs_per_s": got / elapsed, "records_per_s": records / elapsed}


async def durable_probe(audit: AuditLog, stop: asyncio.Event, out: list[float]) -> None:
    """An ask's allow every 5 ms while the stream runs: its durable append latency."""
    n = 0
    while not stop.is_set():
        t = time.perf_counter()
        await audit.append(make_record("f" * 16, 10**9 + n), durable=True)
        out.append(time.perf_counter() - t)
        n += 1
        await asyncio.sleep(0.005)


async def one_run(args: argparse.Namespace, mode: str, workdir: Path) -> dict[str, Any]:
    endpoint = f"ipc://{workdir}/bench-{mode}.sock"
    batch = 1 if mode.endswith("1") else args.batch
    per_proc = args.proxies // args.procs
    clients = [
        subprocess.Popen(  # noqa: ASYNC220 - started before the measured part
            [
                sys.executable,
                __file__,
                "--client",
                endpoint,
                str(per_proc),
                str(args.messages),
                str(batch),
                str(args.window),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for _ in range(args.procs)
    ]
    try:
        for c in clients:
            assert c.stdout is not None
            assert c.stdout.readline().strip() == "ready"
        log_path = workdir / f"audit-{mode}-{time.monotonic_ns()}" / "aip-audit.jsonl"
        audit = (
            AuditLog(log_path, commit_records=args.commit_records)
            if mode.startswith("audit")
            else None
        )
        if audit is not None:
            await audit.open()
        ready = asyncio.Event()
        expected = per_proc * args.procs * args.messages
        server = asyncio.create_task(serve(endpoint, mode, expected, audit, ready))
        await ready.wait()
        latencies: list[float] = []
        stop = asyncio.Event()
        probe = asyncio.create_task(durable_probe(audit, stop, latencies)) if audit else None
        for c in clients:
            assert c.stdin is not None
            c.stdin.write("go\n")
            c.stdin.flush()
        result = await asyncio.wait_for(server, 300)
        stop.set()
        if probe is not None:
            await probe
        if audit is not None:
            await audit.close()
        result["durable_under_load_ms"] = [x * 1000 for x in latencies]
        return result
    finally:
        for c in clients:
            c.kill()
            c.wait()


async def idle_durable(workdir: Path, n: int) -> dict[str, float]:
    async with AuditLog(workdir / "idle" / "aip-audit.jsonl") as audit:
        plain, durable = [], []
        for i in range(n):
            t = time.perf_counter()
            await audit.append(make_record("e" * 16, 2 * i + 1))
            plain.append(time.perf_counter() - t)
            await audit.flush()
            t = time.perf_counter()
            await audit.append(make_record("e" * 16, 2 * i + 2), durable=True)
            durable.append(time.perf_counter() - t)
    return {
        "plain_p50_ms": pct(plain, 50) * 1000,
        "plain_p99_ms": pct(plain, 99) * 1000,
        "durable_p50_ms": pct(durable, 50) * 1000,
        "durable_p99_ms": pct(durable, 99) * 1000,
    }


async def moderate_durable(workdir: Path, n: int, rate: int) -> dict[str, float]:
    """Durable appends (one every 5 ms) while other records arrive at ``rate`` per second."""
    async with AuditLog(workdir / "moderate" / "aip-audit.jsonl") as audit:
        stop = asyncio.Event()

        async def background() -> None:
            rseq = 0
            while not stop.is_set():
                for _ in range(rate // 100):
                    rseq += 1
                    await audit.append(make_record("d" * 16, rseq))
                await asyncio.sleep(0.01)

        bg = asyncio.create_task(background())
        durable = []
        for i in range(n):
            t = time.perf_counter()
            await audit.append(make_record("c" * 16, i + 1), durable=True)
            durable.append(time.perf_counter() - t)
            await asyncio.sleep(0.005)
        stop.set()
        await bg
    return {
        "rate": rate,
        "durable_p50_ms": pct(durable, 50) * 1000,
        "durable_p99_ms": pct(durable, 99) * 1000,
        "durable_max_ms": max(durable) * 1000,
    }


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] if ordered else 0.0


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="aip-bench-", dir=args.dir) as tmp:
        workdir = Path(tmp)
        runs: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
        for _ in range(args.reps):
            for mode in MODES:
                runs[mode].append(await one_run(args, mode, workdir))
        idle = await idle_durable(workdir, args.durable_n)
        moderate = await moderate_durable(workdir, args.durable_n, args.moderate_rate)
    med = {
        mode: {k: statistics.median(r[k] for r in rs) for k in ("msgs_per_s", "records_per_s")}
        for mode, rs in runs.items()
    }
    loaded = [x for r in runs["audit"] for x in r["durable_under_load_ms"]]
    return {
        **med,
        "target_ratio": med["audit"]["records_per_s"] / med["echo1"]["msgs_per_s"],
        "config": {
            k: getattr(args, k)
            for k in ("proxies", "procs", "messages", "batch", "window", "reps", "commit_records")
        },
        "ratio_msgs": med["audit"]["msgs_per_s"] / med["echo"]["msgs_per_s"],
        "runs_msgs_per_s": {m: [round(r["msgs_per_s"]) for r in rs] for m, rs in runs.items()},
        "durable_idle": idle,
        "durable_moderate": moderate,
        "durable_under_load": {
            "n": len(loaded),
            "p50_ms": pct(loaded, 50),
            "p90_ms": pct(loaded, 90),
            "p99_ms": pct(loaded, 99),
            "max_ms": max(loaded, default=0.0),
        },
    }


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        endpoint, socks, messages, batch, window = sys.argv[2:7]
        run_client(endpoint, int(socks), int(messages), int(batch), int(window))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proxies", type=int, default=50)
    ap.add_argument("--procs", type=int, default=5, help="client processes holding the proxies")
    ap.add_argument("--messages", type=int, default=100, help="audit messages per proxy")
    ap.add_argument("--batch", type=int, default=16, help="records per audit message (<= 64)")
    ap.add_argument("--window", type=int, default=2, help="messages in flight per proxy")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--durable-n", type=int, default=300)
    ap.add_argument("--commit-records", type=int, default=64, help="group commit count")
    ap.add_argument("--moderate-rate", type=int, default=2000, help="records/s beside asks")
    ap.add_argument("--dir", help="where the logs go (default: system temp)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    result = asyncio.run(main_async(args))
    if args.json:
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
        return 0
    names = {
        "echo1": "bare ROUTER echo, 1 record/msg ",
        "audit1": "audit writer,    1 record/msg ",
        "echo": f"bare ROUTER echo, {args.batch} records/msg",
        "audit": f"audit writer,    {args.batch} records/msg",
    }
    for mode in MODES:
        m = result[mode]
        print(f"{names[mode]}: {m['msgs_per_s']:8.0f} msgs/s {m['records_per_s']:9.0f} rec/s")
    print(f"target: audit rec/s (batched) / bare echo msgs/s = {result['target_ratio']:.2f}x")
    print(f"same-batch msgs/s ratio audit/echo = {result['ratio_msgs']:.2f}x")
    print(f"runs msgs/s: {result['runs_msgs_per_s']}")
    i, u = result["durable_idle"], result["durable_under_load"]
    print(
        f"idle append      : plain p50 {i['plain_p50_ms']:.3f} ms p99 {i['plain_p99_ms']:.3f} ms;"
        f" durable p50 {i['durable_p50_ms']:.3f} ms p99 {i['durable_p99_ms']:.3f} ms"
    )
    m = result["durable_moderate"]
    print(
        f"durable beside {m['rate']} rec/s: p50 {m['durable_p50_ms']:.3f} ms"
        f" p99 {m['durable_p99_ms']:.3f} ms max {m['durable_max_ms']:.3f} ms"
    )
    print(
        f"durable under load ({u['n']} asks): p50 {u['p50_ms']:.3f} ms p99 {u['p99_ms']:.3f} ms"
        f" max {u['max_ms']:.3f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
