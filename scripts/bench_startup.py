#!/usr/bin/env python3
"""Paired A/B of aip-proxy's start-up: two (or more) installs, started alternately.

Each ``--venv DIR`` is a virtualenv with aip installed (``DIR/bin/aip-proxy``; e.g. one for a
clone of main, one for your work tree); without any, this interpreter's. Round after round,
every install starts the same echo MCP server (scripts/bench_proxy.py --serve) behind the same
20-rule policy, and once the server straight (the baseline). Per start:

  wall   ms from spawning aip-proxy to its answer to ``initialize`` (minus the direct server's
         median: the start-up aip-proxy adds)
  cpu    ms of CPU the proxy process used by then, every thread, from /proc/PID/task/*/schedstat
         (ns; psutil's cpu_times counts 10 ms ticks)
  rss    MB of the proxy process then, and ``--settle`` seconds later (lean.settle has run)

Medians (and the CPU's minimum) over ``--rounds``. Run as root (or with AIP_FORK_SERVER=off)
every start is in-process; as a normal user a start may go through the per-user fork server.
Compare within one run: other work on the machine moves every figure (the load is printed).

    scripts/bench_startup.py --venv /tmp/venv-main --venv /work/venv-me --rounds 20
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_proxy import INIT, host_load, thread_ns, write_policy

ECHO = [sys.executable, str(Path(__file__).resolve().parent / "bench_proxy.py"), "--serve", "0"]


def cpu_ms(pid: int) -> float:
    """CPU of every live thread of ``pid`` (schedstat: ns on the CPU)."""
    return sum(thread_ns(pid).values()) / 1e6


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def start(
    cmd: list[str], env: dict[str, str], settle_s: float
) -> tuple[float, float, float, float]:
    """(wall ms to the first answer, CPU ms by then, RSS MB then, RSS MB ``settle_s`` later)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    proc.stdin.write(INIT)
    proc.stdin.flush()
    line = proc.stdout.readline()
    wall = (time.perf_counter() - t0) * 1e3
    if b'"result"' not in line:
        proc.kill()
        proc.wait(30)
        sys.exit(f"no answer to initialize from {cmd[0]}: {line[:200]!r}")
    cpu, rss = cpu_ms(proc.pid), rss_mb(proc.pid)
    later = rss
    if settle_s:
        time.sleep(settle_s)
        later = rss_mb(proc.pid)
    proc.stdin.close()
    proc.wait(30)
    return wall, cpu, rss, later


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--venv", action="append", default=[], help="an install to start (repeat)")
    ap.add_argument("--rounds", type=int, default=15, help="starts per install")
    ap.add_argument("--settle", type=float, default=0.0, help="RSS again after SECONDS")
    ns = ap.parse_args()
    venvs = ns.venv or [str(Path(sys.executable).parent.parent)]
    load = host_load()
    with tempfile.TemporaryDirectory(prefix="aip-bench-start-") as tmp:
        policy = write_policy(Path(tmp))
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(
            XDG_STATE_HOME=tmp,
            XDG_RUNTIME_DIR=tmp,
            AIP_APPROVER_ENDPOINT=f"ipc://{tmp}/no-approver.sock",
        )
        cmds = {"direct": ECHO}
        for venv in venvs:
            proxy = str(Path(venv) / "bin" / "aip-proxy")
            cmds[venv] = [proxy, "--policy", str(policy), "--", *ECHO]
        runs: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in cmds}
        for _ in range(ns.rounds):
            for name, cmd in cmds.items():
                runs[name].append(start(cmd, env, 0.0 if name == "direct" else ns.settle))
    direct = statistics.median(r[0] for r in runs.pop("direct"))
    print(f"# aip-proxy start-up, {ns.rounds} starts each, alternating; {load} -> {host_load()}")
    print(f"direct echo server: {direct:.1f} ms to its first answer\n")
    print("| install | added start-up | CPU to the first answer (min) | RSS then | later |")
    print("|---|---|---|---|---|")
    for name, rows in runs.items():
        wall = statistics.median(r[0] for r in rows) - direct
        cpu = statistics.median(r[1] for r in rows)
        low = min(r[1] for r in rows)
        rss = statistics.median(r[2] for r in rows)
        later = f"{statistics.median(r[3] for r in rows):.1f} MB" if ns.settle else "-"
        print(f"| {name} | +{wall:.1f} ms | {cpu:.1f} ms ({low:.1f}) | {rss:.1f} MB | {later} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
