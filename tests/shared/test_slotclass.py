"""Every ``aip.shared.slotclass`` class behaves as the dataclass it replaced (issue 16: those
cost ~20 ms of the proxy's start-up): each is held against a dataclass made here from its own
fields, with the same arguments: signature, repr, ==, hash, frozen errors, match args, slots,
pickling, ``replace``."""

from __future__ import annotations

import dataclasses
import inspect
import pickle
import threading
from collections import Counter
from typing import Any

import pytest

from aip.proxy.relay.asks import _Ask
from aip.proxy.relay.dlp_filter import RequestScan
from aip.proxy.relay.session import Pending, PolicyState
from aip.proxy.sandbox.launch import Mode as SandboxMode
from aip.proxy.sandbox.plan import Plan
from aip.proxy.settings import Settings
from aip.proxy.stdio import Oversize
from aip.shared import slotclass
from aip.shared.dlp.builtin import BuiltinRule
from aip.shared.dlp.redactor import LineResult
from aip.shared.dlp.scan import Rule, Span
from aip.shared.errors import PolicyProblem
from aip.shared.jsonrpc import Kind, Message, ServerLine
from aip.shared.outcomes import Outcome, OutcomeRow
from aip.shared.policy.decision import Context, Decision, Verdict
from aip.shared.policy.model import (
    Action,
    ArgPattern,
    DlpConfig,
    DlpPattern,
    Mode,
    OnRequestMatch,
    Policy,
    RateLimit,
    ToolRule,
)
from aip.shared.policy.ratelimit import RateLimiter, _Bucket
from aip.shared.slotclass import FrozenSlotted, Slotted

ARG = ArgPattern("path", "^/x$", "compiled")
RULE = ToolRule(
    2, "read_file", "Read_File", Action.ASK, (ARG,), True, RateLimit(3, 60.0, "3/minute"), 7
)
MSG = Message({"id": 1}, b'{"id":1}', Kind.REQUEST, "tools/call", 1)
EVENT = threading.Event()
DECISION = Decision(Verdict.BLOCK, Outcome.DENIED_TOOL, RULE, "x", {"a": 1})

