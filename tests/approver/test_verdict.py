"""The ``exec:`` answer grammar (issue 13): only the listed forms count; all else is an error."""

from __future__ import annotations

import pytest

from aip.approver.dialogs.verdict import (
    ALLOW_ONCE,
    DENY,
    ERROR,
    Answer,
    Remember,
    RememberOffer,
    Scope,
    Verdict,
    parse_answer_line,
    parse_duration,
)


@pytest.mark.parametrize(
    ("line", "verdict"),
    [
        ("allow", ALLOW_ONCE),
        ("deny", DENY),
        ("allow remember=exact for=15m", Verdict(Answer.ALLOW, Remember(Scope.EXACT, 900))),
        ("allow remember=like for=1h", Verdict(Answer.ALLOW, Remember(Scope.LIKE, 3600))),
        ("allow remember=exact for=session", Verdict(Answer.ALLOW, Remember(Scope.EXACT, None))),
        ("deny remember=like for=90s", Verdict(Answer.DENY, Remember(Scope.LIKE, 90))),
    ],
)
def test_answers_that_count(line: str, verdict: Verdict) -> None:
    assert parse_answer_line(line) == verdict


@pytest.mark.parametrize(
    "line",
    [
        "",
        "Allow",
        "allow ",
        "allow remember=exact",
        "allow remember=forever for=1h",
        "allow remember=exact for=9h",  # over the 8 h cap
        "allow remember=exact for=0m",
        "allow remember=exact for=1d",
        "deny remember=exact for=session",  # "don't ask again" is always timed
        "allow for=1h remember=exact",
        "allow  remember=exact for=1h",
        "yes",
    ],
)
def test_everything_else_is_a_dialog_error(line: str) -> None:
    assert parse_answer_line(line) is ERROR


def test_durations() -> None:
    assert parse_duration("8h") == 8 * 3600
    assert parse_duration("480m") == 8 * 3600
    assert parse_duration("481m") is None
    assert parse_duration("015m") is None


def test_an_offer_lists_its_scopes() -> None:
    assert RememberOffer().scopes() == ()
    assert RememberOffer(offered=True).scopes() == (Scope.EXACT,)
    like = RememberOffer(offered=True, like={"path": "/tmp/[^/]*"})
    assert like.scopes() == (Scope.EXACT, Scope.LIKE)
    assert RememberOffer(offered=True, like={"p": "x"}, exact_only=True).scopes() == (Scope.EXACT,)
