#!/usr/bin/env python3
"""Benchmark remote approval (issue 14): the added ask latency of CURVE over a veth link
against the local ipc socket, both through the same real aip-approver with an instant
``exec:`` answer (a two-line sh script), measured in one run and interleaved (rounds of ipc,
then CURVE); plus the bare transports (a DEALER/ROUTER echo of a 300-byte frame: ipc, and
CURVE over the veth link), where the difference is not hidden by the dialog's fork and exec.

The approver runs in a "desktop" network namespace listening on 10.77.0.1; the CURVE client is
the proxy's real approval client (``make_approval_client``, paired with ``aipctl remote
pair|join``) in a "remote" namespace at 10.77.0.2; the ipc client is the same code on the
desktop side. Needs root (network namespaces). Prints p50/p99 per transport and the ratio.

    sudo python scripts/bench_remote.py [--asks 200] [--rounds 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.aipctl import AIPCTL, aipctl, quiet_env  # noqa: E402
from tests.support.approverproc import Approver, short_dir  # noqa: E402
from tests.support.netns import DESK_ADDR, veth_pair  # noqa: E402

CLIENT = r"""
import json, os, sys, threading, time
from aip.proxy.approval.api import AskRequest
from aip.proxy.approval.connect import make_approval_client
endpoint, n = (sys.argv[1] or None), int(sys.argv[2])
hello = {"session": os.urandom(8).hex(), "pid": os.getpid(), "agent_id": "bench",
         "server": "bench", "policy": {"name": "bench", "sha256": "0" * 64}}
client = make_approval_client(endpoint, hello)
times, outcomes = [], set()
for i in range(n + 10):
    done = threading.Event(); box = []
    req = AskRequest(request_id=i, tool="write_file", arguments={"path": "/tmp/x"},
                     rule="bench", digest="b" * 64, size=20)
    t0 = time.perf_counter()
    client.ask(req, lambda r: (box.append(r), done.set()))
    done.wait(30)
    if i >= 10:  # the first asks pay for the connection and the hello
        times.append(time.perf_counter() - t0)
        outcomes.add(box[0].outcome.value if box else "none")
client.close()
print(json.dumps({"times": times, "outcomes": sorted(outcomes)}))
"""


# The per-session ask budget (anti-fatigue, 12/min) would deny a benchmark's asks.
NO_BUDGET = ["--ask-rate", "1000000", "--ask-burst", "1000000"]


ECHO = r"""
import json, sys, time, zmq
role, endpoint, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = zmq.Context()
if role == "server":
    s = ctx.socket(zmq.ROUTER)
    if endpoint.startswith("tcp"):
        s.curve_server = True
        s.curve_publickey, s.curve_secretkey = sys.argv[4].encode(), sys.argv[5].encode()
    s.bind(endpoint)
    print("ready", flush=True)
    while True:
        route, body = s.recv_multipart()
        s.send_multipart([route, body])
d = ctx.socket(zmq.DEALER)
if endpoint.startswith("tcp"):
    d.curve_serverkey = sys.argv[4].encode()
    d.curve_publickey, d.curve_secretkey = zmq.curve_keypair()
d.connect(endpoint)
times = []
for i in range(n + 100):
    t0 = time.perf_counter(); d.send(b"x" * 300); d.recv()
    if i >= 100:
        times.append(time.perf_counter() - t0)
