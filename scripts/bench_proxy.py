#!/usr/bin/env python3
"""Benchmark aip-proxy (alone, and with a running aip-approver) beside a direct pipe and peers.

Every chain talks to the same echo MCP server (this file with ``--serve``) through the same
driver, in one run, round after round (chains alternate inside a round; medians of rounds):

  direct              the driver's pipe straight to the echo server (the physical limit)
  aip-proxy           aip-proxy --policy <20 rules> -- SERVER; no approver listens, so its
                      audit records wait in its spool (HMAC-signed lines, ranges of rseqs)
  aip-proxy+approver  the same with a real aip-approver started by this script: every
                      record goes to it and is written to its central audit log
  PEER                each --peer "CMD ...": any other stdio proxy. CMD is split like a shell
                      line; "{server}" in it is replaced by the echo server's command line
                      (shell-quoted, then the line is split), else that command line is
                      appended (CMD ... SERVER ARGS). Quote {server} when the peer wants it
                      as one argument. The peer's own policy is the user's to supply.
                      e.g. --peer "socat -b262144 STDIO 'EXEC:{server}'"
                           --peer "/opt/aip-go/aip --policy /tmp/p.yaml --target"

Per chain: p50/p99 round trip of a small allowed tools/call (1 in flight) and what it adds to
direct, calls/s with 64 in flight (and its ratio to direct), start-up to the first answered
``initialize`` (median of starts, minus direct), RSS after 1, 1,000 and 100,000 calls (the
chain's processes minus the echo server: proxy plus any helper it runs, such as bwrap).

    scripts/bench_proxy.py --pin --rounds 5          # every process on CPU 0: stable ratios
    scripts/bench_proxy.py --both                    # unpinned, then pinned
    scripts/bench_proxy.py --sandbox off             # proxy without its kernel sandbox
    scripts/bench_proxy.py --no-approver --large     # skip the approver; add 100 KB results
    scripts/bench_proxy.py --breakdown               # CPU per stage of the allow path
    scripts/bench_proxy.py --pin --as-user alice     # as root: run it all as a normal user

Start-up is also measured for ``--sandbox off`` when the sandbox is on (bwrap's own cost), and
for each aip-proxy chain in-process (``AIP_FORK_SERVER=off``) beside the default start through
the per-user fork server (this script's own, in a runtime folder of its own, stopped at the
end). The CPU figure of a start through the fork server adds the forked session's CPU to the
launcher's (``aip-proxy`` itself).
Targets (issue 16) are checked at the end. Not a timed test; see README "Performance".
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shlex
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


class VariedReq(bytes):
    """A request whose arguments differ on every call (the id is also in the path): no
    memo of identical arguments can help. ``req % i`` fills both places."""

    def __mod__(self, i: object) -> bytes:
        return bytes.__mod__(self, (i, i))


# --varied: what a real agent sends more often than the same call again.
REQ_VARIED = VariedReq(
    b'{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"read_file",'
    b'"arguments":{"path":"/home/user/project/src/mod_%d.py","encoding":"utf-8"}}}\n'
)
INIT = (
    b'{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18",'
    b'"capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}\n'
)
# As an MCP client says it after the initialize answer: the proxy then connects to the approver.
INITIALIZED = b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n'
# Filled in by main(): proxies spool their audit records under a private state directory, not
# the user's ~/.local/state, and look for an approver where none listens (see Chain.env).
ENV: dict[str, str] = {}
# --as-user: every process of every chain (and the approver) runs as that user (setpriv).
AS_USER: list[str] = []
LARGE = 102400


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


CONTENDED_PCT = 20.0  # CPU pressure (some, avg10) over which a run's figures do not compare


def host_load() -> str:
    """The load averages and, where the kernel has PSI, the CPU pressure ("some": the share of
    time a runnable task waited for a CPU, avg10 / avg60). This host is a VM whose speed drifts:
    pressure while it is idle is time its CPU went elsewhere, and a run under it is not
    comparable with one without (a run at 49 % gave half the calls/s, issue 16's notes)."""
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    try:
        with open("/proc/pressure/cpu") as f:
            some = dict(kv.split("=") for kv in f.readline().split()[1:])
    except (OSError, ValueError):
        return f"load {load}"
    avg10, avg60 = float(some.get("avg10", 0)), float(some.get("avg60", 0))
    warn = " (contended: not comparable)" if avg10 > CONTENDED_PCT else ""
    return f"load {load}, CPU pressure {avg10:.1f} / {avg60:.1f} %{warn}"


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100.0
    f = int(k)
    c = min(f + 1, len(xs) - 1)
    return xs[f] + (xs[c] - xs[f]) * (k - f)


class Chain:
    """One thing to measure: a name, how to start it for a payload, and its environment."""

    def __init__(self, name: str, prefix: list[str] | str, env: dict[str, str]) -> None:
        self.name, self.prefix, self.env = name, prefix, env

    def cmd(self, payload: int, pin: bool) -> list[str]:
        server = [sys.executable, str(HERE), "--serve", str(payload)]
        if isinstance(self.prefix, str):  # a --peer command line
            if "{server}" in self.prefix:
                cmd = shlex.split(self.prefix.replace("{server}", shlex.join(server)))
            else:
                cmd = [*shlex.split(self.prefix), *server]
        else:
            cmd = [*self.prefix, *server]
        cmd = [*AS_USER, *cmd]
        return ["taskset", "-c", "0", *cmd] if pin else cmd


def proxy_argv(policy: Path) -> list[str]:
    # The console script next to this interpreter (a pyenv shim would add its own start-up).
    exe = Path(sys.executable).parent / "aip-proxy"
    proxy = [str(exe)] if exe.exists() else [sys.executable, "-m", "aip.proxy"]
    return [*proxy, "--policy", str(policy), "--"]


def chain(kind: str, payload: int, policy: Path, pin: bool) -> list[str]:
    """``direct`` or ``proxy`` (kept for scripts/bench_dlp_proxy.py)."""
    return Chain(kind, [] if kind == "direct" else proxy_argv(policy), ENV).cmd(payload, pin)


def _start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        bufsize=0,
        env=env,
    )


