#!/usr/bin/env python3
"""What an approver costs a proxy chain, in CPU per call: a figure that holds on a loaded machine.

scripts/bench_proxy.py's calls/s and p99 are wall-clock: with other work on the machine they
move by 2x between rounds. Here every process of the chain is charged its CPU time (user +
system) per call: the driver (this process), the proxy (and per thread), the echo server and
the approver, the approver's until its audit log holds every record of the phase (records it
writes after the calls ended are its cost all the same). Phases: one call in flight, then 64.
Pinned (every process on CPU 0), "x alone" is the calls/s ratio the chain would reach if
CPU-bound: alone's CPU per call over this chain's.

    scripts/bench_approver_cpu.py --rounds 3
    scripts/bench_approver_cpu.py --base /path/to/other-venv   # A/B: that venv's aip-proxy
                                                               # and aip-approver as well

Chains: ``alone`` (no approver listens; records wait in the spool), ``approver`` (this
interpreter's aip-proxy and a real aip-approver), and with ``--base`` the same pair from that
virtual environment (another checkout installed there), alternating inside each round.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_proxy as bp  # the echo server, policy, driver and request


@contextlib.contextmanager
def approver(bindir: Path, tmp: Path, tag: str, pin: bool) -> Iterator[tuple[str, Path, int]]:
    """An aip-approver from ``bindir`` (endpoint, audit log, pid), as bench_proxy starts one."""
    run = Path(tempfile.mkdtemp(prefix="aip-c-", dir="/tmp"))  # ipc paths are short
    endpoint, audit = f"ipc://{run}/approver.sock", tmp / f"audit-{tag}.jsonl"
    log, deny = tmp / f"approver-{tag}.log", tmp / "deny.sh"
    deny.write_text("#!/bin/sh\nexit 1\n")
    deny.chmod(0o755)
    argv = [str(bindir / "python"), "-m", "aip.approver", "--endpoint", endpoint]
    argv += ["--dialog", f"exec:{deny}"]
    with log.open("wb") as err:
        proc = subprocess.Popen(
            (["taskset", "-c", "0"] if pin else []) + argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**bp.ENV, "AIP_AUDIT_LOG": str(audit)},
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while "aip-approver ready" not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the approver did not start:\n{log.read_text()}")
            time.sleep(0.02)
        yield endpoint, audit, proc.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
        shutil.rmtree(run, ignore_errors=True)


WARM_UP = 300


def cpu_s(pid: int) -> float:
    """CPU seconds of every live thread of ``pid``."""
    return sum(bp.thread_ns(pid).values()) / 1e9


class Records:
    """Decision records in an audit log, counted as it grows (reading only what was appended:
    re-reading the whole log every poll would charge the driver megabytes per phase). The
    file stays open, so a rotation (64 MB: ~100,000 records, the 11th run of a chain) is
    followed: the renamed file is read to its end, then the new one from its start."""

    def __init__(self, audit: Path) -> None:
        self.audit, self.count, self.rest = audit, 0, b""
        self.fh: io.BufferedReader | None = None

    def now(self) -> int:
        while True:
            if self.fh is None:
                try:
                    self.fh = self.audit.open("rb")
                except FileNotFoundError:
                    return self.count
            self._take(self.fh.read())
            try:
                rotated = os.stat(self.audit).st_ino != os.fstat(self.fh.fileno()).st_ino
            except FileNotFoundError:  # between the rename and the new file
                rotated = False
            if not rotated:
                return self.count
            self._take(self.fh.read())  # complete once renamed: the rotate record was last
            self.close()

    def _take(self, data: bytes) -> None:
        data = self.rest + data
        cut = data.rfind(b"\n") + 1
        self.count += data[:cut].count(b'"event":"decision"')
        self.rest = data[cut:]

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None

    def wait(self, want: int, limit_s: float) -> None:
        deadline = time.monotonic() + limit_s
        while self.now() < want:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.audit}: fewer than {want} records after {limit_s} s")
            time.sleep(0.02)


def run(
    cmd: list[str], env: dict[str, str], audit: Records | None, apid: int | None, ns: Any
) -> dict[str, dict[str, float]]:
    proc = bp._start(cmd, env)
    assert proc.stdin is not None
    assert proc.stdout is not None
    wfd = proc.stdin.fileno()
    rd = io.BufferedReader(proc.stdout, buffer_size=1 << 20)  # type: ignore[arg-type]
    os.write(wfd, bp.INIT)
    rd.readline()
    os.write(wfd, bp.INITIALIZED)
    written = audit.now() if audit is not None else 0  # earlier runs' (all in)
    bp.pipeline(wfd, rd, bp.REQ, 1, WARM_UP, 1)
    written += WARM_UP
    kids = psutil.Process(proc.pid).children(recursive=True)
    out: dict[str, dict[str, float]] = {}
    first = WARM_UP + 1
    for phase, n, window in (("1", ns.calls_1, 1), ("64", ns.calls_64, 64)):
        if audit is not None:  # what came before is not charged to this phase
            audit.wait(written, 60)
        t0, k0, m0 = bp.thread_ns(proc.pid), [cpu_s(k.pid) for k in kids], time.process_time()
        a0 = cpu_s(apid) if apid else 0.0
        start = time.monotonic()
        bp.pipeline(wfd, rd, bp.REQ, first, n, window)
        wall = time.monotonic() - start
        first += n
        written += n
        m1 = time.process_time()  # the driver's: before it polls the log
        if audit is not None:
            audit.wait(written, 60)  # the approver's catch-up is its cost too
        t1, k1 = bp.thread_ns(proc.pid), [cpu_s(k.pid) for k in kids]
        a1 = cpu_s(apid) if apid else 0.0
        per = 1e6 / n
        threads = {t: (c - t0.get(t, 0)) / 1e9 * per for t, c in t1.items()}
        row = {
            "proxy": sum(threads.values()),
            "approver": (a1 - a0) * per,
            "echo": sum(b - a for a, b in zip(k0, k1, strict=True)) * per,
            "driver": (m1 - m0) * per,
            "wall calls/s": n / wall,
        }
        row["total"] = row["proxy"] + row["approver"] + row["echo"] + row["driver"]
        out[phase] = row
    proc.stdin.close()
    proc.wait(30)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        epilog=(__doc__ or "").split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--rounds", type=int, default=3, help="rounds (medians reported)")
    ap.add_argument("--calls-1", type=int, default=2000, help="calls with one in flight")
    ap.add_argument("--calls-64", type=int, default=8000, help="calls with 64 in flight")
    ap.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin to CPU 0")
    ap.add_argument("--base", type=Path, help="another venv: its aip-proxy + aip-approver too")
    ap.add_argument(
        "--per-round",
        action="store_true",
        help="also each round's row (rounds are bimodal: an outbox overflow episode costs the "
        "proxy ~10 us per call more, which a median hides)",
    )
    ns = ap.parse_args()
    ours = Path(sys.executable).parent
    load = bp.host_load()
    print(f"# CPU per call of the chain ({os.cpu_count()} CPUs, {load}, {ns.rounds} rounds)")
    with tempfile.TemporaryDirectory(prefix="aip-bench-") as name, contextlib.ExitStack() as st:
        tmp = Path(name)
        policy = bp.write_policy(tmp)
        bp.ENV.update(os.environ)
        bp.ENV.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed (see bench_proxy)
        bp.ENV["XDG_STATE_HOME"] = name
        bp.ENV["AIP_APPROVER_ENDPOINT"] = f"ipc://{name}/no-approver.sock"

        def chain(bindir: Path, endpoint: str | None) -> tuple[list[str], dict[str, str]]:
            env = {**bp.ENV, **({"AIP_APPROVER_ENDPOINT": endpoint} if endpoint else {})}
            argv = [str(bindir / "aip-proxy"), "--policy", str(policy), "--"]
            return bp.Chain("x", argv, env).cmd(0, ns.pin), env

        chains: list[tuple[str, list[str], dict[str, str], Records | None, int | None]] = []
        chains.append(("alone", *chain(ours, None), None, None))
        for tag, bindir in [("base", ns.base / "bin")] if ns.base else []:
            endpoint, audit, pid = st.enter_context(approver(bindir, tmp, tag, ns.pin))
            records = Records(audit)
            st.callback(records.close)
            chains.append((f"{tag}+approver", *chain(bindir, endpoint), records, pid))
        endpoint, audit, pid = st.enter_context(approver(ours, tmp, "ours", ns.pin))
        records = Records(audit)
        st.callback(records.close)
        chains.append(("approver", *chain(ours, endpoint), records, pid))
        if ns.pin:
            os.sched_setaffinity(0, {0})
        runs: dict[str, list[dict[str, dict[str, float]]]] = {}
        for _ in range(ns.rounds):
            for label, cmd, env, audit_log, apid in chains:  # alternating: drift hits all
                runs.setdefault(label, []).append(run(cmd, env, audit_log, apid, ns))
    for phase in ("1", "64"):
        print(f"\n### {phase} in flight: CPU µs per call (medians)\n")
        print("| chain | total | x alone | proxy | approver | echo | driver | wall calls/s |")
        print("|---|---|---|---|---|---|---|---|")
        alone = statistics.median(r[phase]["total"] for r in runs["alone"])
        for label, rs in runs.items():
            m = {k: statistics.median(r[phase][k] for r in rs) for k in rs[0][phase]}
            print(
                f"| {label} | {m['total']:.1f} | {alone / m['total']:.2f} | {m['proxy']:.1f} |"
                f" {m['approver']:.1f} | {m['echo']:.1f} | {m['driver']:.1f} |"
                f" {m['wall calls/s']:.0f} |"
            )
        if ns.per_round:
            print("\n| chain, round | total | proxy | approver | echo | driver | wall calls/s |")
            print("|---|---|---|---|---|---|---|")
            for label, rs in runs.items():
                for i, r in enumerate(rs, 1):
                    x = r[phase]
                    print(
                        f"| {label} {i} | {x['total']:.1f} | {x['proxy']:.1f} |"
                        f" {x['approver']:.1f} | {x['echo']:.1f} | {x['driver']:.1f} |"
                        f" {x['wall calls/s']:.0f} |"
                    )
    print(f"\nafter: {bp.host_load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
