"""Child supervision with real process trees: nothing survives the proxy, a crashing server's
pending requests are answered, and the proxy exits with the server's code."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from tests.support.proxyproc import RAW_SERVER, ProxyProcess

Make = Callable[..., ProxyProcess]


def _wait_for_pids(path: Path, proxy: ProxyProcess, timeout: float = 10.0) -> list[int]:
    """The pids the server wrote, as this test sees them: in the sandbox the server sees its
    own PID namespace, so each is looked up among the proxy's descendants (NSpid)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline or proxy.proc.poll() is not None:
            raise AssertionError(f"server tree did not start; log:\n{proxy.log()}")
        time.sleep(0.01)  # polling a file the server writes, bounded by the deadline
    pids = json.loads(path.read_text())
    assert isinstance(pids, list)
    seen = {}
    for proc in proxy.descendants():
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{proc.pid}/status").read_text()
            nspid = next(line for line in status.splitlines() if line.startswith("NSpid:"))
            seen[int(nspid.split()[-1])] = proc.pid
    return [seen[int(p)] for p in pids]


def _assert_all_gone(pids: list[int]) -> None:
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(procs, timeout=3)
    alive = [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"survivors: {alive}"


@pytest.mark.parametrize("sandbox", ["require", "off"])
@pytest.mark.parametrize("how", ["stdin-eof", "sigterm", "sigint"])
def test_sigterm_ignoring_tree_is_fully_reaped(
    make_proxy: Make, tmp_path: Path, how: str, sandbox: str
) -> None:
    pidfile = tmp_path / "pids.json"
    p = make_proxy([*RAW_SERVER, "--mode", "tree", str(pidfile)], env={"AIP_SANDBOX": sandbox})
    pids = _wait_for_pids(pidfile, p)
    server, same_group, escaped = pids
    assert os.getpgid(same_group) == os.getpgid(server)
    assert os.getsid(escaped) == escaped != os.getsid(server)
    assert p.initialize()["result"]
    t0 = time.monotonic()
    if how == "stdin-eof":
        p.close_stdin()
    else:
        p.proc.send_signal(signal.SIGTERM if how == "sigterm" else signal.SIGINT)
    code = p.wait()
    # stdin grace + TERM grace (0.3 s each in tests), then SIGKILL for the whole tree
    assert time.monotonic() - t0 < 5
    assert code == 128 + signal.SIGKILL
    _assert_all_gone(pids)
    assert "ignored SIGTERM" in p.log()


def test_sigkilled_proxy_leaves_no_server_tree(make_proxy: Make, tmp_path: Path) -> None:
    """The proxy gets no chance to stop anything: the sandbox's --die-with-parent and PID
    namespace end the server, a same-group child and a setsid grandchild that ignore SIGTERM."""
    pidfile = tmp_path / "pids.json"
    p = make_proxy([*RAW_SERVER, "--mode", "tree", str(pidfile)], env={"AIP_SANDBOX": "require"})
    pids = _wait_for_pids(pidfile, p)
    assert os.getsid(pids[2]) == pids[2] != os.getsid(pids[0])  # the grandchild left with setsid
    assert p.initialize()["result"]
    p.proc.kill()
    assert p.wait() == -signal.SIGKILL
    _assert_all_gone(pids)


def test_well_behaved_server_exits_on_stdin_close(make_proxy: Make) -> None:
    p = make_proxy()
    p.initialize()
    t0 = time.monotonic()
    p.close_stdin()
    assert p.wait() == 0
    assert time.monotonic() - t0 < 2


def test_crash_mid_request_answers_pending_and_exits_with_its_code(make_proxy: Make) -> None:
    p = make_proxy([*RAW_SERVER, "--mode", "crash", "3"])
    p.initialize()
    reply = p.call(9, "read_file", {"path": "/tmp/a"})
    err = reply["error"]
    assert err["code"] == -32603
    assert err["message"] == "MCP server exited"
    assert err["data"]["reason"] == "server_exited"
    assert err["data"]["request_id"] == 9
    assert p.wait() == 3
    recs = [r for r in p.decisions() if r["outcome"] == "server_exited"]
    assert recs
    assert recs[0]["request_id"] == 9


def test_server_killed_by_signal_gives_128_plus_signal(make_proxy: Make) -> None:
    p = make_proxy()
    p.initialize()
    (server,) = [
        c
        for c in p.descendants()
        if c.name() != "bwrap" and "raw_server.py" in " ".join(c.cmdline())
    ]
    server.send_signal(signal.SIGKILL)
    assert p.wait() == 128 + signal.SIGKILL


def test_pending_request_answered_when_proxy_is_stopped(make_proxy: Make) -> None:
    p = make_proxy([*RAW_SERVER, "--mode", "server-request"])
    p.initialize()
    p.send(
        {
            "jsonrpc": "2.0",
            "id": "in-flight",
            "method": "tools/call",
            "params": {"name": "roots", "arguments": {}},
        }
    )
    assert p.recv()["method"] == "roots/list"  # the server now waits for us
    p.proc.send_signal(signal.SIGTERM)
    reply = p.recv_id("in-flight")
    assert reply["error"]["data"]["reason"] == "server_exited"
    assert p.wait() == 0  # the raw server exits 0 on stdin EOF


@pytest.mark.parametrize("sandbox", ["require", "off"])
@pytest.mark.parametrize("ending", ["stdin-eof", "crash"])
def test_grandchild_holding_stdout_neither_hangs_nor_survives(
    make_proxy: Make, tmp_path: Path, ending: str, sandbox: str
) -> None:
    pidfile = tmp_path / "pids.json"
    mode = ["--mode", "crash", "4"] if ending == "crash" else []
    p = make_proxy([*RAW_SERVER, "--orphan", str(pidfile), *mode], env={"AIP_SANDBOX": sandbox})
    pids = _wait_for_pids(pidfile, p)
    p.initialize()
    t0 = time.monotonic()
    if ending == "crash":
        assert p.call(1, "read_file", {"path": "/x"})["error"]["data"]["reason"] == "server_exited"
        assert p.wait() == 4
    else:
        p.close_stdin()
        assert p.wait() == 0
    assert time.monotonic() - t0 < 3
    _assert_all_gone(pids)


def test_server_that_stops_reading_does_not_block_shutdown(make_proxy: Make) -> None:
    p = make_proxy([*RAW_SERVER, "--mode", "deaf"])
    big = {
        "jsonrpc": "2.0",
        "method": "notifications/progress",
        "params": {"progressToken": 1, "progress": 1, "message": "m" * 60_000},
    }
    sent = threading.Event()

    def send_all() -> None:  # more than the pipes hold: the relay blocks writing to the server
        with contextlib.suppress(OSError):
            for _ in range(8):
                p.send(big)
                if _ == 2:
                    sent.set()

    threading.Thread(target=send_all, daemon=True).start()
    assert sent.wait(10)
    t0 = time.monotonic()
    p.proc.send_signal(signal.SIGTERM)
    assert p.wait() == 128 + signal.SIGTERM
    assert time.monotonic() - t0 < 4


def test_host_that_stops_reading_does_not_block_shutdown(make_proxy: Make) -> None:
    p = make_proxy([*RAW_SERVER, "--mode", "flood", "200000"])
    p.send({"jsonrpc": "2.0", "id": 1, "method": "ping"})  # we never read the flood
    p.recv_line()  # the relay is now writing to us
    t0 = time.monotonic()
    p.proc.send_signal(signal.SIGTERM)
    p.wait()
    assert time.monotonic() - t0 < 5
