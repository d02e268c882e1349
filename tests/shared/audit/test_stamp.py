"""The one timestamp and the one user name of audit records, in both processes."""

from __future__ import annotations

import os
import pwd
import re
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aip.approver.audit.writer import AuditLog
from aip.shared.audit.record import decision_record
from aip.shared.audit.stamp import rfc3339, user_name
from aip.shared.outcomes import Outcome
from tests.support.approverproc import unnamed_uid


def test_a_uid_without_a_passwd_entry_is_named_uid_n(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIP_USER", raising=False)
    uid = unnamed_uid()
    assert user_name(uid) == f"uid-{uid}"
    assert user_name(os.getuid()) == pwd.getpwuid(os.getuid()).pw_name == user_name()


def test_aip_user_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIP_USER", "alice@example.com")
    assert user_name(unnamed_uid()) == "alice@example.com"


async def test_the_writer_names_an_unnamed_uid_as_the_server_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same human gets one ``user`` value in the log, whoever filled it in."""
    monkeypatch.delenv("AIP_USER", raising=False)

    def no_entry(uid: int) -> pwd.struct_passwd:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    path = tmp_path / "aip-audit.jsonl"
    async with AuditLog(path) as audit:
        await audit.append(
            decision_record(outcome=Outcome.POLICY_ALLOWED, session="0" * 16, agent_id="a", rseq=1)
        )
    written = orjson.loads(path.read_bytes().splitlines()[-1])
    assert written["user"] == f"uid-{os.getuid()}" == user_name(os.getuid())


def _datetime_way(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@given(st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_rfc3339_matches_datetime(t: float) -> None:
    assert rfc3339(t) == _datetime_way(t)


@pytest.mark.parametrize(
    ("t", "text"),
    [
        (1772556296.580, "2026-03-03T16:44:56.580Z"),
        (1772556300.0, "2026-03-03T16:45:00.000Z"),
        (1772556299.9999996, "2026-03-03T16:45:00.000Z"),  # rounds into the next second
    ],
)
def test_rfc3339_examples(t: float, text: str) -> None:
    assert rfc3339(t) == text


def test_rfc3339_now() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", rfc3339())