# (class, arguments, other arguments: a different value in at least one compared field)
CASES: list[tuple[type[Slotted], tuple[Any, ...], tuple[Any, ...]]] = [
    (RateLimit, (3, 60.0, "3/minute"), (4, 60.0, "4/minute")),
    (ArgPattern, ("path", "^/x$", "compiled"), ("path", "^/y$", "compiled")),
    (
        ToolRule,
        (2, "read_file", "Read_File", Action.ASK, (ARG,), True, None, 7, True),
        (2, "read_file", "Read_File", Action.ALLOW, (ARG,), True, None, 7, True),
    ),
    (DlpPattern, ("k", "a+", "compiled"), ("k", "b+", "compiled")),
    (
        DlpConfig,
        (True, (DlpPattern("k", "a+", "c"),), True, True, False, True, OnRequestMatch.WARN, 9),
        (True, (), True, True, False, True, OnRequestMatch.WARN, 9),
    ),
    (
        Policy,
        (
            "p",
            "aip.io/v1alpha1",
            "/p.yaml",
            "ab",
            Mode.MONITOR,
            frozenset({"a"}),
            frozenset(),
            (RULE,),
            True,
            None,
            frozenset({"x"}),
            ("/s",),
            DlpConfig(),
            "1",
            "me",
        ),
        (
            "p",
            "aip.io/v1alpha1",
            "/p.yaml",
            "cd",
            Mode.MONITOR,
            frozenset({"a"}),
            frozenset(),
            (RULE,),
            True,
            None,
            frozenset({"x"}),
            ("/s",),
            DlpConfig(),
            "1",
            "me",
        ),
    ),
    (PolicyProblem, (3, "spec.mode", "bad"), (4, "spec.mode", "bad")),
    (
        OutcomeRow,
        (Outcome.DLP, -32001, "m", "dlp", False, "block"),
        (Outcome.DLP, -32001, "m", "dlp", True, "block"),
    ),
    (Oversize, (b"head",), (b"other",)),
    (Plan, (("/a",), ("/f",), ("/r",), ("/",), ("/m",)), (("/a",), ("/f",), ("/r",), ("/",))),
    (BuiltinRule, ("n", "p", "pf", None, "c", None), ("n", "p")),
    (Rule, ("n", "p", None, None, True, None, None), ("n", "p")),
    (Span, (1, 5, 0), (1, 6, 0)),
    (LineResult, (b"x", {"a": 1}, Counter(a=1), False), (b"x", {"a": 1}, Counter(), False)),
    (RequestScan, (MSG, ["aws"], Outcome.DLP, "d"), (MSG, ["aws"])),
    (Context, ("/w", ("/p",), ("/b",)), ("/w",)),
    (
        Decision,
        (Verdict.BLOCK, Outcome.DENIED_TOOL, RULE, "x", {"a": 1}, "m", True, "t"),
        (Verdict.ASK, None),
    ),
    (_Bucket, (1.5, 20.0), (2.5, 20.0)),
    (PolicyState, (None, RateLimiter(), Context("/w")), (None, RateLimiter(), Context("/v"))),
    (Pending, ("tools/call", "t"), ("tools/call", None)),
    (
        Message,
        ({"id": 1}, b"{}", Kind.REQUEST, "m", 1, True),
        ({"id": 1}, b"{}", Kind.REQUEST, "m", 1),
    ),
    (ServerLine, (Kind.RESPONSE, 1, {"id": 1}), (Kind.RESPONSE, 2, {"id": 2})),
    (_Ask, (MSG, DECISION, "t", 1.0, ["aws"], EVENT), (MSG, DECISION, "t", 2.0, None, EVENT)),
    (
        Settings,
        (
            ["srv"],
            "srv",
            "ipc://x",
            "a",
            1024,
            2048,
            1.0,
            2.0,
            3.0,
            4.0,
            ("/p",),
            SandboxMode.AUTO,
            None,
        ),
        (["srv"], "srv"),
    ),
]
# Where the dataclass had a default_factory, the class takes None for "make a new one".
FACTORIES: dict[tuple[type[Slotted], str], Any] = {
    (Policy, "dlp"): DlpConfig,
    (LineResult, "counts"): Counter,
    (Decision, "data"): dict,
    (_Ask, "done"): threading.Event,
}


def twin(cls: type[Slotted]) -> Any:
    """The dataclass ``cls`` stands for: the same fields, defaults, and flags."""
    params = inspect.signature(cls).parameters
    specs: list[tuple[str, Any, Any]] = []
    for name in cls._all:
        if name not in cls._fields:
            specs.append((name, Any, dataclasses.field(init=False, repr=False, compare=False)))
        elif (cls, name) in FACTORIES:
            specs.append((name, Any, dataclasses.field(default_factory=FACTORIES[cls, name])))
        elif params[name].default is not inspect.Parameter.empty:
            specs.append((name, Any, dataclasses.field(default=params[name].default)))
        else:
            specs.append((name, Any, dataclasses.field()))
    return dataclasses.make_dataclass(
        cls.__name__, specs, slots=True, frozen=issubclass(cls, FrozenSlotted)
    )


