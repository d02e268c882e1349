"""Remote approval over a real link (issue 14 "done when"): the desktop's approver in one
network namespace listening with CURVE on its veth address, a proxy on a "remote host" in
another, joined by a veth pair the test creates (tests/support/netns.py; root, as in CI).

- ``aipctl remote pair`` / ``join`` across the link, the pair dialog answered by the ``exec:``
  program (it sees ``"kind": "pair"``);
- the paired proxy's ask reaches the desktop approver, its allow forwards, and the decision
  and the proxy's own audit records reach the central log with ``origin``;
- the cable pulled (``ip link set down``): an ask is denied ``remote_link_lost``; records made
  meanwhile wait in the proxy's spool and arrive, none lost, when the cable is back;
- a revoked device, an unpaired key, an expired pairing and a wrong server key are refused fast.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zmq

from aip.approver.remote.trust import DAY_S, TrustStore
from aip.shared.remote.code import parse_code
from aip.shared.remote.files import Pairing, load_pairing
from aip.shared.safe_write import replace_file
from tests.support.aipctl import AIPCTL, aipctl, quiet_env
from tests.support.approverproc import Approver, answer_program, wait_for
from tests.support.netns import DESK_ADDR, FAR_ADDR, Netns, veth_pair
from tests.support.proxyproc import MCP_SERVER, ProxyProcess, write_policy

pytestmark = pytest.mark.e2e

PORT = 7450
LISTEN = f"tcp://{DESK_ADDR}:{PORT}"
FAST_S = 2.0  # "refused fast" (a handshake round trip plus process overhead under load)
LINK_HEARTBEAT_S = 1.0  # the far host's $AIP_HEARTBEAT_S (3 s by default)
HEARTBEAT_LOSS_S = 2.5  # that timeout + margin: a proxy on the default would take over 3 s
SPEC = """
allowed_tools: [read_file]
tool_rules:
  - tool: write_file
    action: ask
