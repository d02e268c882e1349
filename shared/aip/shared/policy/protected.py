"""Protected paths (DESIGN §4.5): does any string in a message name a protected file?

Candidates come from ``protected_tokens`` (every leaf, key and token, in each Unicode
spelling). An absolute one (``/``, ``~``, ``$HOME``, ``file:``) is checked as it is; a
relative one with a separator, and a whole leaf without one, is resolved against *every
base*: the server's cwd, the absolute directories on its command line and the roots the
client declared; a bare name inside a longer text is compared with the names a base holds
of a protected root. Each is checked lexically (``normpath``) and after symlinks
(``realpath``), compared in NFKC (so NFC, NFD, NFKC and NFKD spellings are one) and
case-folded where the file system folds. A hit under any base counts; ancestors never hit.
A root written ``<path>.*`` (see ``family``) also covers every sibling named ``<name>.<...>``.
"""

from __future__ import annotations

import os
import sys
import unicodedata
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

from aip.shared.policy.protected_plan import MEMO_ENTRIES, MEMO_MAX_CHARS, Plan, plan_value
from aip.shared.policy.protected_resolve import collapse, realpath

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

CASE_INSENSITIVE: Final = sys.platform in ("darwin", "win32")
# A message whose candidates need more resolutions than this (a relative one costs one per
# base) is refused rather than checked for minutes: each costs a few syscalls.
MAX_CANDIDATES: Final = 65536  # far beyond any honest message
# More bases than this (a client declaring thousands of roots) and every relative candidate
# is refused: checking each against all would let one message cost seconds.
MAX_BASES: Final = 256
_HOME_VARS: Final = ("$HOME", "${HOME}")


# "<path>.*": the file and every file whose name starts with "<name>." beside it (an audit
# log's rotations "<log>.<seq>" and torn copies "<log>.torn-*"). Only a last component with a
# name before ".*" counts: "/home/u/.*" stays a literal path, never "/home/u" and its siblings.
FAMILY_SUFFIX: Final = ".*"


def family(path: str) -> str:
    """The root string that protects ``path`` and its ``<path>.<...>`` siblings."""
    return path + FAMILY_SUFFIX


def _family_base(path: str) -> str | None:
    if not path.endswith(FAMILY_SUFFIX):
        return None
    base = path[: -len(FAMILY_SUFFIX)]
    name = base.rsplit("/", 1)[-1]
    return base if name not in ("", ".", "..") else None


class TooManyCandidates(Exception):
    """More path-like strings than MAX_CANDIDATES: treated as a hit (fail closed)."""


