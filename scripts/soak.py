"""Soak: N real proxies (each with a small JSON-RPC echo server) send a mix of allowed,
blocked and asked calls for D seconds against one real approver whose ``exec:`` answerer
allows or denies; then every call must have had exactly one answer and one audit record, no
two dialogs may ever have been open at once, and RSS must stay flat (issue 7).

Usage: scripts/soak [--proxies 100] [--seconds 600] [--think-ms 50] [--json FILE]
Local sockets only, everything in a private temporary directory, every process killed at the
end; it stops by itself (hard bound: seconds + 180 s). Prints a markdown report; exit 1 when a
check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from soak_report import KINDS, audit_files, audit_records, checks, pct, report, verify_chain

ROOT = Path(__file__).resolve().parents[1]
RAW_SERVER = ROOT / "tests" / "support" / "raw_server.py"
READY = "aip-approver ready"
WEIGHTS = (60, 20, 10, 10)
POLICY = """apiVersion: aip.io/v1alpha1
kind: AgentPolicy
metadata:
  name: soak
spec:
  allowed_tools: [read_file]
  denied_tools: [delete_file]
  tool_rules:
    - tool: write_file
      action: ask
"""
# The answerer: allow or deny as the request id says; a dialog that starts while another is
# still open (the lock is held) is recorded as an overlap.
ANSWER = r"""#!/bin/sh
read -r line
d="$AIP_SOAK_DIR"
exec 9>>"$d/dialog.lock"
flock -n 9 || echo "overlap $$" >> "$d/dialogs.log"
rid=$(printf '%s' "$line" | sed -n 's/.*"request_id": *"\([^"]*\)".*/\1/p')
echo "open $rid" >> "$d/dialogs.log"
case "$rid" in *-allow) ans=allow ;; *) ans=deny ;; esac
echo "$ans"
"""
EXPECT = {
    "allowed": ("result", None),
    "blocked": ("error", "denied_tool"),
    "ask-allow": ("result", None),
    "ask-deny": ("error", "denied_by_user"),
}


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    sent: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    extra_lines: int = 0
    request_ids: list[str] = field(default_factory=list)


def _private_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="aip-soak-", dir="/tmp"))  # short: ipc path limit
    for sub in ("run", "state", "logs"):
        (path / sub).mkdir(mode=0o700)
    return path


def _env(base: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIP_")}
    env["XDG_STATE_HOME"] = str(base / "state")  # audit log and proxy spools live here
    env["AIP_SOAK_DIR"] = str(base)
    return env


def start_approver(base: Path, timeout_s: float) -> subprocess.Popen[bytes]:
    answer = base / "answer.sh"
    answer.write_text(ANSWER)
    answer.chmod(0o755)
    argv = [sys.executable, "-m", "aip.approver", "--endpoint", f"ipc://{base}/run/a.sock"]
    argv += ["--dialog", f"exec:{answer}", "--timeout", str(timeout_s)]
    argv += ["--ask-rate", "1000000", "--ask-burst", "1000000"]  # load, not approval fatigue
    log = (base / "logs" / "approver.log").open("wb")
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        env=_env(base),
        start_new_session=True,
    )
    deadline = time.monotonic() + 20
    while READY not in (base / "logs" / "approver.log").read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(
                "approver did not start:\n" + (base / "logs" / "approver.log").read_text()
            )
        time.sleep(0.02)
    return proc


async def start_proxy(base: Path, index: int) -> asyncio.subprocess.Process:
    policy = base / "policy.yaml"
    exe = shutil.which("aip-proxy")
    cmd = [exe] if exe else [sys.executable, "-m", "aip.proxy"]
    cmd += ["--policy", str(policy), "--approver", f"ipc://{base}/run/a.sock"]
    cmd += ["--agent-id", f"soak-{index}", "--", sys.executable, str(RAW_SERVER)]
    with (base / "logs" / f"proxy-{index}.log").open("wb") as err:
        return await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
            env=_env(base),
            start_new_session=True,
            limit=1 << 22,
        )


async def _rpc(proc: asyncio.subprocess.Process, msg: dict[str, Any], stats: Stats) -> Any:
    assert proc.stdin is not None
    assert proc.stdout is not None
    proc.stdin.write(json.dumps(msg).encode() + b"\n")
    await proc.stdin.drain()
    while True:
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        if not line:
            raise RuntimeError("proxy closed its stdout")
        reply = json.loads(line)
        if "method" in reply:
            continue  # notifications (none expected; tolerated)
        if reply.get("id") != msg["id"]:
            stats.extra_lines += 1
            stats.unexpected.append(f"reply for another id: {line[:200]!r}")
            continue
        return reply


async def drive(
    proc: asyncio.subprocess.Process, index: int, until: float, think_s: float, stats: Stats
) -> None:
    rng = random.Random(index)
    await _rpc(
        proc,
        {
            "jsonrpc": "2.0",
            "id": f"init-{index}",
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "soak"},
            },
        },
        stats,
    )
    n = 0
    while time.monotonic() < until:
        kind = rng.choices(KINDS, WEIGHTS)[0]
        n += 1
        request_id = f"c{index}-{n}-{kind}"
        tool = {"allowed": "read_file", "blocked": "delete_file"}.get(kind, "write_file")
        msg = {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "tools/call",
            "params": {"name": tool, "arguments": {"path": f"/tmp/soak/{n}", "n": n}},
        }
        stats.sent[kind] += 1
        stats.request_ids.append(request_id)
        t0 = time.perf_counter()
        reply = await _rpc(proc, msg, stats)
        stats.latencies[kind].append(time.perf_counter() - t0)
        want, reason = EXPECT[kind]
        got_reason = reply.get("error", {}).get("data", {}).get("reason")
        if want not in reply or (reason is not None and got_reason != reason):
            stats.unexpected.append(f"{request_id}: {json.dumps(reply)[:200]}")
        if think_s:
            await asyncio.sleep(rng.uniform(0, 2 * think_s))
    assert proc.stdin is not None
    assert proc.stdout is not None
    proc.stdin.close()  # the agent leaves: the proxy must stop by itself
    rest = await asyncio.wait_for(proc.stdout.read(), 30)
    stats.extra_lines += sum(1 for line in rest.splitlines() if line.strip())
    await asyncio.wait_for(proc.wait(), 30)


async def sample_rss(
    approver: int, proxies: list[int], every_s: float, stop: asyncio.Event, rows: list[Any]
) -> None:
    t0 = time.monotonic()
    while True:
        with contextlib.suppress(TimeoutError):  # the first sample once everyone runs
            await asyncio.wait_for(stop.wait(), every_s)
        row: list[Any] = [round(time.monotonic() - t0)]
        try:
            row.append(psutil.Process(approver).memory_info().rss / 2**20)
        except psutil.Error:
            row.append(float("nan"))
        sizes = []
        for pid in proxies:
            with contextlib.suppress(psutil.Error):
                sizes.append(psutil.Process(pid).memory_info().rss / 2**20)
        row.append(sizes)
        rows.append(row)
        if stop.is_set():
            return


async def soak(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    (base / "policy.yaml").write_text(POLICY)
    (base / "policy.yaml").chmod(0o600)
    approver = start_approver(base, timeout_s=30)
    stats = Stats()
    procs: list[asyncio.subprocess.Process] = []
    rows: list[Any] = []
    try:
        procs = list(await asyncio.gather(*(start_proxy(base, i) for i in range(args.proxies))))
        until = time.monotonic() + args.seconds
        stop = asyncio.Event()
        sample = [p.pid for p in procs[: args.rss_sample]]
        sampler = asyncio.create_task(sample_rss(approver.pid, sample, args.sample_s, stop, rows))
        results = await asyncio.gather(
            *(drive(p, i, until, args.think_ms / 1000, stats) for i, p in enumerate(procs)),
            return_exceptions=True,
        )
        stop.set()
        await sampler
        failures = [
            f"proxy {i}: {r!r}" for i, r in enumerate(results) if isinstance(r, BaseException)
        ]
        # Proxy records reach the log in batches: wait (bounded) until each call has one.
        wanted = set(stats.request_ids)
        deadline = time.monotonic() + 30
        while True:
            seen = Counter(
                r.get("request_id") for r in audit_records(base) if r.get("event") == "decision"
            )
            if wanted <= set(seen) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
        approver.send_signal(signal.SIGTERM)
        try:
            approver.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(approver.pid, signal.SIGKILL)
    verify = await asyncio.to_thread(verify_chain, base)
    missing = sorted(wanted - set(seen))
    doubled = sorted(rid for rid in wanted if seen[rid] > 1)
    dialog_log = (base / "dialogs.log").read_text() if (base / "dialogs.log").exists() else ""
    opens = [line.split()[1] for line in dialog_log.splitlines() if line.startswith("open ")]
    overlaps = sum(1 for line in dialog_log.splitlines() if line.startswith("overlap"))
    asked = stats.sent["ask-allow"] + stats.sent["ask-deny"]
    return {
        "proxies": args.proxies,
        "seconds": args.seconds,
        "sent": dict(stats.sent),
        "calls": sum(stats.sent.values()),
        "latency_ms": {
            k: {"p50": pct(v, 0.5), "p99": pct(v, 0.99), "n": len(v)}
            for k, v in stats.latencies.items()
        },
        "unexpected": stats.unexpected[:20],
        "unexpected_count": len(stats.unexpected),
        "extra_lines": stats.extra_lines,
        "failures": failures[:20],
        "audit_missing": len(missing),
        "audit_missing_ids": missing[:20],
        "audit_doubled": len(doubled),
        "audit_files": len(audit_files(base)),
        "chain_verifies": verify.returncode == 0,
        "chain_verify_output": (verify.stdout + verify.stderr)[-500:],
        "dialogs": len(opens),
        "dialogs_doubled": len(opens) - len(set(opens)),
        "dialog_overlaps": overlaps,
        "asked": asked,
        "rss": [
            {
                "t": t,
                "approver_mb": round(a, 1),
                "proxy_mb": [round(min(s), 1), round(statistics.median(s), 1), round(max(s), 1)]
                if s
                else None,
            }
            for t, a, s in rows
        ],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--proxies", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--think-ms", type=float, default=50, help="mean pause between calls")
    ap.add_argument("--sample-s", type=float, default=0, help="RSS sampling (default D/10)")
    ap.add_argument("--rss-sample", type=int, default=5, help="proxies whose RSS is sampled")
    ap.add_argument("--json", type=Path, help="write the results here too")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    if not 1 <= args.proxies <= 500 or not 0 < args.seconds <= 7200:
        ap.error("1..500 proxies, 0..7200 seconds")
    args.sample_s = args.sample_s or max(1.0, args.seconds / 10)
    # Enough descriptors for every pipe and socket (each proxy costs the driver 2 fds).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    base = _private_dir()

    def give_up(signum: int, frame: object) -> None:
        raise SystemExit("soak: hard time bound reached")

    signal.signal(signal.SIGALRM, give_up)
    signal.alarm(int(args.seconds) + 180)
    try:
        results = asyncio.run(soak(args, base))
    finally:
        signal.alarm(0)
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    bad = checks(results)
    results["pass"] = not bad
    results["problems"] = bad
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(report(results, bad))
    if args.keep:
        print(f"\n(files kept in {base})")
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