"""


@dataclass
class Site:
    net: Netns
    folder: Path
    approver: Approver
    answer: Path  # the exec: program's answer, re-read on every call
    record: Path  # what the exec: program was asked

    @property
    def desk_env(self) -> dict[str, str]:
        return quiet_env(XDG_CONFIG_HOME=str(self.folder / "desk"))

    @property
    def far_env(self) -> dict[str, str]:
        return quiet_env(
            XDG_CONFIG_HOME=str(self.folder / "far"),
            XDG_STATE_HOME=str(self.folder / "far-state"),  # its spool: never the desk's disk
            AIP_HEARTBEAT_S=str(LINK_HEARTBEAT_S),
        )

    def records(self) -> list[dict[str, Any]]:
        path = self.approver.audit_path
        text = path.read_text() if path.exists() else ""
        return [json.loads(x) for x in text.splitlines(keepends=True) if x.endswith("\n")]

    def join(
        self, code: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        argv = self.net.argv(self.net.far, AIPCTL, "remote", "join", code, "--timeout", "20")
        return subprocess.run(
            argv, env=env or self.far_env, capture_output=True, text=True, timeout=40, check=False
        )

    def proxy(self, env: dict[str, str | None] | None = None) -> ProxyProcess:
        policy = write_policy(self.folder, SPEC, "remote")
        base: dict[str, str | None] = {**self.far_env, "AIP_APPROVER_ENDPOINT": None}
        p = ProxyProcess(
            policy,
            MCP_SERVER,
            self.folder,
            env={**base, **(env or {})},
            wrap=self.net.argv(self.net.far),
        )
        p.initialize()
        return p


@pytest.fixture
def site(folder: Path) -> Iterator[Site]:
    answer, record = folder / "answer.txt", folder / "asked.jsonl"
    answer.write_text("allow\n")
    env = {
        **quiet_env(XDG_CONFIG_HOME=str(folder / "desk")),
        "AIP_TEST_ANSWER_FILE": str(answer),
        "AIP_TEST_RECORD": str(record),
    }
    with veth_pair() as net:
        prog = answer_program(folder)
        approver = Approver(
            folder,
            f"exec:{prog}",
            timeout_s=20,
            args=["--remote-listen", LISTEN],
            env=env,
            wrap=net.argv(net.desk),
        )
        with approver:
            approver.wait_ready()
            yield Site(net, folder, approver, answer, record)


def _pair(site: Site, name: str = "devbox") -> Pairing:
    done = aipctl("remote", "pair", name, "--ttl", "2m", env=site.desk_env)
    assert done.returncode == 0, done.stderr
    code = done.stdout.strip().splitlines()[-1]
    assert parse_code(code).endpoint == LISTEN  # the code carries the listener's address
    joined = site.join(code)
    assert joined.returncode == 0, joined.stderr + site.approver.log()
    pairing = load_pairing(site.folder / "far" / "aip" / "remote" / "pairing.json")
    assert f"fingerprint: {pairing.fingerprint}" in joined.stdout
    asked = [json.loads(x)["request"] for x in site.record.read_text().splitlines()]
    pair_asks = [r for r in asked if r and r.get("kind") == "pair"]
    assert pair_asks
    assert pairing.fingerprint in pair_asks[-1]["text"]
    return pairing


def _reason(reply: dict[str, Any]) -> str:
    assert "error" in reply, reply
    return str(reply["error"]["data"]["reason"])


def _origin_ok(origin: Any, pairing: Pairing) -> bool:
    return origin == {
        "transport": "curve",
        "device": "devbox",
        "key_fingerprint": pairing.fingerprint,
        "address": FAR_ADDR,
    }


def test_paired_proxy_asks_over_the_link_and_loses_nothing_when_it_drops(site: Site) -> None:
    pairing = _pair(site)
    p = site.proxy()
    try:
        reply = p.call(1, "write_file", {"path": "/tmp/remote-ok", "content": "hi"})
        assert "result" in reply, (reply, p.log(), site.approver.log())
        asks = [r for r in site.records() if r.get("request_id") == 1 and r["event"] == "decision"]
        assert asks[-1]["outcome"] == "human_approved"
        assert _origin_ok(asks[-1]["origin"], pairing)
        assert "result" in p.call(2, "read_file", {"path": "/tmp/a"})  # a policy allow

        site.net.link(False)  # the cable is pulled
        t0 = time.monotonic()
        assert (
            _reason(
                p.call(
                    3,
                    "write_file",
                    {"path": "/x", "content": "y"},
                )
            )
            == "remote_link_lost"
        )
        assert time.monotonic() - t0 < HEARTBEAT_LOSS_S
        for n in range(10, 15):  # allowed by policy while the link is down: spooled
            assert "result" in p.call(n, "read_file", {"path": f"/tmp/{n}"})
        site.net.link(True)

        def all_arrived() -> bool:
            got = {r.get("request_id") for r in site.records() if r["event"] == "decision"}
            return {2, 3, *range(10, 15)} <= got

        wait_for(all_arrived, 30, "the spooled records after the link came back")
        mine = [r for r in site.records() if r["event"] == "decision" and r.get("session")]
        assert all(_origin_ok(r.get("origin"), pairing) for r in mine), mine
        ids = [r["request_id"] for r in mine]
        assert len(ids) == len(set(ids))  # each record once, none twice

        # Revoked: the open connection is shut, the next ask is refused at once.
        assert aipctl("remote", "revoke", "devbox", env=site.desk_env).returncode == 0
        t0 = time.monotonic()
        reason = _reason(p.call(20, "write_file", {"path": "/x", "content": "y"}))
        assert reason in ("remote_link_lost", "remote_key_refused")
        assert time.monotonic() - t0 < FAST_S
    finally:
        p.kill()


def test_unpaired_expired_and_wrong_server_key_are_refused_fast(site: Site) -> None:
    pairing = _pair(site)
    far = site.folder / "far" / "aip" / "remote"
    # Expired at the desktop (the store's clock is injectable): refused at the handshake.
    desk = site.folder / "desk" / "aip" / "remote"
    TrustStore(desk, replace_file).revoke("devbox")
    key = json.loads((far / "client.key").read_text())["public"]
    past = time.time() - 31 * DAY_S
    TrustStore(desk, replace_file, lambda: past).confirm("devbox", key, 30)
    cases = [("expired", None, "remote_key_refused")]
    cases.append(
        ("unpaired", lambda: TrustStore(desk, replace_file).revoke("devbox"), "remote_key_refused")
    )

    def wrong_server() -> None:
        other = Pairing(
            pairing.name,
            pairing.endpoint,
            zmq.curve_keypair()[0],
            pairing.fingerprint,
            pairing.expires,
        )
        replace_file(far / "pairing.json", other.encode(), 0o600)

    cases.append(("wrong server key", wrong_server, "remote_server_unverified"))
    for what, change, expected in cases:
        if change is not None:
            change()
        p = site.proxy()
        try:
            t0 = time.monotonic()
            reason = _reason(p.call(1, "write_file", {"path": "/x", "content": "y"}))
            took = time.monotonic() - t0
        finally:
            p.kill()
        assert (what, reason) == (what, expected)
        assert took < FAST_S, (what, took)
