"""Run every benchmark in scripts/ one after the other and gather their tables into one report,
``bench-results/REPORT.md`` (git-ignored), which is also printed.

Each script measures its own baseline in the same run (direct pipe vs proxy, bare ZeroMQ echo
vs ask, orjson vs DLP, ...) and prints markdown; this runner adds the machine, the commit, the
command line, the wall time and the exit status of each. Short settings by default (a few
minutes in all); ``--full`` for the long ones. ``--only NAME`` runs some of them.

    scripts/bench [--full] [--only bench_proxy --only bench_idle] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# script -> (short arguments, full arguments). Scripts not present are skipped and named.
BENCHES: dict[str, tuple[list[str], list[str]]] = {
    "bench_engine.py": (["--rounds", "10000"], []),
    "bench_dlp.py": (["--seconds", "0.2"], ["--seconds", "1"]),
    "bench_proxy.py": (["--quick", "--reps", "1"], ["--both"]),
    "bench_dlp_proxy.py": (["--quick", "--reps", "1"], []),
    "bench_ask.py": (["--asks", "100", "--sessions", "50"], []),
    "bench_audit.py": (["--reps", "1", "--messages", "30", "--durable-n", "100"], []),
    "bench_ingest.py": (["--rounds", "3", "--messages", "50"], ["--rounds", "7"]),
    "bench_idle.py": (["--asks", "100"], ["--asks", "500"]),
}
TIMEOUT_S = {"short": 600, "full": 3600}


def machine() -> list[str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    load = os.getloadavg()
    return [
        f"- date: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}",
        f"- commit: {commit or '?'}{' (working tree has changes)' if dirty else ''}",
        f"- machine: {os.cpu_count()} CPU ({cpu}), {platform.system()} {platform.release()}",
        f"- python: {platform.python_version()}; load before the run: "
        + " / ".join(f"{x:.2f}" for x in load),
    ]


def run_one(script: str, args: list[str], timeout_s: float) -> tuple[int | str, float, str]:
    t0 = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / script), *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else ""
        return "timeout", time.monotonic() - t0, out
    text = done.stdout
    if done.returncode != 0 and done.stderr:
        text += "\n```\n" + done.stderr[-3000:] + "\n```\n"
    return done.returncode, time.monotonic() - t0, text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true", help="long settings (tens of minutes)")
    ap.add_argument("--only", action="append", default=[], metavar="NAME")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-results")
    args = ap.parse_args()
    mode = "full" if args.full else "short"
    wanted = [n if n.endswith(".py") else n + ".py" for n in args.only]
    unknown = [n for n in wanted if n not in BENCHES]
    if unknown:
        ap.error(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHES)}")
    selected = [n for n in BENCHES if not wanted or n in wanted]
    sections: list[str] = []
    rows: list[str] = []
    failed = 0
    for script in selected:
        if not (ROOT / "scripts" / script).exists():
            rows.append(f"| {script} | not present | - |")
            continue
        bench_args = BENCHES[script][1 if args.full else 0]
        print(f"running {script} {' '.join(bench_args)} ...", file=sys.stderr, flush=True)
        status, wall, text = run_one(script, bench_args, TIMEOUT_S[mode])
        ok = status == 0
        failed += 0 if ok else 1
        rows.append(f"| {script} | {'ok' if ok else f'FAILED ({status})'} | {wall:.0f} |")
        command = " ".join(["python", f"scripts/{script}", *bench_args])
        sections += [f"## {script}", "", f"`{command}`", "", text.strip() or "(no output)", ""]
    head = [f"# Benchmark report ({mode} settings)", "", *machine(), ""]
    head += [
        "Each benchmark measures its own baseline in the same run; ratios in its table are "
        "against that baseline. Numbers from a loaded 2-core VM are noisy: compare runs made "
        "on the same machine.",
        "",
        "| benchmark | status | wall s |",
        "|---|---|---|",
        *rows,
        "",
    ]
    report = "\n".join(head + sections) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "REPORT.md").write_text(report)
    print(report)
    print(f"(written to {args.out / 'REPORT.md'})", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
