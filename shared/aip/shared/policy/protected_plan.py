"""What checking a value for protected paths takes, without touching the file system
(DESIGN §4.5): the plan ``ProtectedRoots.hit`` remembers and runs.

A plan lists each distinct candidate of each spelling of each leaf, in the order the check
meets them, with what it costs against the candidate budget and its checks: a protected root
it already hits (lexically, by a bare name, or because a base lies inside one), or a path
whose ``realpath`` is compared on every call. Everything here is a function of the value and
the roots' tables, except ``~user`` (the user database), which marks a plan not to be kept.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from aip.shared.policy.protected_resolve import collapse
from aip.shared.policy.protected_tokens import GLUE, leaves, spellings, tokens

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final, Protocol

PATH_MAX: Final = 4096  # longer strings name nothing the kernel would open
# Plans remembered per ProtectedRoots, of whole values and of single strings (argument names
# and the values that come back, when others change): bounded in entries and in characters
# (a file's content is planned afresh each time).
MEMO_ENTRIES: Final = 256
MEMO_MAX_CHARS: Final = 512

# The ASCII characters that send a path the long way: glue (GLUE matches each of them
# alone), ":" (host:path, file:), "%" (percent-decoding), NUL. Derived from GLUE itself, so the
# two cannot disagree; deleting them with bytes.translate costs ~0.1 us where GLUE.search
# costs ~0.5-1 us.
_NOT_PLAIN: Final = bytes(c for c in range(128) if GLUE.fullmatch(chr(c))) + b":%\x00"

# One check of a candidate: a protected root it already hits, or (path to resolve, its
# normpath, length of a known real prefix) whose realpath is compared on every call.
Check = str | tuple[str, str, int]
# One distinct candidate: (as written, resolutions charged to the budget (-1: refuse), checks).
Step = tuple[str, int, tuple[Check, ...]]


# (steps: distinct candidates only, in the order they are checked; pure: a function of the
# value alone (no ``~user``), may be remembered; size: characters in the value's strings).
# A plain tuple: a NamedTuple's constructor costs ~0.3 us, a tuple's ~0.04.
Plan = tuple[tuple[Step, ...], bool, int]


if TYPE_CHECKING:  # for the type checker only: typing stays out of start-up

    class ProtectedRoots(Protocol):
        """What planning reads of ``aip.shared.policy.protected.ProtectedRoots`` (its tables and
        pure lookups); a Protocol, so this module does not import that one (no cycle)."""

        bare_matters: bool
        base_hit: str | None
        too_many_bases: bool
        base_pairs: tuple[tuple[str, str], ...]

        def under(self, key: str) -> str | None: ...
        def key(self, path: str) -> str: ...
        def check_bare(self, name: str) -> str | None: ...
        def expand_fixed(self, path: str) -> tuple[str, bool]: ...


def plan_value(roots: ProtectedRoots, value: object, memo: dict[str, Plan]) -> Plan:
    """The plan for ``value``: its leaves' plans (``memo`` keeps those of short strings) in
    order, each candidate once."""
    steps: list[Step] = []
    seen: set[str] = set()
    pure = True
    size = 0
    for leaf in leaves(value):
        size += len(leaf)
        plan = memo.get(leaf) if type(leaf) is str else None
        if plan is None:
            plan = plan_leaf(roots, leaf)
            if type(leaf) is str and plan[1] and plan[2] <= MEMO_MAX_CHARS:
                if len(memo) >= MEMO_ENTRIES:
                    memo.clear()  # bounded; a fresh start costs one plan per leaf
                memo[leaf] = plan
        leaf_steps, leaf_pure, _ = plan
        pure = pure and leaf_pure
        for step in leaf_steps:
            # A candidate's step depends on the candidate alone: one met in an earlier leaf
            # was checked there (a candidate with no step needs nothing anywhere).
            if step[0] not in seen:
                seen.add(step[0])
                steps.append(step)
    return tuple(steps), pure, size


def plan_leaf(roots: ProtectedRoots, leaf: str) -> Plan:
    """The plan for one string: its spellings' candidates, each once."""
    if (
        leaf.startswith("/")
        and leaf.isascii()
        and len(leaf.encode().translate(None, _NOT_PLAIN)) == len(leaf)
    ):
        # The common path argument, as the loop below takes it: one spelling (ASCII), one
        # token (nothing to split or decode), itself expanded (absolute, no NUL).
        return ((leaf, 1, _plan_absolute(roots, leaf)),), True, len(leaf)
    steps: list[Step] = []
    seen: set[str] = set()
    pure = True
    bare_matters = roots.bare_matters
    for text in spellings(leaf):
        if not (bare_matters or "/" in text or "~" in text or "$" in text or "%" in text):
            continue  # neither absolute, nor relative with "/", nor a name of a root
        if ":" in text or "%" in text or GLUE.search(text) is not None:
            found: Iterable[str] = tokens(text)
        else:
            found = (text,)  # the common path argument: one piece, nothing to split
        for token in found:
            if token in seen:
                continue
            seen.add(token)
            path, fixed = roots.expand_fixed(token)
            pure = pure and fixed
            step = _plan_token(roots, token, path)
            if step is not None:
                steps.append(step)
    return tuple(steps), pure, len(leaf)


def _plan_token(roots: ProtectedRoots, candidate: str, path: str) -> Step | None:
    """The step for one candidate (``path``: it expanded), None when it needs nothing."""
    if not path:
        return None
    if path.startswith("/"):
        return candidate, 1, _plan_absolute(roots, path)
    if "/" not in path:
        # A bare name is compared, not resolved: a stat per word of every text would
        # cost more than the whole decision (docs/security.md says what this leaves out).
        shown = roots.check_bare(path)
        return None if shown is None else (candidate, 0, (shown,))
    if roots.base_hit is not None:
        return candidate, 0, (roots.base_hit,)
    if roots.too_many_bases:
        return candidate, -1, ()
    checks: list[Check] = []
    for base, real in roots.base_pairs:
        shown = roots.under(roots.key(normpath(base + "/" + path)))
        if shown is not None:
            checks.append(shown)
            break
        # The real base: resolved once, so the walk of a missing tail starts below it.
        more = _plan_absolute(roots, real + path, known=len(real) - 1)
        checks.extend(more)
        if more and isinstance(more[0], str):
            break
    return candidate, len(roots.base_pairs), tuple(checks)


def _plan_absolute(roots: ProtectedRoots, joined: str, known: int = 0) -> tuple[Check, ...]:
    # Both views: the lexical one (normpath, as a server's path.resolve does) and the
    # kernel's. realpath gets the path before normpath: it resolves a symlink before the
    # ".." that follows it, as open() does ("/tmp/link/../.ssh/x" with link -> ~/dir
    # opens ~/.ssh/x). A path longer than PATH_MAX is only opened once normalized.
    normal = normpath(joined)
    shown = roots.under(roots.key(normal))
    if shown is not None:
        return (shown,)
    if "/.." not in joined or len(joined) > PATH_MAX:
        joined = normal  # without "..", normpath changes nothing realpath would see
        if len(joined) > PATH_MAX:
            return ()
    return ((joined, normal, known),)


def normpath(path: str) -> str:
    """``collapse(os.path.normpath(path))`` of an absolute ``path``, without the work for one
    that is already normal: no empty, ``.`` or ``..`` component, no trailing ``/``."""
    if (
        "//" in path
        or "/./" in path
        or "/../" in path
        or path.endswith(("/", "/.", "/.."))
        or not path.startswith("/")
    ):
        return collapse(os.path.normpath(path))
    return path