def run_chain(
    cmd: list[str],
    n_lat: int,
    n_tp: int,
    req: bytes = REQ,
    window: int = 64,
    env: dict[str, str] | None = None,
) -> dict[str, float]:
    proc = _start(cmd, ENV if env is None else env)
    assert proc.stdin is not None
    assert proc.stdout is not None
    wfd = proc.stdin.fileno()
    rd = io.BufferedReader(proc.stdout, buffer_size=1 << 20)  # type: ignore[arg-type]
    res: dict[str, float] = {}
    os.write(wfd, INIT)
    if b'"result"' not in rd.readline():
        raise RuntimeError(f"no answer to initialize from {shlex.join(cmd)}")
    os.write(wfd, INITIALIZED)
    i = 1
    for _ in range(300):  # warm-up
        os.write(wfd, req % i)
        line = rd.readline()
        i += 1
    if not (line.startswith(b'{"jsonrpc":"2.0","id":') and b'"result"' in line[:40]):
        raise RuntimeError(f"the benchmarked call was not allowed: {line[:200]!r}")
    import psutil  # here, so the echo server (this file with --serve) starts light

    # taskset execs, so proc.pid is the chain's first process: the proxy, or the direct server;
    # started through the fork server, the proxy's work is done by its session
    session = _newest_session()
    top = session if session is not None else psutil.Process(proc.pid)
    pc = time.perf_counter_ns
    lat = []
    cpu0 = top.cpu_times()
    for _ in range(n_lat):
        t0 = pc()
        os.write(wfd, req % i)
        if not rd.readline():
            raise RuntimeError("EOF")
        lat.append(pc() - t0)
        i += 1
    cpu1 = top.cpu_times()
    res["p50_us"] = pct(lat, 50) / 1e3
    res["p99_us"] = pct(lat, 99) / 1e3
    spent = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    res["cpu_us_per_call_1"] = spent / n_lat * 1e6  # one in flight: no burst shares the cost
    cpu0 = top.cpu_times()
    t_start = pc()
    pipeline(wfd, rd, req, i, n_tp, window)
    res["tp_per_s"] = n_tp / ((pc() - t_start) / 1e9)
    cpu1 = top.cpu_times()
    spent = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    res["cpu_us_per_msg"] = spent / n_tp * 1e6  # of the first process (user + system)
    res["rss_mb"] = top.memory_info().rss / 2**20
    proc.stdin.close()
    proc.wait(30)
    return res


