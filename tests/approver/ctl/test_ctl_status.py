"""``aipctl approver status`` against a real approver holding an ask: the dialog on screen and
its deadline, the queue, the connected proxies, the backend and the audit log head."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aip.shared.outcomes import Outcome  # noqa: E402
from aip.shared.protocol.messages import Bye, Cancel  # noqa: E402
from tests.support.aipctl import aipctl  # noqa: E402
from tests.support.approverproc import Approver, Dealer, answer_program, wait_for  # noqa: E402

pytestmark = pytest.mark.e2e


def status_json(endpoint: str) -> dict[str, Any]:
    done = aipctl("approver", "status", "--json", "--endpoint", endpoint)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert isinstance(data, dict)
    return data


def test_status_of_an_approver_holding_an_ask(folder: Path) -> None:
    prog = answer_program(folder, "never")  # the human never answers: the dialog stays up
    with (
        Approver(folder, f"exec:{prog}", timeout_s=30).wait_ready() as approver,
        Dealer(approver.endpoint) as first,
        Dealer(approver.endpoint) as second,
    ):
        first.hello(agent_id="agent-one", server="filesystem")
        second.hello(agent_id="agent-two", server="postgres")
        held = first.ask(1, path="/etc/hosts")

        def on_screen() -> bool:
            return status_json(approver.endpoint)["dialog"] is not None

        wait_for(on_screen, 10, "a dialog on screen", poll_s=0.05)
        second.ask("q-1", tool="postgres_query", query="DROP TABLE users")
        wait_for(lambda: status_json(approver.endpoint)["queued"] == 1, 10, "a queued ask")
        data = status_json(approver.endpoint)
        assert data["backend"] == "exec"
        assert data["unavailable"] == ""
        assert data["timeout_s"] == 30
        assert data["pending"] == 2
        assert data["queued"] == 1  # one on screen, one waiting for the slot
        dialog = data["dialog"]
        assert dialog["session"] == first.session
        assert dialog["request_id"] == 1
        assert dialog["tool"] == "write_file"
        assert dialog["agent_id"] == "agent-one"
        assert dialog["server"] == "filesystem"
        assert 0 < dialog["seconds_left"] <= 30
        assert dialog["shown_at"].endswith("Z")
        proxies = {x["session"]: x for x in data["proxies"]}
        assert set(proxies) == {first.session, second.session}
        assert proxies[second.session]["agent_id"] == "agent-two"
        assert proxies[second.session]["server"] == "postgres"
        assert proxies[second.session]["pid"] == os.getpid()
        assert proxies[second.session]["policy"] == {"name": "test", "sha256": "0" * 64}
        assert proxies[first.session]["pending"] == 1
        assert data["audit_path"] == str(approver.audit_path)
        assert data["audit_available"] is True
        head = data["audit_head"]
        assert head["seq"] == data["audit_seq"]
        assert head["event"] == "genesis"  # nothing decided yet
        assert len(head["sha256"]) == 64

        human = aipctl("approver", "status", "--endpoint", approver.endpoint)
        assert human.returncode == 0, human.stderr
        text = human.stdout
        assert "dialogs:  exec (auto-deny after 30 s)" in text
        assert "queue:    1 waiting, 2 pending" in text
        assert "on screen: write_file for agent-one (server filesystem, request 1)" in text
        assert "auto-deny in " in text
        assert "proxies:  2 connected" in text
        assert "agent agent-two  server postgres" in text
        assert f"audit log: {approver.audit_path} (writable" in text
        assert "head: seq 1 genesis" in text

        # Withdrawn asks leave the picture; the head moves on with their records.
        first.send(Cancel(session=first.session, request_id=1, nonce=held.nonce))
        second.send(Bye(session=second.session))

        def idle() -> bool:
            d = status_json(approver.endpoint)
            return d["pending"] == 0 and len(d["proxies"]) == 1

        wait_for(idle, 10, "asks withdrawn", poll_s=0.05)
        after = status_json(approver.endpoint)
        assert after["dialog"] is None
        assert after["audit_head"]["seq"] > head["seq"]


def test_no_dialog_backend_is_said_plainly(folder: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    with Approver(folder, "auto", env=env).wait_ready() as approver:  # no display, no TTY
        data = status_json(approver.endpoint)
        assert data["backend"] == ""
        assert data["unavailable"].startswith(Outcome.NO_DISPLAY.value)
        human = aipctl("approver", "status", "--endpoint", approver.endpoint)
        assert "dialogs:  none: every ask is denied at once (no_display" in human.stdout


def test_no_approver(folder: Path) -> None:
    (folder / "run").mkdir(mode=0o700)
    done = aipctl("approver", "status", "--endpoint", f"ipc://{folder}/run/approver.sock")
    assert done.returncode == 1
    assert "no approver at" in done.stderr
    assert "approver.sock does not exist" in done.stderr