class ProtectedRoots:
    """The protected roots for one policy and set of bases, precomputed once."""

    def __init__(
        self,
        paths: Iterable[str],
        cwd: str,
        *,
        bases: Iterable[str] = (),
        home: str | None = None,
        case_insensitive: bool | None = None,
    ) -> None:
        """``cwd`` is the server's working directory (the first base); ``bases`` the other
        directories a relative path may be resolved against. ``case_insensitive`` None:
        the platform's default, or True when a root sits on a file system that folds case."""
        self.cwd = os.path.abspath(cwd)  # a relative cwd would make every candidate miss
        self.home = (
            home if home is not None else (os.environ.get("HOME") or os.path.expanduser("~"))
        )
        found: list[tuple[str, str, bool]] = []  # (absolute, real, family)
        for path in paths:
            base = _family_base(path)
            joined = os.path.join(self.cwd, self._expand(base or path))
            found.append((collapse(os.path.normpath(joined)), realpath(joined), bool(base)))
        if case_insensitive is None:
            case_insensitive = CASE_INSENSITIVE or any(_folds_case(f[0]) for f in found)
        self.case_insensitive = case_insensitive
        roots: dict[str, str] = {}  # comparable form -> as shown in messages
        siblings: dict[str, str] = {}  # comparable "<dir>/<name>" of a family -> as shown
        for absolute, real, is_family in found:
            for form in (absolute, real):
                roots.setdefault(self.key(form), absolute)
            if is_family:
                # The siblings' names under the lexical dir and under the dir's and the file's
                # real paths: a candidate's realpath resolves its dir, and a symlinked log's
                # rotations may be renamed beside either.
                head, name = os.path.split(absolute)
                for form in (absolute, os.path.join(realpath(head), name), real):
                    siblings.setdefault(self.key(form), absolute + FAMILY_SUFFIX)
        self._roots = roots
        # One startswith loop serves both kinds: "<root>/" for everything under a root,
        # "<name>." for a family's siblings (and anything under them).
        self._prefixes = tuple(
            (r if r.endswith("/") else r + "/", shown) for r, shown in roots.items()
        ) + tuple((s + ".", shown) for s, shown in siblings.items())
        self._init_bases([self.cwd, *bases], siblings)

    def _init_bases(self, given: list[str], siblings: dict[str, str]) -> None:
        bases = list(dict.fromkeys(collapse(os.path.abspath(b)) for b in given if b))
        self.bases = tuple(bases)
        self.too_many_bases = len(bases) > MAX_BASES
        # (lexical base, its real path now): a server's cwd and its start-up roots are fixed
        # inodes, so a base renamed later still leads where its real path led.
        # The real base is kept with a trailing "/" ready for joining.
        self.base_pairs = tuple((b, realpath(b).rstrip("/") + "/") for b in bases[:MAX_BASES])
        self.base_hit: str | None = None  # a base inside a protected root: all relative hit
        self._between: dict[str, str] = {}
        keys = list(
            dict.fromkeys(
                self.key(f) for b, r in self.base_pairs for f in (b, r.rstrip("/") or "/")
            )
        )
        for key in keys:
            shown = self.under(key)
            if shown is not None and self.base_hit is None:
                self.base_hit = shown
        # The folders strictly between a base and a protected root (~/.config for
        # ~/.config/aip with $HOME a base) are protected exactly, not what they hold: renaming
        # one would carry the root away from its protected name (issue 11, renamed ancestor).
        # A base and its ancestors stay free ("/" as a base would otherwise take /home).
        between: dict[str, str] = {}
        for key in keys:
            if key == "/":
                continue
            for root, shown in self._roots.items():
                folder = os.path.dirname(root)
                while folder.startswith(key + "/"):
                    between.setdefault(folder, shown)
                    folder = os.path.dirname(folder)
        for folder in list(between):
            if any(k == folder or k.startswith(folder + "/") for k in keys):
                del between[folder]
        self._between = between
        # Names a base holds of a protected root or a folder above one (".ssh", ".config" in
        # $HOME), and family name prefixes.
        self._bare: dict[str, str] = {}
        self._bare_prefixes: list[tuple[str, str]] = []
        for key in keys:
            for root, shown in (*self._roots.items(), *between.items()):
                head, _, name = root.rpartition("/")
                if (head or "/") == key and name:
                    self._bare.setdefault(name, shown)
            for sib, shown in siblings.items():
                head, _, name = sib.rpartition("/")
                if (head or "/") == key and name:
                    self._bare_prefixes.append((name + ".", shown))
        self.bare_matters = bool(self._bare or self._bare_prefixes or self.base_hit)
        self._plans: dict[object, Plan] = {}  # by the value (see hit)
        self._leaf_plans: dict[str, Plan] = {}  # by a string leaf

    def __bool__(self) -> bool:
        return bool(self._roots)

    def hit(self, value: object) -> tuple[str, str] | None:
        """(candidate as written, protected root) for the first hit in ``value``, else None.

        Raises TooManyCandidates when ``value`` needs more than MAX_CANDIDATES resolutions.
        The plan (``protected_plan``: the candidates, their lexical answers, the paths to resolve)
        is pure and remembered by the value; the resolutions run on every call.
        """
        if not self._roots:
            return None
        memo = self._plans
        # The key: a string, or an object's items (values from JSON: an equal key has equal
        # strings); a nested list or object is unhashable and planned afresh.
        key: object = value
        if type(value) is dict:
            key = tuple(value.items())
        elif type(value) is not str:
            key = None
        try:
            plan = memo.get(key) if key is not None else None
        except TypeError:
            key = plan = None
        if plan is None:
            plan = plan_value(self, value, self._leaf_plans)
            if key is not None and plan[2] <= MEMO_MAX_CHARS and plan[1]:
                if len(memo) >= MEMO_ENTRIES:
                    memo.clear()  # bounded; a fresh start costs one plan per value
                memo[key] = plan
        budget = MAX_CANDIDATES
        for token, cost, checks in plan[0]:
            if cost:
                budget -= cost
                if cost < 0 or budget < 0:
                    raise TooManyCandidates
            for check in checks:
                if isinstance(check, str):
                    return token, check
                joined, normal, known = check
                real = realpath(joined, normal, known)
                if real != normal:  # the same path: its lexical answer (none) stands
                    shown = self.under(self.key(real))
                    if shown is not None:
                        return token, shown
        return None

    def check_bare(self, name: str) -> str | None:
        if self.base_hit is not None:
            return self.base_hit
        key = self.key(name)
        shown = self._bare.get(key)
        if shown is not None:
            return shown
        for prefix, shown in self._bare_prefixes:
            if key.startswith(prefix):
                return shown
        return None

    def under(self, key: str) -> str | None:
        shown = self._roots.get(key) or self._between.get(key)
        if shown is not None:
            return shown
        for prefix, shown in self._prefixes:
            if key.startswith(prefix):
                return shown
        return None

    def _expand(self, path: str) -> str:
        return self.expand_fixed(path)[0]

    def expand_fixed(self, path: str) -> tuple[str, bool]:
        """``path`` with ``file:``, ``$HOME`` and ``~`` expanded, and whether that is fixed
        for this object's life (``~user`` asks the user database, which may change)."""
        path = path.split("\x00", 1)[0]  # C APIs stop at NUL: so does the check
        if path.startswith("/"):
            return path, True  # the common case: nothing below applies to it
        if path.startswith("file:"):  # file:///x, file://localhost/x, file:/x, file:x
            path = unquote(urlsplit(path).path)
        for prefix in _HOME_VARS:
            if path == prefix or path.startswith(prefix + "/"):
                return self.home + path[len(prefix) :], True
        if path == "~" or path.startswith("~/"):
            return self.home + path[1:], True
        if path.startswith("~"):
            return os.path.expanduser(path), False  # ~user/...; an unknown user stays relative
        return path, True

    def key(self, path: str) -> str:
        """The comparable form: NFKC (one form for every Unicode spelling), case-folded where
        the file system folds."""
        if not path.isascii():
            path = unicodedata.normalize("NFKC", path)
        return path.casefold() if self.case_insensitive else path


def _folds_case(path: str) -> bool:
    """Does the directory holding ``path`` (or its nearest existing ancestor with a cased
    name) fold case (vfat, exFAT, ext4 casefold dirs, macOS)? Probed with the swapped spelling."""
    while path not in ("", "/"):
        head, name = os.path.split(path)
        if name.swapcase() != name:
            try:
                st = os.lstat(path)
            except (OSError, ValueError):
                path = head
                continue
            try:
                other = os.lstat(os.path.join(head, name.swapcase()))
            except (OSError, ValueError):
                return False
            return (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino)
        path = head
    return False
