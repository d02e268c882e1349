#!/usr/bin/env python3
"""Benchmark aip-proxy against a direct pipe to the same echo MCP server, side by side.

One run measures both chains with the same driver: p50/p99 round trip with one call in flight,
calls/s with 64 in flight (small and 100 KB results), start-up (first answered ``initialize``
through the proxy minus the server alone) and the proxy's RSS without its child. The proxy
runs a 20-rule policy; every call is an allowed ``tools/call`` checked against a regex rule.

    scripts/bench_proxy.py                 # unpinned
    scripts/bench_proxy.py --pin           # every process on CPU 0 (taskset -c 0): stable ratios
    scripts/bench_proxy.py --both          # both, one table each
    scripts/bench_proxy.py --sandbox off   # the proxy without its kernel sandbox (default: as
                                           # $AIP_SANDBOX says, else require)

Targets (issue 2): added p50 <= 100 us, added p99 <= 500 us, 64-in-flight throughput >= 30 %
of direct, added start-up <= 200 ms, proxy RSS <= 35 MB. Not a timed test; see README.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
REQ = (
    b'{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"read_file",'
    b'"arguments":{"path":"/home/user/project/src/main.py","encoding":"utf-8"}}}\n'
)
# --relative-path: the same call without a path-like value, so the engine's protected-path
# check (a realpath per absolute path, DESIGN §4.5) is skipped: shows what that check costs.
REQ_RELATIVE = (
    b'{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"read_file",'
    b'"arguments":{"path":"project/src/main.py","encoding":"utf-8"}}}\n'
)
INIT = (
    b'{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18",'
    b'"capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}\n'
)
# Filled in by main(): the proxy spools its audit records (no approver runs here) under a
# private state directory, not the user's ~/.local/state.
ENV: dict[str, str] = {}
TARGETS = {"p50_us": 100.0, "p99_us": 500.0, "tp_ratio": 0.30, "startup_ms": 200.0, "rss_mb": 35.0}


def serve(payload: int) -> None:
    """The echo MCP server (like research/perf-scripts/echo_server.py): orjson, flush per reply."""
    serve_text("ok" if payload == 0 else "x" * payload)


def serve_text(text: str) -> None:
    """Answer ``initialize`` and every other request with one text result of ``text``."""
    import orjson

    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        msg = orjson.loads(line)
        mid = msg.get("id")
        if mid is None:
            continue
        if msg.get("method") == "initialize":
            result: Any = {
                "protocolVersion": "2025-06-18",
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "echo", "version": "1"},
            }
        else:
            result = {"content": [{"type": "text", "text": text}], "isError": False}
        out.write(orjson.dumps({"jsonrpc": "2.0", "id": mid, "result": result}) + b"\n")
        out.flush()


def write_policy(directory: Path) -> Path:
    """20 rules; the benchmarked call matches the last one (the engine scans them all)."""
    rules = []
    for i in range(19):
        rules.append(
            f"    - tool: tool_{i}\n      action: allow\n      allow_args:\n"
            f'        arg: "^value-{i}-[a-z]+$"\n'
        )
    rules.append(
        "    - tool: read_file\n      action: allow\n      allow_args:\n"
        '        path: "^(/home/user/)?project/[A-Za-z0-9_./-]*$"\n'
        '        encoding: "^(utf-8|ascii|latin-1)$"\n'
    )
    text = (
        "apiVersion: aip.io/v1alpha1\nkind: AgentPolicy\nmetadata:\n  name: bench-20\n"
        "spec:\n  tool_rules:\n" + "".join(rules)
    )
    path = directory / "bench-20.yaml"
    path.write_text(text)
    path.chmod(0o600)
    return path


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100.0
    f = int(k)
    c = min(f + 1, len(xs) - 1)
    return xs[f] + (xs[c] - xs[f]) * (k - f)


def chain(kind: str, payload: int, policy: Path, pin: bool) -> list[str]:
    server = [sys.executable, str(HERE), "--serve", str(payload)]
    if kind == "direct":
        cmd = server
    else:
        # The console script next to this interpreter (a pyenv shim would add its own start-up).
        exe = Path(sys.executable).parent / "aip-proxy"
        proxy = [str(exe)] if exe.exists() else [sys.executable, "-m", "aip.proxy"]
        cmd = [*proxy, "--policy", str(policy), "--", *server]
    return ["taskset", "-c", "0", *cmd] if pin else cmd


def run_chain(
    cmd: list[str], n_lat: int, n_tp: int, req: bytes = REQ, window: int = 64
) -> dict[str, float]:
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        bufsize=0,
        env=ENV,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    wfd = proc.stdin.fileno()
    rd = io.BufferedReader(proc.stdout, buffer_size=1 << 20)  # type: ignore[arg-type]
    res: dict[str, float] = {}
    os.write(wfd, INIT)
    assert b'"result"' in rd.readline()
    i = 1
    for _ in range(300):  # warm-up
        os.write(wfd, req % i)
        line = rd.readline()
        i += 1
    if not (line.startswith(b'{"jsonrpc":"2.0","id":') and b'"result"' in line[:40]):
        raise RuntimeError(f"the benchmarked call was not allowed: {line[:200]!r}")
    pc = time.perf_counter_ns
    lat = []
    for _ in range(n_lat):
        t0 = pc()
        os.write(wfd, req % i)
        if not rd.readline():
            raise RuntimeError("EOF")
        lat.append(pc() - t0)
        i += 1
    res["p50_us"] = pct(lat, 50) / 1e3
    res["p99_us"] = pct(lat, 99) / 1e3
    import psutil  # here, so the echo server (this file with --serve) starts light

    # taskset execs, so proc.pid is the chain's first process: the proxy, or the direct server
    top = psutil.Process(proc.pid)
    cpu0 = top.cpu_times()
    sent = 0
    t_start = pc()
    for _ in range(min(window, n_tp)):
        os.write(wfd, req % (i + sent))
        sent += 1
    for _ in range(n_tp):
        if not rd.readline():
            raise RuntimeError("EOF")
        if sent < n_tp:
            os.write(wfd, req % (i + sent))
            sent += 1
    res["tp_per_s"] = n_tp / ((pc() - t_start) / 1e9)
    cpu1 = top.cpu_times()
    spent = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    res["cpu_us_per_msg"] = spent / n_tp * 1e6  # of the first process (user + system)
    res["rss_mb"] = top.memory_info().rss / 2**20
    proc.stdin.close()
    proc.wait(30)
    return res


def startup_ms(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        bufsize=0,
        env=ENV,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    proc.stdin.write(INIT)
    line = proc.stdout.readline()
    elapsed = (time.perf_counter() - t0) * 1e3
    assert b'"result"' in line, line
    proc.stdin.close()
    proc.wait(30)
    return elapsed


def measure(mode: str, policy: Path, reps: int, quick: bool, req: bytes) -> dict[str, Any]:
    pin = mode == "pinned"
    everywhere = os.sched_getaffinity(0)
    if pin:  # the driver (this process) too: every process of the chain on CPU 0
        os.sched_setaffinity(0, {0})
    try:
        return _measure(pin, policy, reps, quick, req)
    finally:
        os.sched_setaffinity(0, everywhere)


def _measure(pin: bool, policy: Path, reps: int, quick: bool, req: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for payload, (n_lat, n_tp) in ((0, (3000, 20000)), (102400, (600, 2000))):
        if quick:
            n_lat, n_tp = n_lat // 10, n_tp // 10
        runs: dict[str, list[dict[str, float]]] = {"direct": [], "proxy": []}
        for _ in range(reps):
            for kind in ("direct", "proxy"):  # interleaved so drift hits both alike
                runs[kind].append(run_chain(chain(kind, payload, policy, pin), n_lat, n_tp, req))
        for kind, rs in runs.items():
            out[(kind, payload)] = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
    starts: dict[str, list[float]] = {"direct": [], "proxy": []}
    for _ in range(3 if quick else 10):
        for kind in ("direct", "proxy"):
            starts[kind].append(startup_ms(chain(kind, 0, policy, pin)))
    out["startup"] = {k: statistics.median(v) for k, v in starts.items()}
    return out


def table(mode: str, r: dict[str, Any]) -> str:
    rows = [
        f"### {mode}",
        "",
        "| measure | direct | via aip-proxy | added | ratio to direct | target | ok |",
        "|---|---|---|---|---|---|---|",
    ]
    for payload, label in ((0, "small"), (102400, "100 KB")):
        d, p = r[("direct", payload)], r[("proxy", payload)]
        for key, name in (("p50_us", "p50 µs"), ("p99_us", "p99 µs")):
            added = p[key] - d[key]
            ok = "yes" if added <= TARGETS[key] else "NO"
            rows.append(
                f"| {label} {name} (1 in flight) | {d[key]:.1f} | {p[key]:.1f} | "
                f"+{added:.1f} | {p[key] / d[key]:.2f}x | added ≤ {TARGETS[key]:.0f} | {ok} |"
            )
        ratio = p["tp_per_s"] / d["tp_per_s"]
        ok = "yes" if ratio >= TARGETS["tp_ratio"] else "NO"
        rows.append(
            f"| {label} calls/s (64 in flight) | {d['tp_per_s']:,.0f} | {p['tp_per_s']:,.0f} "
            f"| | {ratio:.2f}x | ≥ 0.30x | {ok} |"
        )
    s = r["startup"]
    added = s["proxy"] - s["direct"]
    ok = "yes" if added <= TARGETS["startup_ms"] else "NO"
    rows.append(
        f"| start-up to first initialize, ms | {s['direct']:.1f} | {s['proxy']:.1f} | "
        f"+{added:.1f} | {s['proxy'] / s['direct']:.2f}x | added ≤ 200 | {ok} |"
    )
    for payload, label in ((0, "small"), (102400, "100 KB")):
        cpu = r[("proxy", payload)]["cpu_us_per_msg"]
        rows.append(f"| proxy CPU µs per {label} call (64 in flight) | | {cpu:.1f} | | | | |")
    rss = max(r[("proxy", 0)]["rss_mb"], r[("proxy", 102400)]["rss_mb"])
    ok = "yes" if rss <= TARGETS["rss_mb"] else "NO"
    rows.append(f"| proxy RSS without its child, MB | | {rss:.1f} | | | ≤ 35 | {ok} |")
    return "\n".join(rows)


def breakdown(policy: Path) -> str:
    """Per-call CPU of each stage of the allow path, in this process (best of 3 x 20,000)."""
    import logging

    import orjson

    from aip.proxy.audit.recorder import Recorder, record_decision
    from aip.proxy.relay import dlp_filter, downstream, upstream
    from aip.proxy.relay.session import Pending, Session
    from aip.proxy.stdio import Wire
    from aip.shared.jsonrpc import parse_line
    from aip.shared.outcomes import Outcome
    from aip.shared.policy.decision import Context
    from aip.shared.policy.engine import decide
    from aip.shared.policy.load import load_policy
    from aip.shared.policy.ratelimit import RateLimiter

    logging.disable(logging.WARNING)
    pol = load_policy(policy)
    null = os.open(os.devnull, os.O_WRONLY)
    ctx = Context(cwd="/", always_protected=(str(policy),))
    n = 20000

    def cost(fn: Any) -> float:
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            for i in range(n):
                fn(i)
            best = min(best, (time.perf_counter() - t0) / n * 1e6)
        return best

    dlp = dlp_filter.for_policy(pol)  # as the runner wires it: records pass the display scan

    def session(tag: str) -> Session:
        rec = Recorder(tag * 16, "bench", pol.name, pol.sha256, "enforce", "bench", null)
        rec.redact, rec.scan = dlp.display_value, dlp.display_scan
        return Session(
            policy=pol,
            limiter=RateLimiter(),
            context=ctx,
            recorder=rec,
            host=Wire(null, "host"),
            server=Wire(null, "server"),
            agent_id_fixed=True,
        )

    line, rel = REQ % 1, REQ_RELATIVE % 1
    msg, msg_rel = orjson.loads(line), orjson.loads(rel)
    lim = RateLimiter()
    rec = session("a").recorder
    args = msg["params"]["arguments"]
    up = session("b")
    counter = iter(range(10**9))

    def relay_up(_: int) -> None:
        j = next(counter)
        upstream.handle_line(up, REQ % j)
        up.take_pending(j)

    resp = b'{"jsonrpc":"2.0","id":%d,"result":{"content":[{"type":"text","text":"ok"}]}}\n'
    down = session("c")

    def relay_down(i: int) -> None:
        down._pending[i] = Pending("tools/call", "read_file")
        downstream.relay_server_line(down, resp % i)

    rows = [
        ("parse + strict checks (jsonrpc)", cost(lambda i: parse_line(line))),
        ("engine.decide, absolute path argument", cost(lambda i: decide(pol, msg, lim, ctx))),
        ("engine.decide, relative path argument", cost(lambda i: decide(pol, msg_rel, lim, ctx))),
        ("DLP display scan of the arguments", cost(lambda i: dlp.display_scan(args))),
        (
            "decision record (display scan + audit spool write)",
            cost(
                lambda i: record_decision(
                    rec, Outcome.POLICY_ALLOWED, tool="read_file", arguments=args, request_id=i
                )
            ),
        ),
        ("whole client -> server step (parse, decide, record, relay)", cost(relay_up)),
        ("whole server -> client step", cost(relay_down)),
    ]
    out = ["| stage of an allowed small call | CPU µs |", "|---|---|"]
    out += [f"| {name} | {us:.2f} |" for name, us in rows]
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--serve", type=int, metavar="PAYLOAD", help=argparse.SUPPRESS)
    ap.add_argument("--pin", action="store_true", help="pin every process to CPU 0")
    ap.add_argument("--both", action="store_true", help="run unpinned, then pinned")
    ap.add_argument("--reps", type=int, default=3, help="runs per chain (median is reported)")
    ap.add_argument("--quick", action="store_true", help="10x fewer messages (smoke test)")
    ap.add_argument(
        "--breakdown", action="store_true", help="also time each stage of the allow path"
    )
    ap.add_argument(
        "--relative-path",
        action="store_true",
        help="call with a relative path: no protected-path check in the engine",
    )
    ap.add_argument("--sandbox", choices=["require", "auto", "off"], help="the proxy's --sandbox")
    ns = ap.parse_args()
    if ns.serve is not None:
        serve(ns.serve)
        return 0
    if (ns.pin or ns.both) and not shutil.which("taskset"):
        sys.exit("--pin needs taskset (util-linux)")
    modes = ["unpinned", "pinned"] if ns.both else ["pinned" if ns.pin else "unpinned"]
    print(
        f"# aip-proxy benchmark ({os.cpu_count()} CPUs, python {sys.version.split()[0]}, "
        f"load {os.getloadavg()[0]:.2f}, {ns.reps} reps, median)\n"
    )
    with tempfile.TemporaryDirectory(prefix="aip-bench-") as tmp:
        policy = write_policy(Path(tmp))
        ENV.update(os.environ)
        ENV["XDG_STATE_HOME"] = tmp
        ENV["AIP_APPROVER_ENDPOINT"] = f"ipc://{tmp}/no-approver.sock"
        if ns.sandbox:
            ENV["AIP_SANDBOX"] = ns.sandbox
        for mode in modes:
            req = REQ_RELATIVE if ns.relative_path else REQ
            label = f"{mode}, relative path argument" if ns.relative_path else mode
            label += f", sandbox {ENV.get('AIP_SANDBOX', 'require')}"
            print(table(label, measure(mode, policy, ns.reps, ns.quick, req)) + "\n", flush=True)
        if ns.breakdown:
            os.environ["XDG_STATE_HOME"] = tmp  # the records' audit spool goes here too
            print("### where a small allowed call spends its CPU (in-process)\n")
            print(breakdown(policy) + "\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
