"""The policy node cache (aip.shared.policy.node_cache, issue 16: start-up): a proxy's second
load of unchanged bytes validates the graph the first one composed, without PyYAML; it gives
the very policy a parse gives; anything that is not a sound private entry of ours for a policy
of ours means a parse; a failure to keep one never fails a load."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aip.shared.errors import PolicyError
from aip.shared.policy import node_cache, nodes, yaml_nodes
from aip.shared.policy.load import load_policy
from tests.support.freshpy import python_c

EXAMPLES = sorted((Path(__file__).resolve().parents[3] / "examples" / "policies").glob("*.yaml"))


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv(node_cache.ENV, raising=False)
    return tmp_path / "state"


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copyfile(src, dst)
    dst.chmod(0o600)
    return dst


def _entries() -> list[Path]:
    folder = node_cache.folder()
    return sorted(folder.iterdir()) if folder.exists() else []


def _no_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(text: str) -> object:
        raise AssertionError("parsed although the cache holds this policy")

    monkeypatch.setattr("aip.shared.policy.load.compose", refuse)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_a_cached_load_is_the_parsed_policy(
    example: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _copy(example, tmp_path)
    parsed = load_policy(path, cache=True)
    assert len(_entries()) == 1
    assert (_entries()[0].stat().st_mode & 0o777, node_cache.folder().stat().st_mode & 0o777) == (
        0o600,
        0o700,
    )
    _no_parse(monkeypatch)
    cached = load_policy(path, cache=True)
    assert cached == parsed
    assert repr(cached) == repr(parsed)
    assert cached.sha256 == parsed.sha256


def test_problems_and_lines_come_from_the_cached_graph(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "apiVersion: aip.io/v1alpha1\nkind: AgentPolicy\nmetadata:\n  name: p\nspec:\n"
        "  tool_rules:\n    - tool: a\n      action: allow\n    - tool: b\n      action: maybe\n"
    )
    path.chmod(0o600)
    with pytest.raises(PolicyError) as first:
        load_policy(path, cache=True)
    _no_parse(monkeypatch)
    with pytest.raises(PolicyError) as again:
        load_policy(path, cache=True)
    assert str(again.value) == str(first.value)
    assert ":10:" in str(again.value)


def test_other_bytes_are_parsed_again(tmp_path: Path) -> None:
    path = _copy(EXAMPLES[0], tmp_path)
    load_policy(path, cache=True)
    path.write_text(path.read_text() + "\n# edited\n")
    load_policy(path, cache=True)
    assert len(_entries()) == 2


def test_off_without_the_flag_or_by_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _copy(EXAMPLES[0], tmp_path)
    load_policy(path)  # aipctl, the approver: no cache
    assert not node_cache.folder().exists()
    monkeypatch.setenv(node_cache.ENV, "off")
    load_policy(path, cache=True)
    assert not node_cache.folder().exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_a_policy_owned_by_another_uid_is_always_parsed(tmp_path: Path) -> None:
    """Whoever could forge an entry (our uid) could rewrite a policy of ours, but not one that
    only its owner may change."""
    path = _copy(EXAMPLES[0], tmp_path)
    os.chown(path, 4242, 4242)
    load_policy(path, check_safety=False, cache=True)
    assert not node_cache.folder().exists()
    assert node_cache.usable(os.geteuid())
    assert not node_cache.usable(4242)


def _spoiled(how: str, entry: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if how == "group-readable":
        entry.chmod(0o640)
    elif how == "symlink":
        real = entry.with_name("elsewhere")
        entry.rename(real)
        entry.symlink_to(real)
    elif how == "truncated":
        entry.write_bytes(entry.read_bytes()[:-20])
    elif how == "not-a-graph":
        entry.write_bytes(b'[0,"tag:yaml.org,2002:str",1,["not","a","string"]]')
    elif how == "folder-open":
        entry.parent.chmod(0o755)
    elif how == "foreign":
        if os.geteuid() != 0:
            pytest.skip("chown needs root")
        os.chown(entry, 4242, 4242)
    elif how == "pyyaml-upgraded":
        monkeypatch.setattr(node_cache, "_yaml_stamp", lambda: "another")


@pytest.mark.parametrize(
    "how",
    [
        "group-readable",
        "symlink",
        "truncated",
        "not-a-graph",
        "folder-open",
        "foreign",
        "pyyaml-upgraded",
    ],
)
def test_an_entry_that_is_not_sound_means_a_parse(
    how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _copy(EXAMPLES[0], tmp_path)
    parsed = load_policy(path, cache=True)
    sha = parsed.sha256
    assert node_cache.load(sha) is not None
    _spoiled(how, _entries()[0], monkeypatch)
    assert node_cache.load(sha) is None
    assert load_policy(path, cache=True) == parsed


def test_keeping_an_entry_may_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    state.write_text("a file where the state folder should be")
    path = _copy(EXAMPLES[0], tmp_path)
    assert load_policy(path, cache=True) == load_policy(path)


def test_only_the_newest_entries_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    for i in range(node_cache.KEEP + 3):
        path.write_text(
            f"apiVersion: aip.io/v1alpha1\nkind: AgentPolicy\nmetadata:\n  name: p{i}\nspec: {{}}\n"
        )
        path.chmod(0o600)
        sha = load_policy(path, cache=True).sha256
        assert node_cache.load(sha) is not None  # the one just kept, whatever the file times
    assert len(_entries()) == node_cache.KEEP


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)
_scalars = st.builds(nodes.Scalar, _text, _text, st.integers(0, 10**6))
_trees = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.builds(nodes.Sequence, _text, st.lists(inner, max_size=4), st.integers(0, 99)),
        st.builds(
            nodes.Mapping, _text, st.lists(st.tuples(inner, inner), max_size=4), st.integers(0, 99)
        ),
    ),
    max_leaves=30,
)


def _flat(node: nodes.Node) -> object:
    if isinstance(node, nodes.Mapping):
        return ("m", node.tag, node.line, [(_flat(k), _flat(v)) for k, v in node.value])
    if isinstance(node, nodes.Sequence):
        return ("s", node.tag, node.line, [_flat(i) for i in node.value])
    return ("v", node.tag, node.line, node.value)


@settings(max_examples=200, deadline=None)
@given(_trees)
def test_encode_then_decode_is_the_same_graph(tree: nodes.Node) -> None:
    back = nodes.decode(nodes.encode(tree))
    assert back is not None
    assert _flat(back) == _flat(tree)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"[",
        b"{}",
        b'[0,"t",1]',
        b'[3,"t",1,"x"]',
        b'[0,"t",-1,"x"]',
        b'[0,"t",1.5,"x"]',
        b'[true,"t",1,"x"]',
        b'[1,"t",1,[[[0,"t",1,"k"]]]]',
        b'[2,"t",1,[0]]',
        b'[2,"t",1,"items"]',
        b"[2," + b'"t",1,[' * 40 + b'[0,"t",1,"x"]' + b"]]" * 40,
    ],
)
def test_decode_refuses_what_encode_never_writes(data: bytes) -> None:
    assert nodes.decode(data) is None


def test_the_second_start_of_a_proxy_does_not_import_pyyaml(tmp_path: Path) -> None:
    path = _copy(EXAMPLES[0], tmp_path)
    code = (
        "import sys; from aip.shared.policy.load import load_policy;"
        f"load_policy({str(path)!r}, cache=True);"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'yaml', '_yaml'}))"
    )
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    assert python_c(code, env=env) == "['yaml']"
    assert python_c(code, env=env) == "[]"


SEQ = "tag:yaml.org,2002:seq"
MAP = "tag:yaml.org,2002:map"


def test_the_graph_of_a_parse() -> None:
    root, problems = yaml_nodes.compose("a: [1, x]\nb:\n  c: true\n")
    assert problems == []
    assert root is not None
    a = (
        ("v", nodes.STR, 1, "a"),
        ("s", SEQ, 1, [("v", nodes.INT, 1, "1"), ("v", nodes.STR, 1, "x")]),
    )
    c = (("v", nodes.STR, 3, "c"), ("v", nodes.BOOL, 3, "true"))
    assert _flat(root) == ("m", MAP, 1, [a, (("v", nodes.STR, 2, "b"), ("m", MAP, 3, [c]))])
