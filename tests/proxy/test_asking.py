"""Asks in the relay, with a scripted approval client: the approved bytes are exactly the
checked bytes, denies and cancels answer correctly and once, tokens come back, progress flows.

Runs the real session and upstream code over OS pipes in-process; the approval client is the
seam (the approver's own tests cover the real one).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aip.proxy.approval.api import AskRequest, AskResult, OnDone
from aip.proxy.relay.asks import Asks
from aip.shared.outcomes import Outcome
from aip.shared.policy.load import load_policy_text
from tests.support.fdwait import readable
from tests.support.sessionkit import LocalSession

SPEC = """
apiVersion: aip.io/v1alpha1
kind: AgentPolicy
metadata: {name: asks}
spec:
  allowed_tools: [read_file]
  tool_rules:
    - tool: write_file
      action: ask
      rate_limit: "1/minute"
"""


class ScriptedClient:
    def __init__(self) -> None:
        self.asks: dict[Any, tuple[AskRequest, OnDone]] = {}
        self.cancelled: list[Any] = []
        self.closed = False
        self.fail = False

    def ask(self, request: AskRequest, on_done: OnDone) -> None:
        if self.fail:
            raise RuntimeError("client broke")
        self.asks[request.request_id] = (request, on_done)

    def answer(self, request_id: Any, outcome: Outcome) -> None:
        self.asks[request_id][1](AskResult(outcome))

    def cancel(self, request_id: Any) -> bool:
        self.cancelled.append(request_id)
        _, on_done = self.asks.pop(request_id)
        on_done(AskResult(Outcome.CANCELLED))
        return True

    def close(self) -> None:
        self.closed = True
        for _, on_done in self.asks.values():
            on_done(AskResult(Outcome.SHUTDOWN))


class Harness(LocalSession):
    def __init__(self, records: Path) -> None:
        self.client = ScriptedClient()
        super().__init__(load_policy_text(SPEC), records=records, agent_id_fixed=False)
        self.asks = Asks(self.session, lambda: self.client, progress_interval_s=0.05)
        self.session.asks = self.asks

    @staticmethod
    def _line(fd: int, timeout: float) -> bytes | None:
        buf = b""
        deadline = time.monotonic() + timeout
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not readable(fd, left):
                assert not buf, f"partial line {buf!r}"
                return None
            buf += os.read(fd, 1)
        return buf

    def host(self, timeout: float = 5.0) -> dict[str, Any]:
        line = self._line(self.host_r, timeout)
        assert line is not None, "nothing written to the host"
        return json.loads(line)

    def server(self, timeout: float = 5.0) -> bytes | None:
        return self._line(self.server_r, timeout)


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    with Harness(tmp_path / "records.jsonl") as harness:
        yield harness


def test_approved_forwards_exactly_the_reviewed_bytes(h: Harness) -> None:
    h.call(1, "write_file", {"path": "/etc/x", "content": "c"})
    request, _ = h.client.asks[1]
    assert request.tool == "write_file"
    assert request.arguments == {"path": "/etc/x", "content": "c"}
    assert request.rule == "tool_rules[0] (write_file ask)"
    assert h.server(0.05) is None  # nothing forwarded while the human thinks
    h.client.answer(1, Outcome.HUMAN_APPROVED)
    forwarded = h.server()
    assert forwarded is not None
    assert hashlib.sha256(forwarded.rstrip(b"\n")).hexdigest() == request.digest
    assert request.size == len(forwarded) - 1
    assert json.loads(forwarded)["params"]["arguments"] == {"path": "/etc/x", "content": "c"}
    assert h.session.is_in_flight(1)  # now waiting for the server's answer


@pytest.mark.parametrize(
    ("outcome", "message"),
    [
        (Outcome.DENIED_BY_USER, "Human approval denied"),
        (Outcome.TIMEOUT, "Human approval required but timed out"),
        (Outcome.QUEUE_FULL, "Human approval unavailable"),
        (Outcome.NO_DISPLAY, "Human approval unavailable"),
    ],
)
def test_denied_answers_the_outcome_row(h: Harness, outcome: Outcome, message: str) -> None:
    h.call("w", "write_file", {"path": "/etc/x"})
    h.client.answer("w", outcome)
    err = h.host()["error"]
    assert err["code"] == -32002
    assert err["message"] == message
    assert err["data"] == {"reason": outcome.value, "tool": "write_file", "request_id": "w"}
    assert h.server(0.05) is None


def test_denied_ask_gives_its_rate_limit_token_back(h: Harness) -> None:
    h.call(1, "write_file", {"path": "/etc/x"})
    h.client.answer(1, Outcome.DENIED_BY_USER)
    assert h.host()["error"]["data"]["reason"] == "denied_by_user"
    h.call(2, "write_file", {"path": "/etc/y"})
    assert 2 in h.client.asks  # asked again: the token came back
    h.client.answer(2, Outcome.HUMAN_APPROVED)
    assert h.server() is not None
    h.call(3, "write_file", {"path": "/etc/z"})  # the approved one spent it
    err = h.host()["error"]
    assert err["code"] == -32003
    assert err["data"]["reason"] == "rate_limited"
    assert 3 not in h.client.asks


def test_client_cancel_withdraws_the_ask_silently(h: Harness) -> None:
    h.call(7, "write_file", {"path": "/etc/x"})
    h.send(
        {
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": 7, "reason": "user gave up"},
        }
    )
    assert h.client.cancelled == [7]
    assert h.server(0.05) is None  # neither the call nor the cancel reached the server
    h.send({"jsonrpc": "2.0", "id": 8, "method": "ping"})
    assert json.loads(h.server() or b"{}")["method"] == "ping"
    assert not h.asks.is_pending(7)


def test_cancel_for_a_forwarded_request_is_forwarded(h: Harness) -> None:
    h.call(1, "read_file", {"path": "/tmp/a"})
    assert h.server() is not None
    h.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}})
    assert json.loads(h.server() or b"{}")["method"] == "notifications/cancelled"


def test_progress_is_reported_while_waiting(h: Harness) -> None:
    h.call(5, "write_file", {"path": "/etc/x"}, _meta={"progressToken": "tok-5"})
    first, second = h.host(), h.host()
    for note in (first, second):
        assert note["method"] == "notifications/progress"
        assert note["params"]["progressToken"] == "tok-5"
    assert second["params"]["progress"] > first["params"]["progress"]
    assert h.client.asks[5][0].progress_token == "tok-5"
    h.client.answer(5, Outcome.DENIED_BY_USER)
    # after the answer only the error may arrive (a tick in flight may precede it)
    while (msg := h.host()).get("method") == "notifications/progress":
        pass
    assert msg["error"]["data"]["reason"] == "denied_by_user"
    assert Harness._line(h.host_r, 0.2) is None


def test_on_done_counts_once(h: Harness) -> None:
    h.call(1, "write_file", {"path": "/etc/x"})
    h.client.answer(1, Outcome.DENIED_BY_USER)
    h.client.answer(1, Outcome.HUMAN_APPROVED)  # late and duplicate: ignored
    assert h.host()["error"]["data"]["reason"] == "denied_by_user"
    assert h.server(0.1) is None


def test_approval_after_the_server_is_gone(h: Harness) -> None:
    h.call(1, "write_file", {"path": "/etc/x"})
    h.session.close()
    h.client.answer(1, Outcome.HUMAN_APPROVED)
    assert h.host()["error"]["data"]["reason"] == "server_exited"
    assert h.server(0.05) is None


def test_close_denies_pending_asks_with_shutdown(h: Harness) -> None:
    h.call(1, "write_file", {"path": "/etc/x"})
    h.asks.close()
    assert h.client.closed
    assert h.host()["error"]["data"]["reason"] == "shutdown"


def test_broken_client_fails_closed(h: Harness) -> None:
    h.client.fail = True
    h.call(1, "write_file", {"path": "/etc/x"})
    assert h.host()["error"]["data"]["reason"] == "approver_unavailable"


def test_client_returning_an_allow_outcome_other_than_human_approved_is_a_deny(h: Harness) -> None:
    h.call(1, "write_file", {"path": "/etc/x"})
    h.client.answer(1, Outcome.POLICY_ALLOWED)
    assert h.host()["error"]["data"]["reason"] == "internal_error"
    assert h.server(0.05) is None


def test_ask_on_a_notification_is_dropped(h: Harness) -> None:
    h.send(
        {
            "jsonrpc": "2.0",
            "method": "tools/call",
            "params": {"name": "write_file", "arguments": {"path": "/etc/x"}},
        }
    )
    assert not h.client.asks
    assert h.server(0.05) is None
    assert Harness._line(h.host_r, 0.05) is None


def test_unavailable_approver_denies_at_once(h: Harness) -> None:
    from aip.proxy.approval.api import UnavailableApprover

    h.asks = Asks(h.session, UnavailableApprover, progress_interval_s=0.05)
    h.session.asks = h.asks
    h.call(9, "write_file", {"path": "/etc/x"})
    err = h.host()["error"]
    assert err["code"] == -32002
    assert err["data"]["reason"] == "approver_unavailable"
    assert h.server(0.05) is None
