"""The grant model, store, binding and offer (docs/grants.md), with a fake clock."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from aip.approver.dialogs.verdict import Scope
from aip.approver.grants.binding import AskKey, has_shell_operator, key_of, like_matches
from aip.approver.grants.model import Binding, Grant, Kind, clamp_seconds, idle_seconds
from aip.approver.grants.offer import STORM_ASKS, like_patterns, offer_for
from aip.approver.grants.store import GrantEvent, GrantStore
from aip.shared.digests import canonical_digest
from aip.shared.policy.load import load_policy_text
from aip.shared.protocol.facts import GrantFacts
from aip.shared.protocol.messages import Ask

H = "a" * 64
SESSION = "0123456789abcdef"


def _key(**kw: Any) -> AskKey:
    arguments = kw.pop("arguments", {"path": "/tmp/p/a.txt"})
    base: dict[str, Any] = {
        "agent_id": "agent",
        "session": SESSION,
        "server": "fs",
        "server_sha256": H,
        "tool": "write_file",
        "tool_sha256": H,
        "policy_sha256": H,
        "rule": "tool_rules[0] (write_file ask)",
        "args_sha256": canonical_digest(arguments),
        "arguments": arguments,
        "plain": True,
    }
    base.update(kw)
    return AskKey(**base)


def _binding(key: AskKey, scope: Scope = Scope.EXACT, **kw: Any) -> Binding:
    fields: dict[str, Any] = {
        "agent_id": key.agent_id,
        "session": None,
        "server": key.server,
        "server_sha256": key.server_sha256,
        "tool": key.tool,
        "tool_sha256": key.tool_sha256,
        "policy_sha256": key.policy_sha256,
        "rule": key.rule,
        "scope": scope,
        "args_sha256": key.args_sha256,
    }
    fields.update(kw)
    return Binding(**fields)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _store() -> tuple[GrantStore, Clock, list[GrantEvent]]:
    clock, events = Clock(), []
    return GrantStore(clock, events.append), clock, events


def _grant(binding: Binding, clock: Clock, *, seconds: float = 900, uses: int = 20, **kw: Any):
    fields: dict[str, Any] = {
        "id": f"g-{len(binding.rule):012x}",
        "kind": Kind.ALLOW,
        "binding": binding,
        "origin_session": SESSION,
        "created_by_request_id": 1,
        "created_at": "",
        "expires_at": "",
        "deadline": clock.now + seconds,
        "max_uses": uses,
        "idle_s": 1800.0,
        "last_used": clock.now,
    }
    fields.update(kw)
    return Grant(**fields)


def test_exact_grant_answers_the_same_arguments_only() -> None:
    store, clock, events = _store()
    key = _key()
    store.add(_grant(_binding(key), clock))
    assert store.answer(key) is not None
    other = _key(arguments={"path": "/tmp/p/b.txt"})
    assert store.answer(other) is None
    assert [e.kind for e in events] == ["grant_created"]


@pytest.mark.parametrize(
    "change",
    [
        {"agent_id": "other"},
        {"server": "git"},
        {"rule": "tool_rules[1] (write_file ask)"},
        {"tool": "read_file"},
    ],
)
def test_another_slot_never_matches(change: dict[str, Any]) -> None:
    store, clock, _ = _store()
    key = _key()
    store.add(_grant(_binding(key), clock))
    assert store.answer(dataclasses.replace(key, **change)) is None
    assert len(store) == 1  # nothing revoked: it is about something else


@pytest.mark.parametrize(
    ("change", "by"),
    [
        ({"policy_sha256": "b" * 64}, "policy_reload"),
        ({"server_sha256": "b" * 64}, "server_changed"),
        ({"tool_sha256": "b" * 64}, "server_changed"),
    ],
)
def test_a_change_seen_by_the_creating_session_revokes(change: dict[str, Any], by: str) -> None:
    store, clock, events = _store()
    key = _key()
    store.add(_grant(_binding(key), clock))
    assert store.answer(dataclasses.replace(key, **change)) is None
    assert events[-1].kind == "grant_revoked"
    assert events[-1].fields["by"] == by
    assert len(store) == 0


def test_another_session_with_other_digests_does_not_revoke() -> None:
    store, clock, _ = _store()
    key = _key()
    store.add(_grant(_binding(key), clock))
    assert store.answer(dataclasses.replace(key, session="f" * 16, server_sha256="b" * 64)) is None
    assert len(store) == 1


def test_session_grant_only_for_its_session_and_ends_with_it() -> None:
    store, clock, events = _store()
    key = _key()
    store.add(_grant(_binding(key, session=SESSION), clock))
    assert store.answer(dataclasses.replace(key, session="f" * 16)) is None
    assert store.answer(key) is not None
    store.end_session(SESSION)
    assert events[-1].fields == {"reason": "session_end"}
    assert len(store) == 0


def test_time_idle_and_uses_caps() -> None:
    store, clock, events = _store()
    key = _key()
    store.add(_grant(_binding(key), clock, seconds=10))
    clock.now += 10
    assert store.answer(key) is None
    assert events[-1].fields["reason"] == "time"
    store.add(_grant(_binding(key), clock, seconds=5000))
    clock.now += 1800
    assert store.answer(key) is None
    assert events[-1].fields["reason"] == "idle"
    grant = _grant(_binding(key), clock, uses=2)
    store.add(grant)
    for _ in range(2):
        assert store.answer(key) is grant
        store.after_use(grant)
    assert events[-1].fields["reason"] == "uses"
    assert store.answer(key) is None


def test_deny_grant_wins_and_revoke_by_tool_session_id_all() -> None:
    store, clock, events = _store()
    key = _key()
    store.add(_grant(_binding(key), clock, id="g-000000000001"))
    store.add(_grant(_binding(key), clock, id="g-000000000002", kind=Kind.DENY))
    found = store.answer(key)
    assert found is not None
    assert found.kind is Kind.DENY
    gone, missing = store.revoke(ids=["g-000000000001", "g-ffffffffffff"], actor=0)
    assert [g.id for g in gone] == ["g-000000000001"]
    assert missing == ["g-ffffffffffff"]
    assert store.revoke(tool="read_file")[0] == []
    assert [g.id for g in store.revoke(tool="write_file")[0]] == ["g-000000000002"]
    store.add(_grant(_binding(key), clock, id="g-000000000003"))
    assert len(store.revoke(session=SESSION)[0]) == 1
    store.add(_grant(_binding(key), clock, id="g-000000000004"))
    assert len(store.revoke(everything=True)[0]) == 1
    assert {e.fields.get("by") for e in events if e.kind == "grant_revoked"} == {"cli"}


def test_like_is_strict_and_full_match() -> None:
    patterns, examples = like_patterns({"path": "/tmp/p/a.txt", "n": 3})
    assert patterns["n"] == "3"
    assert set(examples) == {"path"}
    ex = examples["path"]
    assert like_matches(patterns, {"path": ex.matches, "n": 3})
    assert not like_matches(patterns, {"path": ex.does_not_match, "n": 3})
    for path in ("/tmp/p/../x", "/tmp/p/s/x", "/tmp/p/", "/tmp/p/..", "/tmp/q/a.txt"):
        assert not like_matches(patterns, {"path": path, "n": 3}), path
    assert not like_matches(patterns, {"path": "/tmp/p/b", "n": 4})
    assert not like_matches(patterns, {"path": "/tmp/p/b", "n": 3, "more": 1})
    assert not like_matches(patterns, {"path": "/tmp/p/b"})
    assert like_patterns({"path": "/etc"}) == ({}, {})  # the root's entries: never
    assert like_patterns({"q": "SELECT 1"}) == ({}, {})  # nothing generalizes


@pytest.mark.parametrize("text", ["a;b", "a && b", "a | b", "$(x)", "`x`", "a\nb", "<(x)"])
def test_shell_operators(text: str) -> None:
    assert has_shell_operator({"deep": [{"x": text}]})
    assert not has_shell_operator({"x": "a & b > c"})


def _ask(**kw: Any) -> Ask:
    facts = kw.pop("grant", GrantFacts(server_sha256=H, tool_sha256="", args_sha256=H))
    fields: dict[str, Any] = {
        "session": SESSION,
        "request_id": 1,
        "nonce": "0" * 32,
        "digest": H,
        "tool": "write_file",
        "arguments": {"path": "/tmp/p/a.txt"},
        "rule": "r",
        "size": 10,
        "grant": facts,
    }
    fields.update(kw)
    return Ask(**fields)


def test_offer_and_why_not() -> None:
    def offer(ask: Ask, ordinal: int = 1, withheld: bool = False, **kw: Any):
        key = key_of(ask, "agent", "fs", H)
        return offer_for(ask, key, ordinal=ordinal, withheld=withheld, **kw)

    good = offer(_ask())
    assert good.offered
    assert set(good.like) == {"path"}
    assert good.scopes() == (Scope.EXACT, Scope.LIKE)
    assert offer(_ask(), remote=True).scopes() == (Scope.EXACT,)
    assert offer(_ask(grant=None)).why_not == "this proxy is too old to bind a remembered answer"
    assert offer(_ask(), withheld=True).why_not == "the request is too large to review"
    assert offer(_ask(dlp=["aws:1"])).why_not == "a secret was found in the arguments"
    assert offer(_ask(hidden_chars=2)).why_not == "the arguments hold hidden characters"
    assert not offer(_ask(arguments={"c": "a;b"})).offered
    never = GrantFacts(server_sha256=H, tool_sha256="", args_sha256=H, never_remember=True)
    assert offer(_ask(grant=never)).why_not == "the policy marks this tool never to be remembered"
    assert (
        offer(_ask(), ordinal=STORM_ASKS).why_not == "too many requests from this agent (6 in 60 s)"
    )


def test_caps_and_idle_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert clamp_seconds(None) == 8 * 3600
    assert clamp_seconds(10**9) == 8 * 3600
    monkeypatch.setenv("AIP_GRANT_IDLE_S", "0.5")
    assert idle_seconds() == 0.5
    monkeypatch.setenv("AIP_GRANT_IDLE_S", "99999")  # never longer than 30 min
    assert idle_seconds() == 1800


def test_never_remember_key_loads_and_is_checked() -> None:
    head = "apiVersion: aip.io/v1alpha1\nkind: AgentPolicy\nmetadata: {name: n}\nspec:\n"
    policy = load_policy_text(
        head + "  tool_rules: [{tool: Run_Shell, action: ask, x-aip-never-remember: true}]\n"
    )
    assert policy.never_remember("run_shell")
    assert not policy.never_remember("write_file")
    with pytest.raises(Exception, match="x-aip-never-remember"):
        load_policy_text(head + "  tool_rules: [{tool: t, action: ask, x-aip-never-remember: 1}]\n")


async def test_desk_offers_remote_sessions_the_exact_call_only() -> None:
    from aip.approver.grants.desk import GrantDesk
    from aip.approver.remote.origin import Origin
    from aip.approver.sessions import Session
    from aip.shared.protocol.messages import PolicyRef

    async def record(_: dict[str, Any]) -> None:
        return None

    desk = GrantDesk(Clock(), record, lambda coro: coro.close())
    local = Session(SESSION, b"r", 3, 0, 1, 1, "agent", "fs", PolicyRef(name="p", sha256=H), "u")
    remote = dataclasses.replace(local, origin=Origin("curve", "laptop", "f" * 64, "10.0.0.2"))
    assert desk.offer(_ask(), local, ordinal=1, withheld=False).scopes() == (
        Scope.EXACT,
        Scope.LIKE,
    )
    offer = desk.offer(_ask(), remote, ordinal=1, withheld=False)
    assert offer.offered
    assert offer.exact_only
    assert offer.scopes() == (Scope.EXACT,)
