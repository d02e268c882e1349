"""Stateful property test of the relay's security invariant (security.md §8.7 case 97).

Hypothesis interleaves client requests (allowed, blocked, asked, duplicate ids), server
responses (also to ids never forwarded), cancellations, approver replies (allow, deny, wrong
nonce, wrong digest, wrong id type, other session, malformed, duplicate, late), approver
restarts, clock jumps past the deadline and a server crash, against the real session code and
the real approval client (relaykit). Invariants, checked after every step:
- no tools/call reaches the server unless the policy allowed it or a matching, in-time,
  single-use human allow arrived, and what reaches it is the canonical (orjson) form of the
  checked message, whose sha256 is the digest the approver was shown;
- every request gets at most one answer, and at the end exactly one (cancelled asks none),
  and every answered tools/call has exactly one decision record.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

import orjson
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from aip.shared.outcomes import Outcome
from aip.shared.protocol.messages import Ask, Decision, new_nonce
from tests.hardening.relaykit import GRACE_S, TIMEOUT_S, Relay
from tests.support.sessionkit import read_lines, wait_lines

Key = tuple[type, Any]
ARG_TEXT = st.text(max_size=40)
DENY_OUTCOMES = [
    Outcome.DENIED_BY_USER,
    Outcome.TIMEOUT,
    Outcome.QUEUE_FULL,
    Outcome.DIALOG_ERROR,
    Outcome.AUDIT_UNAVAILABLE,
]


CRASH_AFTER_STEPS = 20


def _key(request_id: Any) -> Key:
    return (type(request_id), request_id)


class RelayMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.r = Relay()
        self.next_id = 1
        self.permits: Counter[bytes] = Counter()  # tools/call bytes allowed to reach the server
        self.in_flight: dict[Key, bytes] = {}  # forwarded, awaiting the server's answer
        self.asking: dict[Key, bytes] = {}  # asked, awaiting the human (canonical bytes)
        self.ended: dict[Key, Ask] = {}  # asks over: any later decision must be dropped
        self.allowed_decisions: list[Decision] = []  # sent allows (for duplicates)
        self.answers: Counter[Key] = Counter()
        self.expect_answer: set[Key] = set()  # requests that must get exactly one answer
        self.silent: set[Key] = set()  # cancelled asks: never answered
        self.null_errors = 0  # expected id:null rejections (duplicate in-flight ids)
        self.seen_null_errors = 0
        self.drops = 0  # decisions the client must have dropped so far
        self.crashed = False
        self.steps = 0
        self.restarted = False
        self.last_reply: dict[Key, dict[str, Any]] = {}

    # ---- helpers ----

    def _new_id(self, as_str: bool) -> Any:
        n = self.next_id
        self.next_id += 1
        return str(n) if as_str else n

    def _call(self, request_id: Any, tool: str, arguments: dict[str, Any]) -> bytes:
        msg = {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "tools/call",
            "params": {"name": tool, "arguments": arguments},
        }
        self.expect_answer.add(_key(request_id))
        return self.r.send(msg)

    def _collect(self) -> None:
        """Read what reached the host and the server so far and check it."""
        for line in read_lines(self.r.host_r, self.r.host_buf):
            self._on_host(line)
        for line in read_lines(self.r.server_r, self.r.server_buf):
            self._on_server(line)

    def _on_host(self, line: bytes) -> None:
        msg = orjson.loads(line)
        assert "method" not in msg, msg  # no progress tokens are used here
        if msg["id"] is None:
            self.seen_null_errors += 1
            assert msg["error"]["code"] == -32600
            return
        key = _key(msg["id"])
        assert key not in self.silent, f"a cancelled ask was answered: {msg}"
        self.answers[key] += 1
        assert self.answers[key] == 1, f"two answers for {key}: {msg}"
        self.last_reply[key] = msg

    def _on_server(self, line: bytes) -> None:
        msg = orjson.loads(line)
        if msg.get("method") != "tools/call":
            return  # forwarded cancellations
        assert self.permits[line] > 0, f"tools/call reached the server without an allow: {line!r}"
        self.permits[line] -= 1
        self.in_flight[_key(msg["id"])] = line

    def _wait_host(self, key: Key) -> dict[str, Any]:
        while self.answers[key] == 0:
            for line in wait_lines(self.r.host_r, self.r.host_buf):
                self._on_host(line)
        return self.last_reply[key]

    def _wait_server(self, key: Key) -> None:
        while key not in self.in_flight:
            for line in wait_lines(self.r.server_r, self.r.server_buf):
                self._on_server(line)

    def _client_round_trip(self) -> None:
        """The client sends hello again on an agent-id command: once the scripted approver
        has it, the client thread has finished what it was doing and looked at the clock."""
        hellos = self.r.router.hellos
        self.r.wake_client()
        self.r.router.pump(lambda: self.r.router.hellos > hellos, "the agent-id hello")

    def _expect_dropped(self) -> None:
        self.drops += 1
        self.r.drops.wait_for(self.drops)

    # ---- client requests ----

    @precondition(lambda self: not self.crashed)
    @rule(as_str=st.booleans(), path=ARG_TEXT)
    def allowed_call(self, as_str: bool, path: str) -> None:
        request_id = self._new_id(as_str)
        canonical = orjson.dumps(
            {
                "jsonrpc": "2.0",
                "id": request_id,
                "method": "tools/call",
                "params": {"name": "read_file", "arguments": {"path": path}},
            }
        )
        self.permits[canonical + b"\n"] += 1
        sent = self._call(request_id, "read_file", {"path": path})
        assert sent == canonical + b"\n"
        self._wait_server(_key(request_id))

    @precondition(lambda self: not self.crashed)
    @rule(
        as_str=st.booleans(),
        tool=st.sampled_from(["delete_file", "unknown_tool", "run", "DELETE_FILE"]),
        cmd=st.sampled_from(["ls", "ls -l", "rm -rf /", "ls\n", "ls -l; rm"]),
    )
    def checked_call(self, as_str: bool, tool: str, cmd: str) -> None:
        request_id = self._new_id(as_str)
        key = _key(request_id)
        allowed = tool == "run" and cmd in ("ls", "ls -l")
        canonical = self._call_bytes(request_id, tool, {"cmd": cmd})
        if allowed:
            self.permits[canonical] += 1
        self._call(request_id, tool, {"cmd": cmd})
        if allowed:
            self._wait_server(key)
        else:
            reply = self._wait_host(key)
            assert reply["error"]["code"] == -32001, reply

    @staticmethod
    def _call_bytes(request_id: Any, tool: str, arguments: dict[str, Any]) -> bytes:
        msg = {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "tools/call",
            "params": {"name": tool, "arguments": arguments},
        }
        return orjson.dumps(msg) + b"\n"

    @precondition(lambda self: not self.crashed)
    @rule(as_str=st.booleans(), path=ARG_TEXT, content=ARG_TEXT)
    def asked_call(self, as_str: bool, path: str, content: str) -> None:
        request_id = self._new_id(as_str)
        key = _key(request_id)
        canonical = self._call(request_id, "write_file", {"path": path, "content": content})
        self.r.router.pump(lambda: key in self.r.router.asks, f"the ask for {key}")
        ask = self.r.router.asks[key]
        # The digest the human's answer is bound to is that of exactly the bytes to forward.
        assert ask.digest == hashlib.sha256(canonical.rstrip(b"\n")).hexdigest()
        assert ask.arguments == {"path": path, "content": content}
        self.asking[key] = canonical

    @precondition(lambda self: not self.crashed and bool(self.in_flight or self.asking))
    @rule(data=st.data())
    def duplicate_id(self, data: st.DataObject) -> None:
        """A request reusing an id still in flight (or still asking) is refused, id null."""
        key = data.draw(st.sampled_from(sorted({**self.in_flight, **self.asking}, key=repr)))
        self.null_errors += 1
        msg = {"jsonrpc": "2.0", "id": key[1], "method": "tools/call", "params": {"name": "x"}}
        self.r.send(msg)
        while self.seen_null_errors < self.null_errors:
            for line in wait_lines(self.r.host_r, self.r.host_buf):
                self._on_host(line)

    @precondition(lambda self: not self.crashed and bool(self.asking))
    @rule(data=st.data())
    def cancel_ask(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.asking, key=repr)))
        self.r.send(
            {
                "jsonrpc": "2.0",
                "method": "notifications/cancelled",
                "params": {"requestId": key[1], "reason": "gave up"},
            }
        )
        del self.asking[key]
        self.ended[key] = self.r.router.asks[key]
        self.silent.add(key)
        self.expect_answer.discard(key)

    # ---- the server ----

    @precondition(lambda self: not self.crashed and bool(self.in_flight))
    @rule(data=st.data())
    def server_answers(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.in_flight, key=repr)))
        del self.in_flight[key]
        self.r.server_says({"jsonrpc": "2.0", "id": key[1], "result": {"content": []}})
        assert self._wait_host(key)["result"] == {"content": []}

    @precondition(lambda self: not self.crashed)
    @rule()
    def server_answers_an_unknown_id(self) -> None:
        """Answers to ids never forwarded (a denied one, or a string twin of an int) drop."""
        for request_id in (self.next_id + 100, str(self.next_id + 100)):
            self.r.server_says({"jsonrpc": "2.0", "id": request_id, "result": {}})
        self._collect()

    # Late in a run only: the crash ends the interesting part (nothing is forwarded after it).
    @precondition(lambda self: not self.crashed and self.steps >= CRASH_AFTER_STEPS)
    @rule()
    def server_crashes(self) -> None:
        """What the runner does when the child exits: deny the asks, answer the rest."""
        self.crashed = True
        self.r.asks.close()
        self.r.session.close()
        for key in list(self.asking):
            assert self._wait_host(key)["error"]["data"]["reason"] == "shutdown"
        for key in list(self.in_flight):
            assert self._wait_host(key)["error"]["data"]["reason"] == "server_exited"
        self.ended.update({k: self.r.router.asks[k] for k in self.asking})
        self.asking.clear()
        self.in_flight.clear()

    @precondition(lambda self: self.crashed)
    @rule(as_str=st.booleans(), tool=st.sampled_from(["read_file", "write_file", "delete_file"]))
    def call_after_the_crash(self, as_str: bool, tool: str) -> None:
        """Nothing reaches a dead server; every call is still answered, once."""
        request_id = self._new_id(as_str)
        self._call(request_id, tool, {"path": "/x"})
        reason = self._wait_host(_key(request_id))["error"]["data"]["reason"]
        expected = {"read_file": "server_exited", "write_file": "shutdown"}
        assert reason == expected.get(tool, "denied_tool")

    # ---- the approver ----

    def _decision(self, ask: Ask, **changes: Any) -> Decision:
        fields: dict[str, Any] = {
            "session": ask.session,
            "request_id": ask.request_id,
            "nonce": ask.nonce,
            "digest": ask.digest,
            "outcome": Outcome.HUMAN_APPROVED,
            **changes,
        }
        return Decision(**fields)

    @precondition(lambda self: not self.crashed and bool(self.asking))
    @rule(data=st.data())
    def human_allows(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.asking, key=repr)))
        canonical = self.asking.pop(key)
        ask = self.r.router.asks[key]
        self.permits[canonical] += 1  # a matching, in-time, first allow: may be forwarded
        decision = self._decision(ask)
        self.r.router.send(decision)
        self._wait_server(key)
        self.ended[key] = ask
        self.allowed_decisions.append(decision)

    @precondition(lambda self: not self.crashed and bool(self.asking))
    @rule(data=st.data(), outcome=st.sampled_from(DENY_OUTCOMES))
    def human_denies(self, data: st.DataObject, outcome: Outcome) -> None:
        key = data.draw(st.sampled_from(sorted(self.asking, key=repr)))
        del self.asking[key]
        ask = self.r.router.asks[key]
        self.r.router.send(self._decision(ask, outcome=outcome))
        reply = self._wait_host(key)
        assert reply["error"]["code"] == -32002
        assert reply["error"]["data"]["reason"] == outcome.value
        self.ended[key] = ask

    @precondition(lambda self: not self.crashed and bool(self.asking))
    @rule(
        data=st.data(),
        kind=st.sampled_from(["nonce", "digest", "id_type", "session", "malformed", "other_id"]),
    )
    def bogus_allow(self, data: st.DataObject, kind: str) -> None:
        """An allow that does not match the pending ask is dropped; the ask stays pending."""
        key = data.draw(st.sampled_from(sorted(self.asking, key=repr)))
        ask = self.r.router.asks[key]
        event(f"bogus allow: {kind}")
        if kind == "malformed":
            self.r.router.send(b'{"v":1,"type":"decision","outcome":"human_approved"}')
        else:
            changes: dict[str, dict[str, Any]] = {
                "nonce": {"nonce": new_nonce()},
                "digest": {"digest": hashlib.sha256(b"other bytes").hexdigest()},
                "id_type": {
                    "request_id": str(ask.request_id)
                    if isinstance(ask.request_id, int)
                    else int(ask.request_id)
                },
                "session": {"session": "f" * 16},
                "other_id": {"request_id": self.next_id + 1000},
            }
            self.r.router.send(self._decision(ask, **changes[kind]))
        self._expect_dropped()

    @precondition(lambda self: not self.crashed and bool(self.ended))
    @rule(data=st.data(), allow=st.booleans())
    def late_or_duplicate_decision(self, data: st.DataObject, allow: bool) -> None:
        """A decision for an ask that is over (answered, cancelled, timed out): dropped."""
        key = data.draw(st.sampled_from(sorted(self.ended, key=repr)))
        ask = self.ended[key]
        outcome = Outcome.HUMAN_APPROVED if allow else Outcome.DENIED_BY_USER
        self.r.router.send(self._decision(ask, outcome=outcome))
        self._expect_dropped()

    @precondition(lambda self: not self.crashed and bool(self.asking))
    @rule(before=st.booleans())
    def clock_jumps(self, before: bool) -> None:
        """The monotonic clock jumps. Short of the fallback nothing happens; past it, every
        sent ask is denied ``timeout`` and an allow arriving afterwards is dropped."""
        # The client stamps an ask's send time just after the send, so the scripted approver
        # may see the ask first: let the client thread go round once before moving the clock.
        self._client_round_trip()
        if before:
            self.r.clock.advance(TIMEOUT_S + GRACE_S - 1.0)
            self._client_round_trip()  # it has looked at the clock
            self._collect()
            assert not any(k in self.answers for k in self.asking)
            self.r.clock.advance(-(TIMEOUT_S + GRACE_S - 1.0))  # a jump back: still pending
            return
        self.r.clock.advance(TIMEOUT_S + GRACE_S + 0.001)
        self.r.wake_client()
        for key in list(self.asking):
            assert self._wait_host(key)["error"]["data"]["reason"] == "timeout"
            self.ended[key] = self.r.router.asks[key]
        self.asking.clear()

    # Once per run, with asks pending (a reconnect costs ~0.15 s: zmq's reconnect interval).
    @precondition(lambda self: not self.crashed and self.asking and not self.restarted)
    @rule()
    def approver_restarts(self) -> None:
        """The approver goes away: sent asks are denied at once (not at the deadline); the
        client reconnects and says hello again, and asks work afterwards."""
        self.restarted = True
        router = self.r.router
        router.unbind()
        for key in list(self.asking):
            reply = self._wait_host(key)
            assert reply["error"]["data"]["reason"] == "approver_unavailable", reply
            self.ended[key] = router.asks[key]
        self.asking.clear()
        hellos = router.hellos
        router.bind()
        router.pump(lambda: router.hellos > hellos, "the hello after reconnecting")

    # ---- invariants ----

    @invariant()
    def nothing_unchecked_reached_the_server(self) -> None:
        self.steps += 1
        self._collect()
        assert self.seen_null_errors <= self.null_errors

    def teardown(self) -> None:
        try:
            if not self.crashed:
                self.server_crashes()
            self._collect()
            assert self.seen_null_errors == self.null_errors
            for key in self.expect_answer:
                assert self.answers[key] == 1, f"{key} answered {self.answers[key]} times"
            # One decision record per decided tools/call (proxy side, incl. approver answers).
            per_id = Counter(
                _key(rec["request_id"])
                for rec in self.r.records()
                if rec.get("event") == "decision" and rec.get("request_id") is not None
            )
            for key in self.expect_answer | self.silent:
                assert per_id[key] >= 1, f"no decision record for {key}"
        finally:
            self.r.close()


RelayMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_relay_state_machine = RelayMachine.TestCase
