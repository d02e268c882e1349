"""Remembered decisions through the real proxy and approver (issue 13, docs/grants.md)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.support.aipctl import aipctl
from tests.support.approverproc import wait_for
from tests.support.grantkit import Desk, desk, error_code, proxy
from tests.support.proxyproc import ProxyProcess

pytestmark = [pytest.mark.e2e]


def test_identical_second_call_is_answered_by_the_grant(folder: Path) -> None:
    with desk(folder, "allow remember=exact for=15m") as d, proxy(folder, d.approver.endpoint) as p:
        args = {"path": "/tmp/proj/a.txt", "content": "hi"}
        assert "result" in p.call(1, "write_file", args)
        created = d.wait_event("grant_created")[0]
        assert "result" in p.call(2, "write_file", dict(reversed(list(args.items()))))
        assert len(d.dialogs()) == 1  # the second call never reached a dialog
        first, second = d.decision(1), d.decision(2)
        assert first["reason"] == "human approved"
        assert "granted_by" not in first
        assert second["outcome"] == "granted"
        assert second["reason"] == "remembered approval"
        assert second["granted_by"] == created["grant_id"]
        assert "human_decision" not in second
        assert created["binding"]["scope"] == "exact"
        assert created["scope"] == "timed"
        d.answer("deny")
        reply = p.call(3, "write_file", {**args, "content": "other"})  # another value: asks
        assert error_code(reply) == -32002
        assert len(d.dialogs()) == 2


LIKE = "allow remember=like for=15m"


def test_like_grant_matches_only_the_shown_pattern(folder: Path) -> None:
    with desk(folder, LIKE) as d, proxy(folder, d.approver.endpoint) as p:
        assert "result" in p.call(1, "write_file", {"path": "/tmp/proj/a.txt", "content": "x"})
        offer = d.dialogs()[0]["remember"]
        assert offer["offered"] is True
        assert offer["why_not"] is None
        pattern = offer["like"]["path"]
        assert pattern.startswith("/tmp/proj/")
        assert offer["like"]["content"] == "x"
        created = d.wait_event("grant_created")[0]
        assert created["binding"]["patterns"] == offer["like"]
        assert "result" in p.call(2, "write_file", {"path": "/tmp/proj/b.txt", "content": "x"})
        assert d.decision(2)["granted_by"] == created["grant_id"]
        d.answer("deny")
        outside = [
            {"path": "/tmp/proj/sub/c.txt", "content": "x"},  # a subfolder
            {"path": "/tmp/proj/../etc/passwd", "content": "x"},  # a traversal
            {"path": "/tmp/other/a.txt", "content": "x"},  # another folder
            {"path": "/tmp/proj/b.txt", "content": "y"},  # another exact value
            {"path": "/tmp/proj/b.txt", "content": "x", "mode": "a"},  # an extra argument
        ]
        for n, args in enumerate(outside, start=10):
            assert error_code(p.call(n, "write_file", args)) == -32002, args
            assert d.decision(n)["outcome"] == "denied_by_user"
        assert len(d.dialogs()) == 1 + len(outside)


def test_deny_grant_denies_without_a_dialog(folder: Path) -> None:
    with desk(folder, "deny remember=exact for=15m") as d, proxy(folder, d.approver.endpoint) as p:
        args = {"path": "/tmp/x", "content": "x"}
        assert error_code(p.call(1, "write_file", args)) == -32002
        created = d.wait_event("grant_created")[0]
        assert created["kind"] == "deny"
        d.answer("allow")
        assert error_code(p.call(2, "write_file", args)) == -32002
        second = d.decision(2)
        assert second["outcome"] == "denied_by_grant"
        assert second["reason"] == "remembered denial"
        assert second["denied_by_grant"] == created["grant_id"]
        assert len(d.dialogs()) == 1


def test_expiry_ends_the_grant(folder: Path) -> None:
    with desk(folder, "allow remember=exact for=1s") as d, proxy(folder, d.approver.endpoint) as p:
        args = {"path": "/tmp/x", "content": "x"}
        assert "result" in p.call(1, "write_file", args)
        d.wait_event("grant_created")
        d.answer("deny")
        # recorded when due, not only at the next ask
        assert d.wait_event("grant_expired", timeout_s=5)[0]["reason"] == "time"
        assert _expired(p, d)


_calls = iter(range(100, 10_000))


def _expired(p: ProxyProcess, d: Desk) -> bool:
    """One more identical call: True once it was asked (denied) rather than granted."""
    return (
        error_code(p.call(next(_calls), "write_file", {"path": "/tmp/x", "content": "x"}))
        is not None
    )


def test_idle_expiry(folder: Path) -> None:
    env = {"AIP_GRANT_IDLE_S": "0.3"}
    with desk(folder, LIKE, env) as d, proxy(folder, d.approver.endpoint) as p:
        assert "result" in p.call(1, "write_file", {"path": "/tmp/p/a", "content": "x"})
        d.wait_event("grant_created")
        d.answer("deny")
        assert d.wait_event("grant_expired", timeout_s=5)[0]["reason"] == "idle"
        assert error_code(p.call(2, "write_file", {"path": "/tmp/p/b", "content": "x"})) == -32002


def test_use_cap_ends_an_exact_grant_after_20_uses(folder: Path) -> None:
    with desk(folder, "allow remember=exact for=1h") as d, proxy(folder, d.approver.endpoint) as p:
        args = {"path": "/tmp/x", "content": "x"}
        assert "result" in p.call(0, "write_file", args)
        d.wait_event("grant_created")
        d.answer("deny")
        for n in range(1, 21):
            assert "result" in p.call(n, "write_file", args), n
        expired = d.wait_event("grant_expired")[0]
        assert (expired["reason"], expired["uses"]) == ("uses", 20)
        assert error_code(p.call(21, "write_file", args)) == -32002
        assert len(d.dialogs()) == 2


def test_policy_reload_revokes(folder: Path) -> None:
    with desk(folder, "allow remember=exact for=1h") as d, proxy(folder, d.approver.endpoint) as p:
        args = {"path": "/tmp/x", "content": "x"}
        assert "result" in p.call(1, "write_file", args)
        d.wait_event("grant_created")
        d.answer("deny")
        policy = folder / "grants.yaml"
        policy.write_text(policy.read_text() + "# edited\n")
        p.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "policy reloaded" in p.log(), 10, "the reload")
        revoked = d.wait_event("grant_revoked")[0]
        assert revoked["by"] == "policy_reload"
        assert error_code(p.call(2, "write_file", args)) == -32002
        assert len(d.dialogs()) == 2


def test_changed_tool_description_voids_the_grant(folder: Path) -> None:
    with (
        desk(folder, "allow remember=exact for=1h") as d,
        proxy(folder, d.approver.endpoint, server_args=["--mode", "rugpull"]) as p,
    ):
        p.request(50, "tools/list")  # the agent reads "v1"
        args = {"path": "/tmp/x", "content": "x"}
        assert "result" in p.call(1, "write_file", args)
        d.wait_event("grant_created")
        assert "result" in p.call(2, "write_file", args)  # same description: granted
        assert d.decision(2)["outcome"] == "granted"
        p.request(51, "tools/list")  # the server now describes the tool as "v2"
        d.answer("deny")
        assert error_code(p.call(3, "write_file", args)) == -32002
        assert d.wait_event("grant_revoked")[0]["by"] == "server_changed"
        assert len(d.dialogs()) == 2


def test_aipctl_lists_shows_and_revokes(folder: Path) -> None:
    with desk(folder, LIKE) as d, proxy(folder, d.approver.endpoint) as p:
        assert "result" in p.call(1, "write_file", {"path": "/tmp/q/a", "content": "x"})
        d.answer("allow remember=exact for=1h")
        assert "result" in p.call(2, "write_file", {"path": "/etc/x", "content": "y"})
        d.wait_event("grant_created", 2)
        ep = ["--endpoint", d.approver.endpoint]
        listed = aipctl("grants", "list", "--json", *ep)
        assert listed.returncode == 0, listed.stderr
        grants = json.loads(listed.stdout)
        assert sorted(g["binding"]["scope"] for g in grants) == ["exact", "like"]
        like = next(g for g in grants if g["binding"]["scope"] == "like")
        text = aipctl("grants", "list", *ep).stdout
        assert like["grant_id"] in text
        assert "write_file" in text
        shown = aipctl("grants", "show", like["grant_id"], *ep)
        assert json.loads(shown.stdout)["grant_id"] == like["grant_id"]
        assert aipctl("grants", "show", "g-000000000000", *ep).returncode == 1
        assert aipctl("grants", "revoke", *ep).returncode == 2  # nothing named
        gone = aipctl("grants", "revoke", like["grant_id"], *ep)
        assert gone.returncode == 0, gone.stderr
        assert gone.stdout.startswith(f"revoked {like['grant_id']}")
        revoked = d.wait_event("grant_revoked")[0]
        assert (revoked["by"], revoked["actor"]) == ("cli", os.getuid())
        d.answer("deny")  # revocation takes effect on the next ask
        assert error_code(p.call(3, "write_file", {"path": "/tmp/q/b", "content": "x"})) == -32002
        assert "result" in p.call(4, "write_file", {"path": "/etc/x", "content": "y"})  # exact
        assert aipctl("grants", "revoke", "--tool", "Write_File", *ep).returncode == 0
        assert json.loads(aipctl("grants", "list", "--json", *ep).stdout) == []
        assert error_code(p.call(5, "write_file", {"path": "/etc/x", "content": "y"})) == -32002


def test_human_decision_jq_query_finds_only_human_decisions(folder: Path) -> None:
    with desk(folder, "allow remember=exact for=1h") as d, proxy(folder, d.approver.endpoint) as p:
        for n in range(3):
            assert "result" in p.call(n, "write_file", {"path": "/tmp/j", "content": "x"})
        d.decision(2)
        records = d.events()
    human = [
        r for r in records if r.get("decision") == "allow" and r.get("reason") == "human approved"
    ]
    remembered = [r for r in records if "granted_by" in r or "denied_by_grant" in r]
    assert [r["request_id"] for r in human] == [0]
    assert [r["request_id"] for r in remembered] == [1, 2]


def test_nothing_survives_an_approver_restart(folder: Path) -> None:
    with desk(folder, "allow remember=exact for=1h") as d, proxy(folder, d.approver.endpoint) as p:
        assert "result" in p.call(1, "write_file", {"path": "/tmp/r", "content": "x"})
        d.wait_event("grant_created")
        assert d.approver.stop() == 0
        expired = d.wait_event("grant_expired")[0]
        assert (expired["reason"], expired["uses"]) == ("restart", 0)
