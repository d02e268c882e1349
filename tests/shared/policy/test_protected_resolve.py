"""The kernel shortcut for realpath in protected-path checks (Linux: open(O_PATH) + /proc,
lstat walk for missing tails) answers exactly what ``os.path.realpath`` answers, and a symlink
swapped in between two checks is seen by the second."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aip.shared.policy import protected_resolve, protected_tokens
from aip.shared.policy.protected import ProtectedRoots

pytestmark = pytest.mark.skipif(not protected_resolve.KERNEL_RESOLVE, reason="Linux /proc only")

HOME = "/home/u"


def _tree(base: Path) -> Path:
    """Directories, files and every kind of symlink a path could run through."""
    (base / "d" / "e").mkdir(parents=True)
    (base / "secret" / "inner").mkdir(parents=True)
    (base / "d" / "f.txt").write_text("x")
    (base / "secret" / "key").write_text("k")
    links = {
        "abs": base / "secret",  # absolute, to a directory
        "rel": Path("d/e"),  # relative
        "up": Path("../" + base.name + "/secret"),  # relative with ..
        "file": base / "d" / "f.txt",  # to a file
        "dangle": base / "secret" / "new",  # into the protected dir, target not there yet
        "dangle2": Path("nowhere/deeper"),
        "loop": Path("loop"),  # to itself
        "chain": Path("abs"),  # to a link
    }
    for name, target in links.items():
        (base / name).symlink_to(target)
    (base / "d" / "back").symlink_to(Path(".."))
    return base


_NAMES = st.sampled_from(
    [
        *("d", "e", "f.txt", "secret", "inner", "key", "abs", "rel", "up", "file", "dangle"),
        *("dangle2", "loop", "chain", "back", "missing", "new", "..", ".", ""),
    ]
)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tree(tmp_path_factory.mktemp("resolve"))


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(names=st.lists(_NAMES, max_size=6), slash=st.booleans())
def test_same_answer_as_realpath(tree: Path, names: list[str], slash: bool) -> None:
    path = str(tree) + "/" + "/".join(names) + ("/" if slash else "")
    assert protected_resolve.realpath(path) == protected_resolve.collapse(os.path.realpath(path)), (
        path
    )
    normal = protected_resolve.collapse(os.path.normpath(path))
    assert protected_resolve.realpath(path, normal) == protected_resolve.collapse(
        os.path.realpath(path)
    )


@pytest.mark.parametrize(
    "rel",
    [
        "secret/key",
        "abs/key",
        "chain/inner/x/y",
        "up/key",
        "dangle",  # a dangling link into the protected dir: realpath follows it
        "dangle/more",
        "d/back/secret",
        "d/back/abs/inner",
        "rel/../../secret/key",
    ],
)
def test_paths_into_the_protected_dir_hit(tree: Path, rel: str) -> None:
    r = ProtectedRoots([str(tree / "secret")], "/", home=HOME, case_insensitive=False)
    assert r.hit(f"{tree}/{rel}") is not None, rel


@pytest.mark.parametrize(
    "rel", ["d/f.txt", "file", "rel/x", "missing/a/b", "loop/x", "dangle2", "d/f.txt/x"]
)
def test_paths_elsewhere_miss(tree: Path, rel: str) -> None:
    r = ProtectedRoots([str(tree / "secret")], "/", home=HOME, case_insensitive=False)
    assert r.hit(f"{tree}/{rel}") is None, rel


def test_a_symlink_swapped_in_between_two_checks_is_seen(tmp_path: Path) -> None:
    (tmp_path / "secret").mkdir()
    (tmp_path / "work" / "real").mkdir(parents=True)
    r = ProtectedRoots([str(tmp_path / "secret")], "/", home=HOME, case_insensitive=False)
    victim = tmp_path / "work" / "out"
    path = f"{victim}/id_rsa"
    assert r.hit(path) is None  # missing: checked as written
    victim.symlink_to(tmp_path / "work" / "real")
    assert r.hit(path) is None  # a harmless link
    victim.unlink()
    victim.symlink_to(tmp_path / "secret")  # swapped for one into the protected dir
    assert r.hit(path) is not None
    victim.unlink()
    victim.symlink_to(tmp_path / "secret" / "not-yet")  # dangling, into the protected dir
    assert r.hit(str(victim)) is not None
    victim.unlink()
    victim.mkdir()  # a plain directory again
    assert r.hit(path) is None


def test_a_parent_swapped_for_a_symlink_is_seen(tmp_path: Path) -> None:
    (tmp_path / "secret").mkdir()
    parent = tmp_path / "a" / "b"
    parent.mkdir(parents=True)
    r = ProtectedRoots([str(tmp_path / "secret")], "/", home=HOME, case_insensitive=False)
    path = f"{parent}/c/d.txt"
    assert r.hit(path) is None
    parent.rmdir()
    parent.symlink_to(tmp_path / "secret")
    assert r.hit(path) is not None


def test_falls_back_to_realpath_off_the_fast_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loops and non-normal missing paths are answered by realpath itself."""
    calls: list[str] = []
    real = os.path.realpath

    def spy(path: str, *args: object, **kwargs: object) -> str:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(protected_resolve.os.path, "realpath", spy)
    (tmp_path / "loop").symlink_to("loop")
    assert protected_resolve.realpath(f"{tmp_path}/loop/x") == real(f"{tmp_path}/loop/x")
    assert protected_resolve.realpath(f"{tmp_path}/missing/../x") == real(
        f"{tmp_path}/missing/../x"
    )
    assert len(calls) == 2
    calls.clear()
    assert protected_resolve.realpath(f"{tmp_path}/missing/x") == f"{tmp_path}/missing/x"
    assert protected_resolve.realpath(str(tmp_path)) == real(str(tmp_path))
    assert calls == []  # the common cases never reach it