@pytest.mark.parametrize(("cls", "args", "other"), CASES, ids=[c[0].__name__ for c in CASES])
def test_behaves_as_its_dataclass(
    cls: type[Slotted], args: tuple[Any, ...], other: tuple[Any, ...]
) -> None:
    ref = twin(cls)
    assert list(inspect.signature(cls).parameters) == list(inspect.signature(ref).parameters)
    assert set(cls.__slots__) == set(ref.__slots__)
    assert cls.__match_args__ == ref.__match_args__  # type: ignore[attr-defined]
    a, b, c = cls(*args), cls(*args), cls(*other)
    ra, rc = ref(*args), ref(*other)
    assert not hasattr(a, "__dict__")
    assert repr(a) == repr(ra)
    assert repr(c) == repr(rc)
    assert (a == b, a == c, a != c) == (ra == ref(*args), ra == rc, ra != rc) == (True, False, True)
    assert a.__eq__(ra) is NotImplemented  # another class is never equal
    for name in cls._fields:
        assert getattr(a, name) == getattr(ra, name)
    if issubclass(cls, FrozenSlotted):
        if all(_hashable(getattr(a, n)) for n in cls._fields):
            assert hash(a) == hash(ra) == hash(b)
        for act in (lambda o: setattr(o, cls._all[0], 1), lambda o: delattr(o, cls._all[0])):
            with pytest.raises(dataclasses.FrozenInstanceError) as mine:
                act(a)
            with pytest.raises(dataclasses.FrozenInstanceError) as theirs:
                act(ra)
            assert str(mine.value) == str(theirs.value)
        if all(_picklable(getattr(a, n)) for n in cls._all):
            assert pickle.loads(pickle.dumps(a)) == a
    else:
        assert cls.__hash__ is None
        setattr(a, cls._all[0], getattr(c, cls._all[0]))
    changed = {cls._fields[-1]: getattr(c, cls._fields[-1])}
    assert repr(slotclass.replace(b, **changed)) == repr(dataclasses.replace(ref(*args), **changed))


def test_defaults_and_factories_match() -> None:
    """Defaults (a fresh mutable default per object, as a default_factory gives)."""
    assert repr(Policy("p", "v", None, "s")) == repr(twin(Policy)("p", "v", None, "s"))
    assert Policy("p", "v", None, "s").dlp == DlpConfig()
    assert repr(DlpConfig()) == repr(twin(DlpConfig)())
    one, two = LineResult(b"", None), LineResult(b"", None)
    assert one.counts == Counter()
    assert one.counts is not two.counts
    assert Decision(Verdict.ASK, None).data is not Decision(Verdict.ASK, None).data
    assert repr(Decision(Verdict.ASK, None)) == repr(twin(Decision)(Verdict.ASK, None))


def test_derived_fields_and_replace() -> None:
    assert RULE.arg_names == frozenset({"path"})
    assert RULE.label == "tool_rules[2] (Read_File ask)"
    assert RULE.matched == "tool_rules[2] (Read_File ask) matched"
    policy = Policy("p", "v", None, "s", tool_rules=(RULE,))
    assert policy.rules_for("read_file") == (RULE,)
    monitor = slotclass.replace(policy, mode=Mode.MONITOR)
    assert monitor.mode is Mode.MONITOR
    assert monitor.rules_for("read_file") == (RULE,)
    assert monitor.memo == {}
    assert monitor.memo is not policy.memo
    with pytest.raises(ValueError, match="init=False"):
        slotclass.replace(policy, memo={})
    with pytest.raises(TypeError):
        slotclass.replace(policy, nonsense=1)


def test_a_subclass_without_fields_keeps_its_parents() -> None:
    class Named(PolicyProblem):
        pass

    assert repr(Named(1, "k", "m")).endswith(".<locals>.Named(line=1, key_path='k', message='m')")
    assert Named(1, "k", "m") == Named(1, "k", "m")
    assert Named(1, "k", "m") != PolicyProblem(1, "k", "m")  # another class, as for a dataclass


def test_slots_must_match_the_annotations() -> None:
    with pytest.raises(TypeError, match="__slots__"):

        class Wrong(FrozenSlotted):
            __slots__ = ("a",)
            a: int
            b: int


def _hashable(value: object) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _picklable(value: object) -> bool:
    try:
        pickle.dumps(value)
    except (TypeError, pickle.PicklingError, AttributeError):
        return False
    return True
