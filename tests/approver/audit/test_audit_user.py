"""``user`` for a uid without a passwd entry (containers): one value in the whole log."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from aip.shared.audit.record import decision_record
from aip.shared.outcomes import Outcome
from aip.shared.protocol.messages import Audit, AuditAck
from tests.support.approverproc import Approver, Dealer, answer_program, unnamed_uid, wait_for

pytestmark = pytest.mark.e2e


def test_an_approver_whose_uid_has_no_name_records_one_user_value(folder: Path) -> None:
    """The approver runs as a uid without a passwd entry (a user namespace maps ours to it;
    the peer check still sees the same uid). The record of the ask it answered (the name it
    gave the peer at hello) and the proxy record it ingested (filled in by the writer) must
    name the same user."""
    unshare = shutil.which("unshare")
    assert unshare is not None, "unshare (util-linux, on every Debian) is needed"
    uid = unnamed_uid()
    wrap = [unshare, "--user", f"--map-user={uid}", f"--map-group={uid}"]
    env = {k: v for k, v in os.environ.items() if k != "AIP_USER"}
    prog = answer_program(folder, "allow")
    with (
        Approver(folder, f"exec:{prog}", env=env, wrap=wrap).wait_ready() as approver,
        Dealer(approver.endpoint) as d,
    ):
        d.hello()
        d.ask(7)
        assert d.decision().outcome is Outcome.HUMAN_APPROVED
        proxy_record = decision_record(
            outcome=Outcome.POLICY_ALLOWED,
            session=d.session,
            agent_id="agent-test",
            tool="read_file",
            arguments={"path": "/tmp/x"},
            rseq=1,
        )
        d.send(Audit(session=d.session, batch=1, records=[proxy_record]))
        assert isinstance(d.recv(), AuditAck)
        wait_for(lambda: len(approver.decisions()) == 2, 5, "two decision lines")
        users = [r["user"] for r in approver.decisions()]
    assert users == [f"uid-{uid}", f"uid-{uid}"]