def pipeline(
    wfd: int, rd: io.BufferedReader, req: bytes, first: int, n: int, window: int = 64
) -> None:
    """``n`` calls with ``window`` in flight (ids from ``first``)."""
    sent = 0
    for _ in range(min(window, n)):
        os.write(wfd, req % (first + sent))
        sent += 1
    for _ in range(n):
        if not rd.readline():
            raise RuntimeError("EOF")
        if sent < n:
            os.write(wfd, req % (first + sent))
            sent += 1


def thread_ns(pid: int) -> dict[str, int]:
    """ns on the CPU of each live thread of ``pid``, by thread id (schedstat's first field:
    psutil's cpu_times and /proc's stat count 10 ms ticks, ~0.5 us per call over 20,000
    calls). A thread that just ended is left out."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with (
            contextlib.suppress(OSError, ValueError),
            open(f"/proc/{pid}/task/{tid}/schedstat") as f,
        ):
            out[tid] = int(f.read().split()[0])
    return out


def chain_memory_mb(pid: int) -> tuple[float, float, float]:
    """(RSS, PSS) of ``pid`` and its descendants except the echo server (``--serve``), plus
    the session the fork server forked for it (and the session's tree): the launcher and the
    session together are what a start through the fork server costs. PSS counts a page
    shared by n processes as 1/n: the fork server's pages its sessions share, and the
    interpreter's file pages every Python process maps, count once over all of them. Third:
    the RSS of the proxy's own processes (the chain without bwrap's two, ~3 MB of RSS)."""
    import psutil

    top = psutil.Process(pid)
    total = pss = own = 0
    family = [top, *top.children(recursive=True)]
    session = _newest_session()  # the one serving ``pid``
    if session is not None:
        with contextlib.suppress(psutil.Error):
            family += [session, *session.children(recursive=True)]
    for p in family:
        with contextlib.suppress(psutil.Error):
            if p.cmdline()[1:3] == [str(HERE), "--serve"]:
                continue
            full = p.memory_full_info()
            total += full.rss
            pss += full.pss
            if p.name() != "bwrap":
                own += full.rss
    return total / 2**20, pss / 2**20, own / 2**20


def rss_run(
    cmd: list[str], env: dict[str, str], marks: list[int], req: bytes
) -> list[tuple[float, float, float]]:
    """(RSS, PSS, proxy RSS) (chain_memory_mb) after each count of answered calls in
    ``marks`` (64 in flight)."""
    proc = _start(cmd, env)
    assert proc.stdin is not None
    assert proc.stdout is not None
    wfd = proc.stdin.fileno()
    rd = io.BufferedReader(proc.stdout, buffer_size=1 << 20)  # type: ignore[arg-type]
    os.write(wfd, INIT)
    if b'"result"' not in rd.readline():
        raise RuntimeError(f"no answer to initialize from {shlex.join(cmd)}")
    os.write(wfd, INITIALIZED)
    out, done = [], 0
    for mark in marks:
        pipeline(wfd, rd, req, done + 1, mark - done, 64)
        done = mark
        out.append(chain_memory_mb(proc.pid))
    proc.stdin.close()
    proc.wait(30)
    return out


def startup_ms(
    cmd: list[str], env: dict[str, str] | None = None, cpu: list[float] | None = None
) -> float:
    """Wall ms to the first answered initialize; ``cpu`` gets the first process's CPU ms by
    then (user + system: less sensitive to other work on the machine than the wall time)."""
    t0 = time.perf_counter()
    proc = _start(cmd, ENV if env is None else env)
    assert proc.stdin is not None
    assert proc.stdout is not None
    proc.stdin.write(INIT)
    line = proc.stdout.readline()
    elapsed = (time.perf_counter() - t0) * 1e3
    if b'"result"' not in line:
        proc.kill()
        proc.wait(30)
        raise RuntimeError(f"no answer to initialize from {shlex.join(cmd)}: {line[:200]!r}")
    if cpu is not None:
        import psutil

        times = psutil.Process(proc.pid).cpu_times()
        ms = (times.user + times.system) * 1e3
        session = _newest_session()  # the session forked for this start
        if session is not None:
            with contextlib.suppress(psutil.Error):
                t = session.cpu_times()
                ms += (t.user + t.system) * 1e3
        cpu.append(ms)
    proc.stdin.close()
    proc.wait(30)
    return elapsed


def _fork_servers() -> list[Any]:
    """This run's fork servers (found by the runtime folder in their command line)."""
    import psutil

    run = ENV.get("XDG_RUNTIME_DIR", "")
    found = []
    for p in psutil.process_iter(["cmdline"]):
        line = " ".join(p.info["cmdline"] or [])
        if run and run in line and "aip.proxy.forkserver" in line:
            found.append(p)
    return found


