#!/usr/bin/env python3
"""What compiling the per-call path with mypyc would buy (issue 16): a reproducible spike.

Copies this checkout's HEAD (``git archive``) to a scratch folder, compiles there with mypyc
the modules a small allowed ``tools/call`` runs through (MODULES: parse, engine.decide, the
decision record with its DLP display scan and HMAC spool line, the relay), and measures the
pure checkout against the compiled copy, alternating in one run (A, B, A, B, ...):

  in-process   bench_proxy_report.breakdown (CPU per stage, best of 3 x 20,000), each side in
               a fresh interpreter; the "no-ops" row is not valid compiled (it monkeypatches
               module functions, which compiled callers in the same group call directly)
  real process bench_proxy.run_chain on the real aip-proxy (no approver, --pin): proxy CPU
               per call (1 in flight), p50, calls/s and CPU per call with 64 in flight;
               medians of rounds and of the paired B/A ratios

  --ceiling    also C: the pure aip-proxy with engine.decide memoised to its first answer and
               the decision record a no-op (not a proxy anyone may run: it audits nothing).
               The most that any compiled decide + record, from any compiler, could save.
  --tests      then runs tests/shared and tests/proxy against the compiled copy: the list of
               what behaves differently compiled (see README "Performance")

Nothing here changes how aip is built or installed: the package stays pure Python. Needs
mypy (the dev extra), setuptools, gcc and the Python headers (Debian: python3-dev).

    scripts/bench_compiled.py --rounds 10           # about 4 minutes here, plus the build
    scripts/bench_compiled.py --keep /tmp/c --tests --ceiling
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from operator import truediv
from pathlib import Path

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
PARTS = ("proxy", "shared", "approver")  # the source roots (pyproject dev-mode-dirs)

# The per-call path (cProfile of the client -> server step, then of the server -> client one).
# Left out: policy/nosymlinks.py (its time is the openat2 syscall through ctypes) and
# jsontext.py (its _Number subclasses str: mypyc wants mypy_extensions.mypyc_attr at run time).
_PROXY = ("relay/upstream", "relay/downstream", "relay/session", "relay/dlp_filter", "stdio")
_PROXY_AUDIT = ("audit/recorder", "audit/outbox")
_SHARED = (
    "jsonrpc",
    *(f"policy/{m}" for m in ("engine", "authorize", "decision", "protected", "names")),
    *(f"policy/{m}" for m in ("protected_resolve", "regexes")),
    *(f"audit/{m}" for m in ("record", "spool", "spool_line", "stamp", "rseqs")),
    *(f"dlp/{m}" for m in ("encoding", "precheck", "walk", "prefilter", "redactor", "scan")),
)
MODULES = [f"proxy/aip/proxy/{m}.py" for m in (*_PROXY, *_PROXY_AUDIT)]
MODULES += [f"shared/aip/shared/{m}.py" for m in _SHARED]

BUILD = """
import sys
from setuptools import Distribution
from mypyc.build import mypycify
d = Distribution({"name": "aip-compiled-spike", "ext_modules": mypycify(sys.argv[1:])})
d.get_command_obj("build_ext").build_lib = "build/lib"
d.run_command("build_ext")
"""

BREAKDOWN = """
import os, sys, tempfile
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import bench_proxy, bench_proxy_report
tmp = Path(tempfile.mkdtemp(prefix="aip-bench-"))
os.environ["XDG_STATE_HOME"] = str(tmp)
print(bench_proxy_report.breakdown(bench_proxy.write_policy(tmp)))
"""

CEILING = """
import sys
from aip.proxy.relay import session, upstream
real, memo = upstream.engine.decide, []
def decide(*args):
    if not memo:
        memo.append(real(*args))
    return memo[0]
