#!/usr/bin/env python3
"""Benchmark the ask path (issue 3): round trip through aip-proxy + aip-approver with an instant
``exec:`` answer, next to a bare sync pyzmq ipc DEALER->ROUTER echo measured in the same run;
200 sessions holding asks against one approver (all answered, deadline accuracy); approver idle
RSS and RSS per connected proxy session.

    python scripts/bench_ask.py [--asks 300] [--sessions 200] [--timeout 2] [--pin 0] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import zmq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aip.shared.protocol.codec import encode  # noqa: E402
from aip.shared.protocol.frames import decode_to_proxy  # noqa: E402
from aip.shared.protocol.messages import Ask, Decision, Welcome, new_nonce  # noqa: E402
from tests.support.approverproc import Approver, Dealer, hello, new_session  # noqa: E402
from tests.support.proxyproc import RAW_SERVER, ProxyProcess, write_policy  # noqa: E402

ECHO_SERVER = """
import sys, zmq
ctx = zmq.Context(); s = ctx.socket(zmq.ROUTER); s.linger = 0; s.bind(sys.argv[1])
print("ready", flush=True)
while True:
    route, body = s.recv_multipart()
    if body == b"stop":
        break
    s.send_multipart([route, body])
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(values_s: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values_s]
    return {
        "p50_ms": round(pct(ms, 0.5), 3),
        "p99_ms": round(pct(ms, 0.99), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "n": len(ms),
    }


def bare_zmq(folder: Path, n: int) -> dict[str, float]:
    endpoint = f"ipc://{folder}/echo.sock"
    server = subprocess.Popen([sys.executable, "-c", ECHO_SERVER, endpoint], stdout=subprocess.PIPE)
    assert server.stdout is not None
    server.stdout.readline()
    ctx = zmq.Context()
    d = ctx.socket(zmq.DEALER)
    d.linger = 0
    d.connect(endpoint)
    payload = b"x" * 255
    times = []
    for i in range(n + 100):
        t0 = time.perf_counter()
        d.send(payload)
        d.recv()
        if i >= 100:
            times.append(time.perf_counter() - t0)
    d.send(b"stop")
    server.wait(5)
    d.close()
    ctx.term()
    return summary(times)


def program_alone(program: Path, n: int) -> dict[str, float]:
    """The answer program's own run time: spawn, one JSON line in, first line out, exit."""
    line = b'{"v":1,"request_id":1,"text":"x"}\n'
    times = []
    for i in range(n + 10):
        t0 = time.perf_counter()
        out = subprocess.run(
            [str(program)],
            input=line,
            capture_output=True,
            check=True,
            env={"PATH": "/usr/bin:/bin"},
        )
        if i >= 10:
            times.append(time.perf_counter() - t0)
        assert out.stdout.startswith(b"allow")
    return summary(times)


def through_proxy(folder: Path, endpoint: str, n: int) -> dict[str, Any]:
    policy = write_policy(
        folder,
        "allowed_tools: [read_file]\ntool_rules:\n  - tool: write_file\n    action: ask\n",
        "bench",
    )
    proxy = ProxyProcess(policy, RAW_SERVER, folder, extra_args=["--approver", endpoint])
    try:
        proxy.initialize()
        results: dict[str, Any] = {}
        for tool in ("read_file", "write_file"):
            times = []
            for i in range(n + 20):
                msg = {
                    "jsonrpc": "2.0",
                    "id": i + 1,
                    "method": "tools/call",
                    "params": {"name": tool, "arguments": {"path": f"/tmp/{i}"}},
                }
                t0 = time.perf_counter()
                proxy.send(msg)
                reply = proxy.recv(timeout=20)
                elapsed = time.perf_counter() - t0
                assert "result" in reply, reply
                if i >= 20:
                    times.append(elapsed)
            results["allow_path" if tool == "read_file" else "ask_path"] = summary(times)
        return results
    finally:
        proxy.kill()


def approver_only(endpoint: str, n: int) -> dict[str, float]:
    """Ask -> decision over a raw DEALER: the approver's share (dialog + durable audit)."""
    with Dealer(endpoint) as d:
        d.hello()
        times = []
        for i in range(n + 20):
            t0 = time.perf_counter()
            d.ask(i)
            got = d.decision()
            if i >= 20:
                times.append(time.perf_counter() - t0)
            assert got.outcome.value == "human_approved", got
    return summary(times)


def approver_without_audit(folder: Path, program: Path, n: int) -> dict[str, float]:
    """The same, with the approver in this process writing decisions to a StringIO: its own
    cost without the durable audit append (an fsync per allow, DESIGN §8)."""
    import asyncio
    import io
    import threading

    from aip.approver.audit.decision_log import StderrLog
    from aip.approver.dialogs.choose import Choice
    from aip.approver.dialogs.exec_program import ExecProgram
    from aip.approver.server import ApprovalServer
    from aip.approver.server_config import ServerConfig

    run = folder / "inproc"
    run.mkdir(mode=0o700)
    endpoint = f"ipc://{run}/approver.sock"
    config = ServerConfig(endpoint=endpoint, ask_per_minute=1e9, ask_burst=1e9)
    server = ApprovalServer(config, Choice(ExecProgram(str(program))), StderrLog(io.StringIO()))
    loop = asyncio.new_event_loop()
    stop, ready = asyncio.Event(), threading.Event()

    async def serve() -> None:
        up = asyncio.Event()
        task = asyncio.ensure_future(server.run(stop, up))
        await up.wait()
        ready.set()
        await task

    thread = threading.Thread(target=lambda: loop.run_until_complete(serve()))
    thread.start()
    ready.wait(10)
    try:
        return approver_only(endpoint, n)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


def hold_asks(folder: Path, sessions: int, timeout_s: float) -> dict[str, Any]:
    """``sessions`` DEALERs each hold one ask; the dialog never answers: every ask must end
    with TIMEOUT at its own deadline (arrival + timeout)."""
    never = folder / "never.sh"
    never.write_text("#!/bin/sh\nexec sleep 3600\n")
    never.chmod(0o755)
    with Approver(
        folder / "hold",
        f"exec:{never}",
        timeout_s=timeout_s,
        args=["--max-pending", str(max(256, sessions))],
    ) as approver:
        approver.wait_ready()
        proc = psutil.Process(approver.proc.pid)
        idle_rss = proc.memory_info().rss
        ctx = zmq.Context()
        socks = []
        poller = zmq.Poller()
        for _ in range(sessions):
            s = ctx.socket(zmq.DEALER)
            s.linger = 0
            s.connect(approver.endpoint)
            sid = new_session()
            s.send(encode(hello(sid)))
            socks.append((s, sid))
            poller.register(s, zmq.POLLIN)
        for s, _ in socks:
            assert s.poll(10000)
            assert isinstance(decode_to_proxy(s.recv()), Welcome)
        connected_rss = proc.memory_info().rss
        sent: dict[str, float] = {}
        for s, sid in socks:
            ask = Ask(
                session=sid,
                request_id=1,
                nonce=new_nonce(),
                digest="a" * 64,
                tool="write_file",
                arguments={"path": "/tmp/x"},
                rule="r",
                size=1,
            )
            sent[ask.nonce] = time.monotonic()
            s.send(encode(ask))
        late: list[float] = []
        outcomes: dict[str, int] = {}
        deadline = time.monotonic() + timeout_s + 10
        while len(late) < sessions and time.monotonic() < deadline:
            for sock, _ in poller.poll(1000):
                msg = decode_to_proxy(sock.recv())  # type: ignore[union-attr]
                assert isinstance(msg, Decision)
                late.append(time.monotonic() - sent[msg.nonce] - timeout_s)
                outcomes[msg.outcome.value] = outcomes.get(msg.outcome.value, 0) + 1
        after_rss = proc.memory_info().rss
        for s, _ in socks:
            s.close(0)
        ctx.term()
    return {
        "sessions": sessions,
        "answered": len(late),
        "outcomes": outcomes,
        "deadline_late_ms": {
            "min": round(min(late) * 1000, 1),
            "p50": round(pct(late, 0.5) * 1000, 1),
            "max": round(max(late) * 1000, 1),
        },
        "idle_rss_mb": round(idle_rss / 2**20, 1),
        "rss_per_session_mb": round((connected_rss - idle_rss) / sessions / 2**20, 3),
        "rss_after_asks_mb": round(after_rss / 2**20, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--asks", type=int, default=300)
    ap.add_argument("--sessions", type=int, default=200)
    ap.add_argument("--timeout", type=float, default=2.0)
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--pin", type=int, help="run everything on this CPU (children inherit it)")
    args = ap.parse_args()
    if args.pin is not None:
        os.sched_setaffinity(0, {args.pin})
    folder = Path(tempfile.mkdtemp(prefix="aip-b-", dir="/tmp"))
    try:
        (folder / "hold").mkdir()
        instant = folder / "instant.sh"
        instant.write_text("#!/bin/sh\necho allow\n")
        instant.chmod(0o755)
        results: dict[str, Any] = {"bare_zmq_ipc_echo": bare_zmq(folder, 3000)}
        results["answer_program_alone"] = program_alone(instant, args.asks)
        results["approver_without_audit"] = approver_without_audit(folder, instant, args.asks)
        with Approver(
            folder,
            f"exec:{instant}",
            timeout_s=30,
            args=["--ask-rate", "1000000", "--ask-burst", "1000000"],
        ) as approver:
            approver.wait_ready()
            results["approver_only"] = approver_only(approver.endpoint, args.asks)
            results.update(through_proxy(folder, approver.endpoint, args.asks))
        ask, allow, alone = (
            results["ask_path"],
            results["allow_path"],
            results["answer_program_alone"],
        )
        results["ask_overhead_beyond_program_ms"] = {
            "p50": round(ask["p50_ms"] - allow["p50_ms"] - alone["p50_ms"], 3),
            "p99": round(ask["p99_ms"] - allow["p50_ms"] - alone["p50_ms"], 3),
        }
        results["hold"] = hold_asks(folder, args.sessions, args.timeout)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