def _newest_session() -> Any:
    """The session forked last by this run's fork server (the one serving the chain that just
    started), or None. Not every child of the server is a session: it is a subreaper, so the
    sandbox processes of a session that just ended may be its children for a moment."""
    import psutil

    newest = None
    for server in _fork_servers():
        with contextlib.suppress(psutil.Error):
            for child in server.children():
                with contextlib.suppress(psutil.Error):
                    if child.cmdline() == server.cmdline() and (
                        newest is None or child.create_time() > newest.create_time()
                    ):
                        newest = child
    return newest


def wait_for_fork_server(timeout_s: float = 30.0) -> bool:
    folder = Path(ENV["XDG_RUNTIME_DIR"]) / "aip"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for path in folder.glob("fork-*.sock") if folder.is_dir() else []:
            import socket

            with (
                socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s,
                contextlib.suppress(OSError),
            ):
                s.connect(str(path))
                return True
        time.sleep(0.05)
    return False


def stop_fork_servers() -> None:
    import psutil

    servers = _fork_servers()
    for p in servers:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    psutil.wait_procs(servers, timeout=10)


@contextlib.contextmanager
def approver(tmp: Path, pin: bool) -> Iterator[tuple[str, Path]]:
    """A real aip-approver (its endpoint and audit log); it never gets an ask here."""
    run = Path(tempfile.mkdtemp(prefix="aip-b-", dir="/tmp"))  # ipc paths are short
    endpoint, audit, log = f"ipc://{run}/approver.sock", tmp / "audit.jsonl", tmp / "approver.log"
    deny = tmp / "deny.sh"
    deny.write_text("#!/bin/sh\nexit 1\n")
    deny.chmod(0o755)
    if AS_USER:
        os.chown(run, *_owner(tmp))
    argv = [
        *AS_USER,
        sys.executable,
        "-m",
        "aip.approver",
        "--endpoint",
        endpoint,
        "--dialog",
        f"exec:{deny}",
    ]
    env = {**ENV, "AIP_AUDIT_LOG": str(audit)}
    with log.open("wb") as err:
        proc = subprocess.Popen(
            (["taskset", "-c", "0"] if pin else []) + argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while "aip-approver ready" not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the approver did not start:\n{log.read_text()}")
            time.sleep(0.02)
        yield endpoint, audit
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        shutil.rmtree(run, ignore_errors=True)


def as_user(name: str, tmp: Path, run: str) -> None:
    """--as-user: run every chain as ``name`` (root only), in folders it owns."""
    import pwd

    if os.geteuid() != 0:
        sys.exit("--as-user needs root (it runs the chains through setpriv)")
    try:
        user = pwd.getpwnam(name)
    except KeyError:
        sys.exit(f"--as-user: no user {name!r}")
    AS_USER[:] = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups"]
    for path in (tmp, *tmp.iterdir(), Path(run)):
        os.chown(path, user.pw_uid, user.pw_gid)
    ENV["HOME"] = str(tmp)
    probe = subprocess.run(
        [*AS_USER, sys.executable, "-c", f"import aip.proxy; open({str(HERE)!r}).close()"],
        capture_output=True,
        text=True,
        env=ENV,
    )
    if probe.returncode != 0:
        sys.exit(
            f"--as-user {name}: cannot run {sys.executable} with aip and {HERE}:\n"
            f"{probe.stderr.strip()[-500:]}"
        )


def _owner(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_uid, st.st_gid


def count_records(audit: Path) -> int:
    try:
        return audit.read_bytes().count(b'"event":"decision"')
    except FileNotFoundError:
        return 0


def measure(chains: list[Chain], ns: argparse.Namespace, pin: bool, req: bytes) -> dict[str, Any]:
    everywhere = os.sched_getaffinity(0)
    if pin:  # the driver (this process) too: every process of the chain on CPU 0
        os.sched_setaffinity(0, {0})
    try:
        return _measure(chains, ns, pin, req)
    finally:
        os.sched_setaffinity(0, everywhere)


def _measure(chains: list[Chain], ns: argparse.Namespace, pin: bool, req: bytes) -> dict[str, Any]:
    scale = 10 if ns.quick else 1
    out: dict[str, Any] = {}
    payloads = ((0, (3000, 20000)), (LARGE, (600, 2000)))[: 2 if ns.large else 1]
    runs: dict[tuple[str, int], list[dict[str, float]]] = {}
    for _ in range(ns.rounds):
        for payload, (n_lat, n_tp) in payloads:
            for c in chains:  # alternating inside each round: drift hits every chain alike
                r = run_chain(c.cmd(payload, pin), n_lat // scale, n_tp // scale, req, env=c.env)
                runs.setdefault((c.name, payload), []).append(r)
    for key, rs in runs.items():
        out[key] = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
    starters = [*chains]
    off = [
        c for c in chains if c.name.startswith("aip-proxy") and c.env.get("AIP_SANDBOX") != "off"
    ]
    if off:
        starters.append(
            Chain(
                f"{off[0].name}, sandbox off", off[0].prefix, {**off[0].env, "AIP_SANDBOX": "off"}
            )
        )
    starters += [  # the same starts without the fork server
        Chain(f"{c.name}, in-process", c.prefix, {**c.env, "AIP_FORK_SERVER": "off"})
        for c in list(starters)
        if c.name.startswith("aip-proxy")
    ]
    starts: dict[str, list[float]] = {}
    cpus: dict[str, list[float]] = {}
    for _ in range(max(3, ns.starts // scale)):
        for c in starters:
            cpu = cpus.setdefault(c.name, [])
            starts.setdefault(c.name, []).append(startup_ms(c.cmd(0, pin), c.env, cpu))
    out["startup"] = {k: statistics.median(v) for k, v in starts.items()}
    out["startup_cpu"] = {k: statistics.median(v) for k, v in cpus.items()}
    marks = [1, 1000, ns.rss_calls // scale]
    rss: dict[str, list[list[tuple[float, float, float]]]] = {}
    for _ in range(ns.rss_rounds):
        for c in chains[1:]:
            rss.setdefault(c.name, []).append(rss_run(c.cmd(0, pin), c.env, marks, req))
    for key, at in (("rss", 0), ("pss", 1), ("proxy_rss", 2)):
        out[key] = {
            k: [statistics.median(r[i][at] for r in v) for i in range(3)] for k, v in rss.items()
        }
    out["marks"] = marks
    return out


def main() -> int:
    sys.path.insert(0, str(HERE.parent))
    from bench_proxy_report import table, verdicts

    ap = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        epilog=(__doc__ or "").split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--serve", type=int, metavar="PAYLOAD", help=argparse.SUPPRESS)
    ap.add_argument("--pin", action="store_true", help="pin every process to CPU 0 (taskset)")
    ap.add_argument("--both", action="store_true", help="run unpinned, then pinned")
    ap.add_argument("--rounds", "--reps", type=int, default=3, help="rounds (medians reported)")
    ap.add_argument("--starts", type=int, default=10, help="start-ups per chain (median)")
    ap.add_argument("--rss-calls", type=int, default=100_000, help="last RSS mark (calls)")
    ap.add_argument("--rss-rounds", type=int, default=1, help="RSS runs per chain (median)")
    ap.add_argument("--quick", action="store_true", help="10x fewer calls and starts (smoke)")
    ap.add_argument("--large", action="store_true", help="also 100 KB results (p50, calls/s)")
    ap.add_argument("--no-approver", action="store_true", help="skip aip-proxy+approver")
    ap.add_argument(
        "--peer",
        action="append",
        default=[],
        metavar="CMD",
        help='another stdio proxy: "CMD ..." (+ server argv, or where {server} is)',
    )
    ap.add_argument("--breakdown", action="store_true", help="CPU per stage of the allow path")
    ap.add_argument(
        "--relative-path",
        action="store_true",
        help="call with a relative path: no protected-path check in the engine",
    )
    ap.add_argument(
        "--varied",
        action="store_true",
        help="every call's arguments differ (the id is in the path): nothing memoised helps",
    )
    ap.add_argument("--sandbox", choices=["require", "auto", "off"], help="the proxy's --sandbox")
    ap.add_argument(
        "--as-user",
        metavar="USER",
        help="run every chain as USER (root only): the fork-server start a normal user gets",
    )
    ns = ap.parse_args()
    if ns.serve is not None:
        serve(ns.serve)
        return 0
    if (ns.pin or ns.both) and not shutil.which("taskset"):
        sys.exit("--pin needs taskset (util-linux)")
    modes = [False, True] if ns.both else [ns.pin]
    req = REQ_RELATIVE if ns.relative_path else REQ_VARIED if ns.varied else REQ
    print(
        f"# aip-proxy benchmark ({os.cpu_count()} CPUs, python {sys.version.split()[0]}, "
        f"{host_load()}, {ns.rounds} rounds, median)\n"
    )
    with tempfile.TemporaryDirectory(prefix="aip-bench-") as tmp:
        policy = write_policy(Path(tmp))
        ENV.update(os.environ)
        # Measured as installed (pip compiles bytecode): with this set, every start of an
        # editable install would compile every module again (~0.5 s here).
        ENV.pop("PYTHONDONTWRITEBYTECODE", None)
        ENV["XDG_STATE_HOME"] = tmp
        ENV["AIP_APPROVER_ENDPOINT"] = f"ipc://{tmp}/no-approver.sock"
        run = tempfile.mkdtemp(prefix="aip-bfs-", dir="/tmp")  # the fork server's socket: short
        ENV["XDG_RUNTIME_DIR"] = run
        if ns.sandbox:
            ENV["AIP_SANDBOX"] = ns.sandbox
        if ns.as_user:
            as_user(ns.as_user, Path(tmp), run)
        for pin in modes:
            with contextlib.ExitStack() as stack:
                chains = [Chain("direct", [], ENV), Chain("aip-proxy", proxy_argv(policy), ENV)]
                if not ns.no_approver:
                    endpoint, audit = stack.enter_context(approver(Path(tmp), pin))
                    env = {**ENV, "AIP_APPROVER_ENDPOINT": endpoint}
                    chains.append(Chain("aip-proxy+approver", proxy_argv(policy), env))
                names: set[str] = set()
                for cmd in ns.peer:
                    name = Path(shlex.split(cmd)[0]).name
                    while name in names or name.startswith(("direct", "aip-proxy")):
                        name += "'"
                    names.add(name)
                    chains.append(Chain(name, cmd, ENV))
                for c in chains:  # a clear error now rather than a traceback later
                    try:
                        startup_ms(c.cmd(0, pin), c.env)
                    except (RuntimeError, OSError) as exc:
                        sys.exit(f"{c.name}: {exc}")
                if os.geteuid() == 0 and not AS_USER:
                    print("(root: the fork server serves no process with capabilities, so every")
                    print(" start here is in-process; --as-user USER measures it)\n")
                elif ENV.get("AIP_FORK_SERVER", "on") != "off" and not wait_for_fork_server():
                    print("(no fork server started: every start is in-process)\n")
                r = measure(chains, ns, pin, req)
                label = "pinned (taskset -c 0)" if pin else "unpinned"
                label += f", sandbox {ENV.get('AIP_SANDBOX', 'require')}"
                if ns.relative_path:
                    label += ", relative path argument"
                if ns.varied:
                    label += ", arguments differ per call"
                print(table(label, [c.name for c in chains], r, ns.large) + "\n")
                if not ns.no_approver:
                    print(f"(the approver's audit log holds {count_records(audit):,} records)\n")
                print(verdicts(r) + "\n", flush=True)
        print(f"after: {host_load()}\n")
        stop_fork_servers()
        shutil.rmtree(run, ignore_errors=True)
        if ns.breakdown:
            os.environ["XDG_STATE_HOME"] = tmp  # the records' audit spool goes here too
            from bench_proxy_report import breakdown

            print("### where a small allowed call spends its CPU (in-process)\n")
            print(breakdown(policy) + "\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
