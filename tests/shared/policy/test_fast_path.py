"""Issue 16: the engine's fast path (rules by tool, remembered pattern answers, remembered
protected-path plans, fewer layers) decides exactly as the straightforward engine
(tests/shared/reference_engine.py) on random policies, contexts and arguments, call after
call: the memos warm up, the rate limiters run down, and a symlink is swapped between calls
(the file-system part is never remembered)."""

from __future__ import annotations

import functools
import os
import tempfile
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aip.shared.policy import authorize, protected, protected_plan
from aip.shared.policy.decision import Context
from aip.shared.policy.engine import decide
from aip.shared.policy.load import load_policy_text
from aip.shared.policy.protected_resolve import collapse
from aip.shared.policy.ratelimit import RateLimiter
from tests.shared import reference_engine
from tests.shared.enginekit import wrap

TOOLS = [
    "read_file",
    "write_file",
    "run",
    "Read_File",
    " read_file",
    "\uff52\uff45\uff41\uff44_file",
]  # fullwidth "read"
ARG_NAMES = ["path", "mode", "n", "extra"]
PATTERNS = [
    ".*",
    "^/.*",
    "[a-z]+",
    "^(utf-8|ascii)$",
    "\\d+",
    "(/tmp/)?project/[A-Za-z0-9_./-]*",
    "true|false|null",
    "\\[.*\\]",
    "é.*",
]


@pytest.fixture(scope="module")
def tree() -> Iterator[Path]:
    """home/.ssh (protected), work (the cwd) with a swappable ``link``, data (a base), a
    protected log family, a symlink loop."""
    with tempfile.TemporaryDirectory(prefix="aip-fast-") as name:
        t = Path(os.path.realpath(name))
        (t / "home" / ".ssh").mkdir(parents=True)
        (t / "home" / ".ssh" / "id").write_text("k")
        (t / "work" / "src").mkdir(parents=True)
        (t / "work" / "src" / "main.py").write_text("x")
        (t / "data").mkdir()
        (t / "logs").mkdir()
        (t / "logs" / "audit.log").write_text("")
        (t / "logs" / "audit.log.1").write_text("")
        (t / "work" / "link").symlink_to(t / "work" / "src")
        (t / "work" / "loop").symlink_to(t / "work" / "loop")
        (t / "work" / "up").symlink_to(t / "home")
        yield t


def _point(tree: Path, target: str) -> None:
    """Swap work/link to ``target`` (relative to the tree), atomically."""
    tmp = tree / "work" / ".link.new"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(tree / target)
    tmp.replace(tree / "work" / "link")


@functools.cache  # one strategy per tree: building a recursive strategy costs more than a draw
def _values(tree: Path) -> st.SearchStrategy[Any]:
    t = str(tree)
    paths = [
        "src/main.py",
        "link/id",
        "link",
        "./link/../link/id",
        "up/.ssh/id",
        "loop/x",
        "../home/.ssh/id",
        f"{t}/home/.ssh",
        f"{t}/home/.ssh/id",
        f"{t}/work/link/id",
        f"{t}/work/up/.ssh",
        f"{t}/work/src/../../home/.ssh/x",
        f"{t}/work/link/../../home/.ssh/x",
        f"{t}/logs/audit.log.7",
        f"{t}/logs/audit.logx",
        f"file://{t}/home/.ssh/id",
        f"cat<{t}/home/.ssh/id",
        f"a;b {t}/work/link/id",
        f"scp h:{t}/home/.ssh/id",
        f"{t}%2fhome%2f.ssh",
        "~/.ssh/id",
        "$HOME/.ssh",
        "~root/.ssh",
        ".ssh",
        "home",
        "audit.log.2",
        "project/src/main.py",
        "/tmp/project/x",
        unicodedata.normalize("NFD", "é/x"),
        "\uff4c\uff49\uff4e\uff4b/id",  # fullwidth: NFKC "link/id"
        "x\x00/home",
        "//" + t.lstrip("/") + "/home/.ssh",
        "/" * 3,
    ]
    text = st.one_of(
        st.sampled_from(paths),
        st.text(alphabet="ab/.~$%:-é ;<\t\x00", max_size=12),
        st.sampled_from(["utf-8", "ascii", "42", "true"]),
    )
    scalar = st.one_of(text, st.integers(-5, 5), st.booleans(), st.none(), st.floats(0, 2))
    return st.recursive(
        scalar,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.dictionaries(st.one_of(st.sampled_from(ARG_NAMES), text), inner, max_size=3),
        ),
        max_leaves=6,
    )


def _policy(draw: st.DrawFn, tree: Path) -> Any:
    rules = []
    for _ in range(draw(st.integers(0, 5))):
        rule: dict[str, Any] = {
            "tool": draw(st.sampled_from(TOOLS[:3])),
            "action": draw(st.sampled_from(["allow", "ask", "block"])),
        }
        names = draw(st.lists(st.sampled_from(ARG_NAMES), max_size=2, unique=True))
        if names:
            rule["allow_args"] = {n: draw(st.sampled_from(PATTERNS)) for n in names}
        strict = draw(st.sampled_from([None, True, False]))
        if strict is not None:
            rule["strict_args"] = strict
        if draw(st.booleans()):
            rule["rate_limit"] = draw(st.sampled_from(["1/minute", "2/minute", "3/hour"]))
        rules.append(rule)
    protected_paths = draw(
        st.lists(
            st.sampled_from(
                [f"{tree}/home/.ssh", f"{tree}/data/x", f"{tree}/work/src/main.py", "~/.ssh"]
            ),
            max_size=3,
            unique=True,
        )
    )
    spec: dict[str, Any] = {
        "mode": draw(st.sampled_from(["enforce", "monitor"])),
        "strict_args_default": draw(st.booleans()),
        "allowed_tools": draw(st.lists(st.sampled_from(TOOLS[:3]), max_size=2, unique=True)),
        "denied_tools": draw(st.lists(st.sampled_from(TOOLS[:3]), max_size=1, unique=True)),
        "tool_rules": rules,
        "protected_paths": protected_paths,
    }
    if draw(st.booleans()):
        spec["allowed_methods"] = ["tools/call", "resources/read"]
    return load_policy_text(wrap(yaml.safe_dump(spec)))


