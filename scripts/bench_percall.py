#!/usr/bin/env python3
"""Where a lone call's time goes in the real aip-proxy process: per thread, per call.

One small allowed ``tools/call`` at a time (the next one sent when the answer is read), the
chain of scripts/bench_proxy.py (echo server, 20-rule policy, no approver listening), every
process pinned to CPU 0 unless ``--no-pin``. Per call, for each relay thread: CPU (µs, from
/proc/PID/task/TID/schedstat: nanoseconds, not 10 ms ticks), voluntary and involuntary
context switches, and with ``--syscalls`` (needs ``perf``) its system calls and futex calls
counted by tracepoints (strace's own cost distorts both: every traced syscall took 7-17 µs,
and the threads then contend for the GIL, which showed ~1.8 futex calls per call that do not
happen untraced). Also the echo server's and this driver's CPU, p50 and p99.

    scripts/bench_percall.py                              # this checkout, 3 rounds
    scripts/bench_percall.py --base /tmp/main --rounds 5  # paired A/B with another tree
    scripts/bench_percall.py --wake      # a small job on a thread woken by a pipe, cold vs warm

``--base DIR``: a checkout (e.g. ``git archive main | tar -x -C DIR``) run through
PYTHONPATH, alternating with this one inside every round (order swapped each round); medians
of rounds. Say the load (printed) with any figure. Not a timed test.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_proxy as bp

EVENTS = "raw_syscalls:sys_enter,syscalls:sys_enter_futex"
READV = "19"  # x86-64 syscall number, as /proc/PID/task/TID/syscall shows a blocked thread


def threads(pid: int) -> dict[int, tuple[int, int, int, list[str]]]:
    """tid -> (CPU ns, voluntary switches, involuntary switches, current syscall fields)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        base = f"/proc/{pid}/task/{tid}"
        try:
            ns = int(Path(f"{base}/schedstat").read_text().split()[0])
            status = Path(f"{base}/status").read_text()
            call = Path(f"{base}/syscall").read_text().split()
        except OSError:
            continue
        vol = int(status.split("\nvoluntary_ctxt_switches:")[1].split()[0])
        invol = int(status.split("nonvoluntary_ctxt_switches:")[1].split()[0])
        out[int(tid)] = (ns, vol, invol, call)
    return out


def role(call: list[str], stdin_fd: str = "0x0") -> str:
    """relay-up reads the agent's stdin (fd 0), relay-down the server's stdout."""
    if call[:1] == [READV]:
        return "up" if call[1] == stdin_fd else "down"
    return "other"


def perf_counts(path: Path) -> dict[int, dict[str, float]]:
    counts: dict[int, dict[str, float]] = {}
    for row in path.read_text().splitlines():
        parts = row.split(",")
        if len(parts) < 4 or not parts[1].replace(".", "").isdigit():
            continue
        tid = int(parts[0].rsplit("-", 1)[1])
        counts.setdefault(tid, {})[parts[3]] = float(parts[1])
    return counts


