"""Family roots (``<path>.*``): the file and every ``<name>.<...>`` sibling, e.g. an audit
log's rotations and torn copies; nothing else beside it, no ancestor."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aip.shared.policy.always_protected import always_protected
from aip.shared.policy.protected import ProtectedRoots, family

HOME = "/home/u"
LOG = "/logs/custom-audit.jsonl"


def roots(*items: str, case_insensitive: bool = False) -> ProtectedRoots:
    return ProtectedRoots(items, "/logs", home=HOME, case_insensitive=case_insensitive)


@pytest.mark.parametrize(
    "value",
    [
        LOG,
        LOG + ".1",
        LOG + ".17",
        LOG + ".torn-20261125T150000Z",
        LOG + ".1/inside",
        "/logs/x/../custom-audit.jsonl.2",
        "//logs/custom-audit.jsonl.3",
        "./custom-audit.jsonl.torn-1",
        f"file://{LOG}.5",
        f"cat {LOG}.6 | head",
    ],
)
def test_the_file_and_its_dotted_siblings_hit(value: str) -> None:
    assert roots(family(LOG)).hit({"path": value}) is not None


@pytest.mark.parametrize(
    "value",
    [
        "/logs",
        "/logs/",
        "/logs/custom-audit.json",
        "/logs/custom-audit.jsonlx",
        "/logs/custom-audit.jsonl-old",
        "/logs/other.jsonl",
        "/logs/other.jsonl.1",
        "/logsx/custom-audit.jsonl.1",
        "/other/custom-audit.jsonl.1",
    ],
)
def test_unrelated_siblings_and_ancestors_miss(value: str) -> None:
    assert roots(family(LOG)).hit({"path": value}) is None


def test_shown_root_names_the_family() -> None:
    assert roots(family(LOG)).hit(LOG + ".2") == (LOG + ".2", LOG + ".*")
    assert roots(family(LOG)).hit(LOG) == (LOG, LOG)


def test_a_dot_star_without_a_name_stays_a_literal_path() -> None:
    r = roots("/home/u/.*", "/srv/..*")
    assert r.hit("/home/u/.*") is not None
    assert r.hit("/home/u/x") is None
    assert r.hit("/home/u.bak") is None
    assert r.hit("/srv") is None


def test_case_folded_where_the_filesystem_folds() -> None:
    assert roots(family(LOG), case_insensitive=True).hit("/LOGS/Custom-Audit.JSONL.9")
    assert roots(family(LOG)).hit("/LOGS/Custom-Audit.JSONL.9") is None


def test_symlinks_to_the_log_dir_and_from_it(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    alias = tmp_path / "alias"
    alias.symlink_to(real)
    (real / "a.jsonl").write_text("")
    (real / "a.jsonl.1").write_text("")
    (tmp_path / "b").symlink_to(real / "a.jsonl.torn-1")  # dangling, into the family
    for given_as in (alias, real):
        r = ProtectedRoots([family(str(given_as / "a.jsonl"))], "/", home=HOME)
        for candidate in (
            real / "a.jsonl.1",
            alias / "a.jsonl.1",
            alias / "a.jsonl.2",
            tmp_path / "b",
        ):
            assert r.hit(str(candidate)) is not None, (given_as, candidate)
        assert r.hit(str(alias / "a.json")) is None
        assert r.hit(str(real)) is None


_NAME = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"), min_size=1
)


@given(tail=_NAME)
def test_every_dotted_name_hits(tail: str) -> None:
    assert roots(family(LOG)).hit(LOG + "." + tail) is not None or not _plain(tail)


@given(sep=st.characters(blacklist_characters="./\x00", blacklist_categories=("Cs",)), tail=_NAME)
def test_no_other_separator_hits(sep: str, tail: str) -> None:
    value = LOG + sep + tail
    if _plain(value):
        assert roots(family(LOG)).hit(value) is None


def _plain(text: str) -> bool:
    """No whitespace or punctuation that would cut a candidate into others (tested elsewhere),
    in any Unicode spelling (NFKC turns U+00A8 into a space and a combining mark)."""
    return not any(
        c.isspace() or c in ";|&<>,()'\"`={}[]:"
        for form in ("NFC", "NFD", "NFKC", "NFKD")
        for c in unicodedata.normalize(form, text)
    )


def test_always_protected_gives_each_log_as_a_family(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("AIP_AUDIT_LOG", raising=False)
    custom = str(tmp_path / "logs" / "a.jsonl")
    got = always_protected(None, None, [custom])
    default = str(tmp_path / "state" / "aip" / "aip-audit.jsonl")
    assert {custom, family(custom), default, family(default)} <= set(got)
    r = ProtectedRoots(got, "/", home=os.path.expanduser("~"))
    assert r.hit(custom + ".3") is not None
    assert r.hit(custom + ".torn-x") is not None
    assert r.hit(str(tmp_path / "logs" / "notes.txt")) is None