upstream.engine.decide = decide
session.record_decision = lambda *args, **kwargs: None
from aip.proxy.cli import main
sys.exit(main())
"""


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def build(copy: Path) -> None:
    """HEAD into ``copy``, MODULES compiled there; each extension next to its source."""
    copy.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD"], capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(copy)], input=archive.stdout, check=True)
    subprocess.run(["chmod", "-R", "go-w", str(copy)], check=True)  # policies must not be
    done = subprocess.run([sys.executable, "-c", BUILD, *MODULES], cwd=copy, capture_output=True)
    if done.returncode != 0:
        sys.exit(f"mypyc build failed:\n{done.stdout.decode()[-3000:]}{done.stderr.decode()}")
    lib = copy / "build" / "lib"
    for so in lib.rglob("*.so"):
        rel = so.relative_to(lib)
        part = rel.parts[1] if len(rel.parts) > 2 else "shared"  # the group library: anywhere
        shutil.copy2(so, copy / part / rel)  # on sys.path


def breakdown(env: dict[str, str]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", BREAKDOWN, str(HERE.parent)], env=env, capture_output=True
    )
    if out.returncode != 0:
        sys.exit(out.stderr.decode())
    rows = [line.strip("|").rsplit("|", 1) for line in out.stdout.decode().splitlines()[2:]]
    return {name.strip(): float(us) for name, us in rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10, help="A/B rounds (medians reported)")
    ap.add_argument("--calls", type=int, default=10_000, help="calls 1 in flight per round")
    ap.add_argument("--keep", type=Path, help="build the compiled copy here and keep it")
    ap.add_argument("--tests", action="store_true", help="run tests/shared, tests/proxy on B")
    ap.add_argument("--ceiling", action="store_true", help="C: decide memoised, no record")
    ns = ap.parse_args()
    sys.path.insert(0, str(HERE.parent))
    import bench_proxy as bp

    with tempfile.TemporaryDirectory(prefix="aip-compiled-") as tmp:
        copy = ns.keep or Path(tmp) / "copy"
        print(f"# building the compiled copy in {copy} (load {load()})", flush=True)
        build(copy)
        env_a = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env_a.pop("PYTHONPATH", None)
        env_a.update(XDG_STATE_HOME=tmp, AIP_APPROVER_ENDPOINT=f"ipc://{tmp}/none.sock")
        env_b = {**env_a, "PYTHONPATH": os.pathsep.join(str(copy / p) for p in PARTS)}
        sides = {"A pure": env_a, "B compiled": env_b}
        for name, env in sides.items():  # each side runs what it says
            where = subprocess.run(
                [sys.executable, "-c", "import aip.proxy.relay.upstream as m; print(m.__file__)"],
                env=env,
                capture_output=True,
            ).stdout.decode()
            if where.strip().endswith(".so") != name.endswith("compiled"):
                sys.exit(f"{name} would import aip.proxy.relay.upstream from {where}")
        policy = bp.write_policy(Path(tmp))
        cmd = bp.chain("proxy", 0, policy, True)
        runs = {name: (cmd, env) for name, env in sides.items()}
        if ns.ceiling:
            stub = [sys.executable, "-c", CEILING, "--policy", str(policy), "--"]
            runs["C ceiling"] = (bp.Chain("ceiling", stub, env_a).cmd(0, True), env_a)
        print(f"# load before {load()}; {ns.rounds} rounds, {', '.join(runs)} in each\n")
        real: dict[str, list[dict[str, float]]] = {k: [] for k in runs}
        hot: dict[str, list[dict[str, float]]] = {k: [] for k in sides}
        for r in range(ns.rounds):
            for name, (argv, env) in runs.items():
                real[name].append(bp.run_chain(argv, ns.calls, 20_000, env=env))
                if r < 3 and name in sides:
                    hot[name].append(breakdown(env))
        others = [k for k in runs if k != "A pure"]
        print(f"| real aip-proxy, pinned (load after {load()}) | {' | '.join(runs)} | ", end="")
        print(" | ".join(f"{k[0]}/A" for k in others) + " |")
        print("|---" * (1 + len(runs) + len(others)) + "|")
        for key, what in (
            ("cpu_us_per_call_1", "proxy CPU µs per call, 1 in flight"),
            ("p50_us", "round trip p50 µs"),
            ("tp_per_s", "calls/s, 64 in flight"),
            ("cpu_us_per_msg", "proxy CPU µs per call, 64 in flight"),
        ):
            got = {k: [x[key] for x in v] for k, v in real.items()}
            cells = [f"{statistics.median(v):.1f}" for v in got.values()]
            base = got["A pure"]  # medians of the ratios paired in each round
            cells += [f"{statistics.median(map(truediv, got[k], base)):.2f}" for k in others]
            print(f"| {what} | {' | '.join(cells)} |")
        print("\n| in-process stage (best of 3, median of 3 runs) | A µs | B µs | B/A |")
        print("|---|---|---|---|")
        for stage in hot["A pure"][0]:
            a, b = (statistics.median(x[stage] for x in hot[k]) for k in sides)
            print(f"| {stage} | {a:.2f} | {b:.2f} | {b / a:.2f} |")
        if ns.tests:
            print(f"\n# tests/shared and tests/proxy against the compiled copy (load {load()})")
            pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2"]
            subprocess.run([*pytest, "tests/shared", "tests/proxy"], cwd=copy, env=env_b)
    return 0


if __name__ == "__main__":
    sys.exit(main())