print(json.dumps(times))
"""


def echo(net: Any, folder: Path, n: int) -> tuple[list[float], list[float]]:
    """Bare round trips: ipc inside the desktop namespace, CURVE from the remote one."""
    import zmq

    public, secret = (k.decode() for k in zmq.curve_keypair())
    ipc, tcp = f"ipc://{folder}/echo.sock", f"tcp://{DESK_ADDR}:7451"
    servers = [
        subprocess.Popen(
            [*net.argv(net.desk), sys.executable, "-c", ECHO, "server", ep, "0", public, secret],
            stdout=subprocess.PIPE,
            text=True,
        )
        for ep in (ipc, tcp)
    ]
    try:
        for server in servers:
            assert server.stdout is not None
            server.stdout.readline()
        out = []
        for ns, ep in ((net.desk, ipc), (net.far, tcp)):
            done = subprocess.run(
                [*net.argv(ns), sys.executable, "-c", ECHO, "client", ep, str(n), public],
                capture_output=True,
                text=True,
                timeout=300,
                check=True,
            )
            out.append([float(t) for t in json.loads(done.stdout)])
        return out[0], out[1]
    finally:
        for server in servers:
            server.kill()
            server.wait()
            if server.stdout is not None:
                server.stdout.close()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_client(argv: list[str], endpoint: str, n: int, env: dict[str, str]) -> list[float]:
    done = subprocess.run(
        [*argv, sys.executable, "-c", CLIENT, endpoint, str(n)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    data = json.loads(done.stdout.strip().splitlines()[-1])
    if data["outcomes"] != ["human_approved"]:
        raise SystemExit(f"unexpected outcomes {data['outcomes']}: {done.stderr[-2000:]}")
    return [float(t) for t in data["times"]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--asks", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with short_dir() as folder, veth_pair() as net:
        desk_cfg, far_cfg = folder / "desk", folder / "far"
        base = {k: v for k, v in quiet_env().items() if k != "XDG_CONFIG_HOME"}
        desk_env = {**base, "XDG_CONFIG_HOME": str(desk_cfg)}
        far_env = {
            **base,
            "XDG_CONFIG_HOME": str(far_cfg),
            "XDG_STATE_HOME": tempfile.mkdtemp(dir=folder),
        }
        # A shell answer (no Python start-up): the dialog is as cheap as it can be, so what
        # differs between the transports is visible.
        prog = folder / "allow.sh"
        prog.write_text("#!/bin/sh\ncat >/dev/null\necho allow\n")
        prog.chmod(0o755)
        listen = f"tcp://{DESK_ADDR}:7450"
        with Approver(
            folder,
            f"exec:{prog}",
            timeout_s=30,
            env=desk_env,
            args=["--remote-listen", listen, *NO_BUDGET],
            wrap=net.argv(net.desk),
        ) as approver:
            approver.wait_ready()
            code = aipctl("remote", "pair", "bench", env=desk_env).stdout.strip().splitlines()[-1]
            joined = subprocess.run(
                net.argv(net.far, AIPCTL, "remote", "join", code),
                env=far_env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            if joined.returncode != 0:
                raise SystemExit(f"join failed: {joined.stderr}")
            ipc_env = {
                **desk_env,
                "PYTHONPATH": str(ROOT),
                "XDG_STATE_HOME": tempfile.mkdtemp(dir=folder),
            }
            curve_env = {**far_env, "PYTHONPATH": str(ROOT), "AIP_APPROVER_ENDPOINT": ""}
            curve_env.pop("AIP_APPROVER_ENDPOINT")
            ipc: list[float] = []
            curve: list[float] = []
            for _ in range(args.rounds):
                ipc += run_client(net.argv(net.desk), approver.endpoint, args.asks, ipc_env)
                curve += run_client(net.argv(net.far), "", args.asks, curve_env)
        echo_ipc, echo_curve = echo(net, folder, 2000)
    load = os.getloadavg()
    result: dict[str, Any] = {
        "load_1_5_15": [round(x, 2) for x in load],
        "ipc_p50_ms": round(pct(ipc, 0.5) * 1000, 3),
        "ipc_p99_ms": round(pct(ipc, 0.99) * 1000, 3),
        "curve_p50_ms": round(pct(curve, 0.5) * 1000, 3),
        "curve_p99_ms": round(pct(curve, 0.99) * 1000, 3),
        "n_each": len(ipc),
    }
    result["added_p50_ms"] = round(result["curve_p50_ms"] - result["ipc_p50_ms"], 3)
    result["ratio_p50"] = round(result["curve_p50_ms"] / result["ipc_p50_ms"], 3)
    result["echo_ipc_p50_us"] = round(pct(echo_ipc, 0.5) * 1e6, 1)
    result["echo_curve_p50_us"] = round(pct(echo_curve, 0.5) * 1e6, 1)
    result["echo_added_p50_us"] = round(result["echo_curve_p50_us"] - result["echo_ipc_p50_us"], 1)
    result["echo_ratio_p50"] = round(result["echo_curve_p50_us"] / result["echo_ipc_p50_us"], 2)
    for key, value in result.items():
        print(f"{key:>14}: {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
