"""Issue 11: the string layer's candidate rule. Any string with a separator is a candidate and
a relative one resolves against every base (cwd, command-line dirs, client roots); bare names
a base holds of a root hit; folders between a base and a root are protected exactly; every
Unicode spelling is one path; case folds where the file system folds."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aip.shared.policy import protected
from aip.shared.policy.protected import ProtectedRoots, TooManyCandidates

HOME = "/home/u"


def roots(*paths: str, cwd: str = "/srv", bases: tuple[str, ...] = ()) -> ProtectedRoots:
    return ProtectedRoots(paths, cwd, bases=bases, home=HOME, case_insensitive=False)


@pytest.mark.parametrize(
    "value",
    [
        ".ssh/id_ed25519",
        "x/../.ssh/id_ed25519",
        "./.ssh",
        ".ssh",  # a bare name $HOME holds
        "cat .ssh/id_ed25519",
        "see .ssh",  # a bare token: compared with the names the base holds
        "u/.ssh/x",  # against the base /home
        "u%2f.ssh%2fx",  # percent-encoded, for a server that decodes (against /home)
        "data/../../u/.ssh/x",
        "file:.ssh/id",
    ],
)
def test_relative_paths_resolve_against_every_base(value: str) -> None:
    r = roots("~/.ssh", cwd="/srv", bases=("/data", HOME, "/home"))
    assert r.hit(value) is not None, value
    assert roots("~/.ssh", cwd="/srv", bases=("/data",)).hit(value) is None, value


@pytest.mark.parametrize(
    "value",
    ["notes.txt", "project/src/main.py", ".sshx", "x/.ssh", "..", ".", "the ssh key", "/home"],
)
def test_other_relative_paths_miss(value: str) -> None:
    assert roots("~/.ssh", bases=(HOME,)).hit(value) is None


def test_folders_between_a_base_and_a_root_are_protected_exactly() -> None:
    r = roots("~/.config/aip", "~/.local/state/aip", bases=(HOME,))
    for value in (".config", "x/../.config", "/home/u/.config", ".local", ".local/state"):
        assert r.hit(value) is not None, value
    for value in (".config/Code/settings.json", ".local/share/x", "~", "/home", "/"):
        assert r.hit(value) is None, value
    # A base and its ancestors stay free, and "/" as a base takes nothing above a root.
    assert roots("~/.config/aip", cwd="/").hit("/home/u") is None
    assert roots("~/.config/aip", cwd="/", bases=(HOME,)).hit("/home/u") is None


def test_a_base_inside_a_protected_root_makes_every_relative_name_hit() -> None:
    r = roots("~/.ssh", cwd="/home/u/.ssh")
    assert r.hit("id_ed25519") is not None
    assert r.hit("anything at all") is not None
    assert r.hit("/srv/x") is None  # absolute paths are still judged on their own


def test_too_many_bases_refuse_relative_candidates() -> None:
    many = tuple(f"/b{i}" for i in range(protected.MAX_BASES + 1))
    r = roots("~/.ssh", bases=many)
    with pytest.raises(TooManyCandidates):
        r.hit("x/y")
    assert r.hit("/srv/ok") is None


def test_each_base_counts_against_the_candidate_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(protected, "MAX_CANDIDATES", 16)
    r = roots("~/.ssh", bases=("/a", "/b", "/c", "/d"))
    r.hit("x/1 x/2")  # the text and its two tokens, 3 x 5 bases: over
    with pytest.raises(TooManyCandidates):
        r.hit("x/1 x/2 x/3")


CAFE_NFC = "Caf\u00e9"


@pytest.mark.parametrize("form", ["NFC", "NFD", "NFKC", "NFKD"])
def test_every_unicode_spelling_of_a_protected_path_hits(form: str) -> None:
    r = roots(f"~/{CAFE_NFC}", bases=(HOME,))
    spelled = unicodedata.normalize(form, f"{CAFE_NFC}/secret.txt")
    assert r.hit(spelled) is not None
    assert r.hit(f"/home/u/{spelled}") is not None
    nfd_root = roots(unicodedata.normalize("NFD", f"~/{CAFE_NFC}"), bases=(HOME,))
    assert nfd_root.hit(spelled) is not None


def test_compatibility_spellings_of_a_separator_hit() -> None:
    # U+FF0F FULLWIDTH SOLIDUS is "/" under NFKC: a server that normalizes would open it.
    assert roots("~/.ssh", bases=(HOME,)).hit(".ssh\uff0fid_ed25519") is not None


def test_symlink_to_a_spelling_the_server_would_pick(tmp_path: Path) -> None:
    """A folder named in NFC that is a symlink into the protected dir, asked for in NFD."""
    secret = tmp_path / "secret"
    secret.mkdir()
    (tmp_path / CAFE_NFC).symlink_to(secret)
    r = ProtectedRoots([str(secret)], "/", bases=(str(tmp_path),), case_insensitive=False)
    assert r.hit(unicodedata.normalize("NFD", f"{CAFE_NFC}/key")) is not None


def test_case_folding_is_probed_on_the_roots_file_system(tmp_path: Path) -> None:
    (tmp_path / "Secret").mkdir()
    probe = ProtectedRoots([str(tmp_path / "Secret")], str(tmp_path))
    folds = os.path.exists(tmp_path / "sECRET")
    assert probe.case_insensitive is (folds or protected.CASE_INSENSITIVE)
    assert (probe.hit("sECRET/x") is not None) is probe.case_insensitive


_SEGMENT = st.sampled_from(["a", "b", ".ssh", "..", ".", "u", "home", "id"])


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(_SEGMENT, min_size=1, max_size=6), base=st.sampled_from(["/srv", HOME]))
def test_a_relative_path_hits_iff_it_lands_under_the_root_from_some_base(
    parts: list[str], base: str
) -> None:
    """Lexically (no symlinks under /home/u or /srv on the test machine's fake paths)."""
    relative = "/".join(parts)
    landed = os.path.normpath(os.path.join(base, relative))
    expected = landed == "/home/u/.ssh" or landed.startswith("/home/u/.ssh/")
    if "/" not in relative:  # a bare name: compared with what the base holds
        expected = expected or (base == HOME and relative == ".ssh")
    r = ProtectedRoots(["~/.ssh"], base, home=HOME, case_insensitive=False)
    assert (r.hit(relative) is not None) is expected, (base, relative)


def test_the_engine_keeps_a_bounded_number_of_contexts() -> None:
    from aip.shared.outcomes import Outcome
    from aip.shared.policy import engine
    from aip.shared.policy.decision import Context
    from tests.shared.enginekit import call, policy, run

    pol = policy("allowed_tools: [r]\nprotected_paths: [/etc/shadow]")
    for i in range(3 * engine.MAX_MEMO_CONTEXTS):
        ctx = Context(cwd="/", bases=(f"/b{i}",))
        assert (
            run(pol, call("r", path="../../etc/shadow"), context=ctx).outcome
            is Outcome.PROTECTED_PATH
        )
    kept = [k for k in pol.memo if isinstance(k, tuple) and k[0] == "protected"]
    assert len(kept) <= engine.MAX_MEMO_CONTEXTS