@st.composite
def scenarios(draw: st.DrawFn, tree: Path) -> tuple[Any, Context, list[dict[str, Any]]]:
    pol = _policy(draw, tree)
    bases = draw(
        st.lists(st.sampled_from([f"{tree}/data", f"{tree}/home", str(tree)]), unique=True)
    )
    # A family root ("<log>.*") comes only from the Context (the audit log's rotations).
    always = draw(st.sampled_from([(), (f"{tree}/logs/audit.log.*",)]))
    ctx = Context(cwd=f"{tree}/work", always_protected=always, bases=tuple(bases))
    values = _values(tree)
    messages = []
    for _ in range(draw(st.integers(1, 4))):
        method = draw(st.sampled_from(["tools/call", "tools/call", "resources/read", "Tools/Call"]))
        params: Any = {"name": draw(st.sampled_from(TOOLS))}
        if method == "resources/read":
            params = {"uri": draw(values)}
        elif draw(st.integers(0, 9)) == 0:
            params["arguments"] = draw(values)  # anything, not only an object
        else:
            params["arguments"] = draw(st.dictionaries(st.sampled_from(ARG_NAMES), values))
        messages.append({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    return pol, ctx, messages


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_fast_path_decides_as_the_reference(tree: Path, data: st.DataObject) -> None:
    pol, ctx, messages = data.draw(scenarios(tree))
    targets = data.draw(
        st.lists(st.sampled_from(["work/src", "home/.ssh", "home", "logs"]), min_size=1, max_size=3)
    )
    fast, ref = RateLimiter(clock=lambda: 0.0), RateLimiter(clock=lambda: 0.0)
    try:
        for target in targets:  # each message again after each swap: memos warm, links move
            _point(tree, target)
            for message in messages:
                want = reference_engine.decide(pol, message, ref, ctx)
                got = decide(pol, message, fast, ctx)
                assert got == want, (target, message)
    finally:
        _point(tree, "work/src")


def test_a_swapped_symlink_is_seen_on_the_next_call(tree: Path) -> None:
    """The plan of the same arguments is remembered; where its paths lead is not."""
    pol = load_policy_text(wrap(yaml.safe_dump({"allowed_tools": ["read_file"]})))
    ctx = Context(cwd=f"{tree}/work", always_protected=(f"{tree}/home/.ssh",))
    call = {"method": "tools/call", "params": {"name": "read_file", "arguments": {"path": ""}}}
    try:
        for path in ("link/id", f"{tree}/work/link/id"):
            call["params"]["arguments"] = {"path": path}  # type: ignore[index]
            verdicts = []
            for target in ("work/src", "home/.ssh", "work/src", "home/.ssh"):
                _point(tree, target)
                verdicts.append(decide(pol, call, RateLimiter(), ctx).outcome.value)  # type: ignore[union-attr]
            assert verdicts == ["policy_allowed", "protected_path"] * 2, path
    finally:
        _point(tree, "work/src")


def test_the_memos_stay_bounded(tree: Path) -> None:
    pol = load_policy_text(
        wrap(
            yaml.safe_dump(
                {"tool_rules": [{"tool": "t", "action": "allow", "allow_args": {"p": ".*"}}]}
            )
        )
    )
    ctx = Context(cwd=f"{tree}/work", always_protected=(f"{tree}/home/.ssh",))
    for i in range(3 * protected.MEMO_ENTRIES):
        call = {"method": "tools/call", "params": {"name": "t", "arguments": {"p": f"x/{i}"}}}
        assert decide(pol, call, RateLimiter(), ctx).outcome.value == "policy_allowed"  # type: ignore[union-attr]
    roots = pol.memo[("protected", ctx)]
    assert 0 < len(roots._plans) <= protected.MEMO_ENTRIES
    assert 0 < len(roots._leaf_plans) <= protected.MEMO_ENTRIES
    assert 0 < len(pol.tool_rules[0].allow_args[0].results) <= authorize.MEMO_ENTRIES
    # Long values are planned and matched afresh each time, never kept.
    long = "y" * (protected.MEMO_MAX_CHARS + 1)
    call = {"method": "tools/call", "params": {"name": "t", "arguments": {"p": long}}}
    decide(pol, call, RateLimiter(), ctx)
    assert long not in pol.tool_rules[0].allow_args[0].results
    assert all(long not in str(key) for key in roots._plans)
    assert long not in roots._leaf_plans


@given(st.text(alphabet="/.a", min_size=1, max_size=12))
def test_normpath_skips_only_what_is_already_normal(path: str) -> None:
    assert protected_plan.normpath(path) == collapse(os.path.normpath(path))