def test_proc_fd_dir_is_reopened_in_a_child_after_fork(tmp_path: Path) -> None:
    protected_resolve.realpath(str(tmp_path))  # opened in this process
    target = tmp_path / "t"
    target.mkdir()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            ok = protected_resolve.realpath(str(target)) == os.path.realpath(target)
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_an_unusable_proc_falls_back_to_realpath(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "secret").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "secret")

    def broken() -> int:
        raise OSError("no /proc")

    monkeypatch.setattr(protected_resolve, "_proc_fds", broken)
    r = ProtectedRoots([str(tmp_path / "secret")], "/", home=HOME, case_insensitive=False)
    assert r.hit(f"{tmp_path}/link/key") is not None


_STARTS = ("/", "~", "$HOME", "${HOME}", ".", "file:")


def _old_tokens(text: str) -> set[str]:
    """The candidates of the rule before issue 11 (only strings starting with one of
    ``_STARTS``): the tokens found now must include every one of them."""
    out: set[str] = set()
    if text.startswith(_STARTS):
        out.add(text)
    out.update(p for p in text.split() if p.startswith(_STARTS))
    for piece in protected_tokens.GLUE.split(text):
        if piece.startswith(_STARTS):
            out.add(piece)
        if ":" in piece and not piece.startswith("file:"):
            out.update(s for s in piece.split(":")[1:] if s.startswith(_STARTS))
    return out


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(["/", "~", ".", "$HOME", "file:", ":", "a", "x/y", ";", "="]),
            st.sampled_from([" ", "\t", "\x1c", "\x1f", "\x85", "\xa0", "\u2028", "\u3000"]),
            st.text(max_size=3),
        ),
        max_size=8,
    ).map("".join)
)
def test_tokens_include_every_candidate_of_the_old_rule(text: str) -> None:
    found = set(protected_tokens.tokens(text))
    assert _old_tokens(text) <= found, repr(text)
    # and every whitespace token and glue piece is one now, whatever it starts with
    assert {p for p in text.split() if p} <= found, repr(text)
    assert {p for p in protected_tokens.GLUE.split(text) if p} <= found, repr(text)