def run(pythonpath: str, n: int, pin: bool, syscalls: bool, tmp: Path) -> dict[str, float]:
    env = dict(bp.ENV)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    proc = bp._start(bp.chain("proxy", 0, tmp / "bench-20.yaml", pin), env)
    assert proc.stdin is not None
    assert proc.stdout is not None
    wfd = proc.stdin.fileno()
    rd = io.BufferedReader(proc.stdout, buffer_size=1 << 20)  # type: ignore[arg-type]
    os.write(wfd, bp.INIT)
    rd.readline()
    os.write(wfd, bp.INITIALIZED)
    for i in range(1, 500):  # warm-up
        os.write(wfd, bp.REQ % i)
        rd.readline()
    time.sleep(0.05)  # every thread back in its blocking call: roles readable
    import psutil

    server = psutil.Process(proc.pid).children(recursive=True)[-1].pid
    before = threads(proc.pid)
    roles = {tid: role(v[3]) for tid, v in before.items()}
    perf, out = None, tmp / "perf.csv"
    if syscalls:
        argv = ["perf", "stat", "--per-thread", "-x,", "-e", EVENTS, "-p", str(proc.pid)]
        perf = subprocess.Popen([*argv, "-o", str(out)], stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # attached
    s0 = int(Path(f"/proc/{server}/schedstat").read_text().split()[0])
    lat, pc, c0 = [], time.perf_counter_ns, time.process_time_ns()
    for i in range(500, 500 + n):
        t0 = pc()
        os.write(wfd, bp.REQ % i)
        rd.readline()
        lat.append(pc() - t0)
    res = {"driver_us": (time.process_time_ns() - c0) / n / 1e3}
    s1 = int(Path(f"/proc/{server}/schedstat").read_text().split()[0])
    if perf is not None:
        perf.send_signal(signal.SIGINT)
        perf.wait(30)
    after = threads(proc.pid)
    proc.stdin.close()
    proc.wait(30)
    res |= {"p50_us": bp.pct(lat, 50) / 1e3, "p99_us": bp.pct(lat, 99) / 1e3}
    res["server_us"] = (s1 - s0) / n / 1e3
    counts = perf_counts(out) if perf is not None else {}
    res["proxy_us"] = 0.0
    for tid, (ns, vol, invol, _) in after.items():
        if tid not in before:
            continue
        name = roles[tid]
        add = {
            f"{name}_us": (ns - before[tid][0]) / n / 1e3,
            f"{name}_vcs": (vol - before[tid][1]) / n,
            f"{name}_ics": (invol - before[tid][2]) / n,
        }
        if counts:
            add[f"{name}_syscalls"] = counts.get(tid, {}).get("raw_syscalls:sys_enter", 0) / n
            add[f"{name}_futex"] = counts.get(tid, {}).get("syscalls:sys_enter_futex", 0) / n
        for k, v in add.items():
            res[k] = res.get(k, 0.0) + v
        res["proxy_us"] += add[f"{name}_us"]
    return res


COLUMNS = [
    ("p50_us", "p50 µs"),
    ("p99_us", "p99 µs"),
    ("proxy_us", "proxy CPU µs"),
    ("up_us", "relay-up µs"),
    ("down_us", "relay-down µs"),
    ("other_us", "other threads µs"),
    ("up_vcs", "up vol. sw"),
    ("up_ics", "up invol. sw"),
    ("down_vcs", "down vol. sw"),
    ("down_ics", "down invol. sw"),
    ("up_syscalls", "up syscalls"),
    ("down_syscalls", "down syscalls"),
    ("up_futex", "up futex"),
    ("down_futex", "down futex"),
    ("server_us", "echo server µs"),
    ("driver_us", "driver µs"),
]


def wake_cost(rounds: int = 3000, sweeps: tuple[int, ...] = (0, 10_000, 100_000)) -> str:
    """Why a thread's wake-up for a small job costs far more than the job: CPU of a thread
    that wakes on a pipe, does a small relay-like job (slice, dict, find) and answers, when
    the waking thread first walks ``sweep`` ints and ``sweep / 10`` dicts (~36 bytes per int:
    what a driver, a server and the other relay thread touch between two calls on one CPU)."""
    import threading

    rows = ["| objects walked between round trips | woken thread's CPU µs per round trip |"]
    rows.append("|---|---|")
    for sweep in sweeps:
        a_r, a_w = os.pipe()
        b_r, b_w = os.pipe()

        def echo(a_r: int = a_r, b_w: int = b_w) -> None:
            buf = bytearray(4096)
            while (k := os.readv(a_r, [buf])) and buf[0] != 0x71:
                data = bytes(buf[:k])
                job = {"line": data, "at": data.find(b"\n"), "id": [1, 2, 3]}
                os.write(b_w, job["line"])

        ints, dicts = list(range(sweep)), [{i: i} for i in range(sweep // 10)]
        thread = threading.Thread(target=echo)
        thread.start()
        path = f"/proc/self/task/{thread.native_id}/schedstat"
        total = 0
        for i in range(rounds + 100):
            if i == 100:  # warm
                total = -int(Path(path).read_text().split()[0])
            sum(ints)
            sum(len(d) for d in dicts)
            os.write(a_w, b"x\n")
            os.read(b_r, 4096)
        total += int(Path(path).read_text().split()[0])
        os.write(a_w, b"q\n")
        thread.join()
        for fd in (a_r, a_w, b_r, b_w):
            os.close(fd)
        rows.append(f"| {sweep:,} ints + {sweep // 10:,} dicts | {total / rounds / 1e3:.1f} |")
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--calls", type=int, default=5000, help="lone calls per run")
    ap.add_argument("--rounds", type=int, default=3, help="rounds (medians reported)")
    ap.add_argument("--base", type=Path, help="another checkout to compare with (A/B)")
    ap.add_argument("--no-pin", action="store_true", help="do not pin to CPU 0")
    ap.add_argument("--syscalls", action="store_true", help="count syscalls per thread (perf)")
    ap.add_argument("--wake", action="store_true", help="only the thread wake-up experiment")
    ns = ap.parse_args()
    pin = not ns.no_pin
    if ns.wake:
        if pin:
            os.sched_setaffinity(0, {0})
        print(f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}, pin {pin}\n")
        print(wake_cost())
        return 0
    here = str(Path(__file__).resolve().parent.parent)
    trees = [("this tree", "")]
    if ns.base is not None:
        base = ns.base.resolve()
        trees.append(
            (f"base {base}", ":".join(str(base / p) for p in ("proxy", "shared", "approver")))
        )
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"# lone calls: {ns.calls} per run, {ns.rounds} rounds, pin {pin}, load {load} ({here})\n"
    )
    if pin:
        os.sched_setaffinity(0, {0})
    runs: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="aip-percall-") as tmp:
        bp.write_policy(Path(tmp))
        bp.ENV.update(os.environ)
        bp.ENV.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: compiled modules
        bp.ENV["XDG_STATE_HOME"] = tmp
        bp.ENV["AIP_APPROVER_ENDPOINT"] = f"ipc://{tmp}/no-approver.sock"
        for r in range(ns.rounds):
            for name, path in trees if r % 2 == 0 else trees[::-1]:
                res = run(path, ns.calls, pin, ns.syscalls, Path(tmp))
                runs.setdefault(name, []).append(res)
                print(f"round {r + 1} {name}: p50 {res['p50_us']:.1f} proxy {res['proxy_us']:.1f}")
    cols = [(k, h) for k, h in COLUMNS if all(k in r for rs in runs.values() for r in rs)]
    print("\n| per lone call (median of rounds) | " + " | ".join(runs) + " |")
    print("|---|" + "---|" * len(runs))
    for key, head in cols:
        cells = [f"{statistics.median(r[key] for r in rs):.2f}" for rs in runs.values()]
        print(f"| {head} | " + " | ".join(cells) + " |")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\nload after: {load}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
