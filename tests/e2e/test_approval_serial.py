"""Serialization: 20 proxy sessions ask at once; one dialog at a time, every ask answered
exactly once, and a flooding session cannot starve another (round-robin)."""

from __future__ import annotations

import itertools
import json
import os
import threading
from pathlib import Path

import pytest

from aip.proxy.approval.api import AskRequest, AskResult
from aip.proxy.approval.zmq_client import ZmqApprovalClient
from aip.shared.outcomes import Outcome
from tests.support.approverproc import Approver, answer_program, hello, new_session

pytestmark = pytest.mark.e2e


def _request(request_id: int) -> AskRequest:
    return AskRequest(request_id, "write_file", {"path": f"/tmp/{request_id}"}, "r", "d" * 64, 9)


class Tally:
    def __init__(self, expected: int) -> None:
        self.lock = threading.Lock()
        self.results: dict[tuple[int, int], list[AskResult]] = {}
        self.expected = expected
        self.all_done = threading.Event()

    def callback(self, client: int, request_id: int) -> object:
        def on_done(result: AskResult) -> None:
            with self.lock:
                self.results.setdefault((client, request_id), []).append(result)
                if len(self.results) == self.expected:
                    self.all_done.set()

        return on_done


def _intervals(record: Path) -> list[tuple[float, float, object]]:
    opened: dict[int, tuple[float, object]] = {}
    spans = []
    for line in record.read_text().splitlines():
        event = json.loads(line)
        if event["event"] == "open":
            opened[event["pid"]] = (event["t"], event["request"]["request_id"])
        else:
            start, rid = opened.pop(event["pid"])
            spans.append((start, event["t"], rid))
    assert not opened, "a dialog never closed"
    return sorted(spans)


def test_twenty_sessions_one_dialog_at_a_time(folder: Path) -> None:
    record = folder / "record.jsonl"
    env = {**os.environ, "AIP_TEST_RECORD": str(record)}
    prog = answer_program(folder, "allow")
    with Approver(folder, f"exec:{prog}", timeout_s=30, env=env).wait_ready() as approver:
        clients = [ZmqApprovalClient(approver.endpoint, hello(new_session())) for _ in range(20)]
        tally = Tally(20)
        try:
            start = threading.Barrier(20)

            def go(i: int) -> None:
                start.wait()
                clients[i].ask(_request(i), tally.callback(i, i))  # type: ignore[arg-type]

            threads = [threading.Thread(target=go, args=(i,)) for i in range(20)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert tally.all_done.wait(40), f"only {len(tally.results)} answered"
        finally:
            for c in clients:
                c.close()
        assert all(len(r) == 1 for r in tally.results.values())
        assert {r[0].outcome for r in tally.results.values()} == {Outcome.HUMAN_APPROVED}
        spans = _intervals(record)
        assert len(spans) == 20
        for (_, end, _), (start_next, _, _) in itertools.pairwise(spans):
            assert end <= start_next, "two dialogs were open at once"
        assert len(approver.decisions()) == 20


def test_a_flooding_session_cannot_starve_another(folder: Path) -> None:
    record = folder / "record.jsonl"
    env = {**os.environ, "AIP_TEST_RECORD": str(record)}
    prog = answer_program(folder, "slow:0.05:deny")
    with Approver(folder, f"exec:{prog}", timeout_s=30, env=env).wait_ready() as approver:
        flood = ZmqApprovalClient(approver.endpoint, hello(new_session(), agent_id="flood"))
        quiet = ZmqApprovalClient(approver.endpoint, hello(new_session(), agent_id="quiet"))
        tally = Tally(11)
        try:
            for i in range(10):  # over the per-session cap (8) and budget (burst 6)
                flood.ask(_request(i), tally.callback(0, i))  # type: ignore[arg-type]
            quiet.ask(_request(100), tally.callback(1, 100))  # type: ignore[arg-type]
            assert tally.all_done.wait(30)
        finally:
            flood.close()
            quiet.close()
        outcomes = [tally.results[(0, i)][0].outcome for i in range(10)]
        assert outcomes.count(Outcome.DENIED_BY_USER) == 6  # the budget's burst
        assert set(outcomes[6:]) == {Outcome.ASK_RATE_LIMITED}
        assert tally.results[(1, 100)][0].outcome is Outcome.DENIED_BY_USER
        order = [rid for _, _, rid in _intervals(record)]
        # Behind the flood dialog already on screen and at most one more (one per round).
        assert order.index(100) <= 2
        texts = [
            json.loads(x)["request"]["text"]
            for x in record.read_text().splitlines()
            if json.loads(x)["event"] == "open"
        ]
        assert any("3rd request from this agent in 60 s." in t for t in texts)
        _ = approver
