"""Protected paths (DESIGN §4.5): does any string in a message name a protected file?

A string leaf (at any depth, dict keys included) and each whitespace-separated token of it is
a path candidate when it starts with ``/``, ``~``, ``$HOME``, ``.`` or ``file:``. Candidates
are expanded, made absolute against the child's working directory, ``normpath``-ed and
``realpath``-ed (strict=False); they hit when equal to or under a protected root, compared
both lexically and after symlinks, case-folded on macOS and Windows. Ancestors never hit.
A root written ``<path>.*`` (see ``family``) also covers every sibling named ``<name>.<...>``.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import Final
from urllib.parse import unquote, urlsplit

CASE_INSENSITIVE: Final = sys.platform in ("darwin", "win32")
# A message with more candidates than this is refused rather than checked for minutes:
# each candidate costs a realpath (a few syscalls).
MAX_CANDIDATES: Final = 65536  # distinct ones; far beyond any honest message
_STARTS: Final = ("/", "~", "$HOME", "${HOME}", ".", "file:")
_GLUE: Final = re.compile(r"[\s;|&<>,()'\"`={}\[\]]+")
# Linux: the kernel resolves a path in one open(O_PATH) and /proc names what it reached
# (~3 us); os.path.realpath walks it in Python with an lstat per component (~12 us).
_O_PATH: Final = getattr(os, "O_PATH", 0)
KERNEL_RESOLVE: Final = sys.platform == "linux" and _O_PATH != 0 and os.path.isdir("/proc/self/fd")
_MISSING: Final = (errno.ENOENT, errno.ENOTDIR)


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
    """The protected roots for one policy and working directory, precomputed once."""

    def __init__(
        self,
        paths: Iterable[str],
        cwd: str,
        *,
        home: str | None = None,
        case_insensitive: bool = CASE_INSENSITIVE,
    ) -> None:
        self.cwd = os.path.abspath(cwd)  # a relative cwd would make every candidate miss
        self.home = (
            home if home is not None else (os.environ.get("HOME") or os.path.expanduser("~"))
        )
        self.case_insensitive = case_insensitive
        roots: dict[str, str] = {}  # comparable form -> as shown in messages
        siblings: dict[str, str] = {}  # "<dir>/<name>." of a family -> as shown
        for path in paths:
            base = _family_base(path)
            joined = os.path.join(self.cwd, self._expand(base or path))
            absolute = _collapse(os.path.normpath(joined))
            for form in (absolute, _realpath(joined)):
                roots.setdefault(self._fold(form), absolute)
            if base is not None:
                # The siblings' names under the lexical dir and under the dir's and the file's
                # real paths: a candidate's realpath resolves its dir, and a symlinked log's
                # rotations may be renamed beside either.
                head, name = os.path.split(absolute)
                for form in (absolute, os.path.join(_realpath(head), name), _realpath(joined)):
                    siblings.setdefault(self._fold(form) + ".", absolute + FAMILY_SUFFIX)
        self._roots = roots
        # One startswith loop serves both kinds: "<root>/" for everything under a root,
        # "<name>." for a family's siblings (and anything under them).
        self._prefixes = tuple(
            (r if r.endswith("/") else r + "/", shown) for r, shown in roots.items()
        ) + tuple(siblings.items())

    def __bool__(self) -> bool:
        return bool(self._roots)

    def hit(self, value: object) -> tuple[str, str] | None:
        """(candidate as written, protected root) for the first hit in ``value``, else None.

        Raises TooManyCandidates when ``value`` holds more than MAX_CANDIDATES candidates.
        """
        if not self._roots:
            return None
        seen: set[str] = set()
        for candidate in _candidates(value):
            if candidate in seen:
                continue
            if len(seen) >= MAX_CANDIDATES:
                raise TooManyCandidates
            seen.add(candidate)
            root = self._check(candidate)
            if root is not None:
                return candidate, root
        return None

    def _check(self, candidate: str) -> str | None:
        expanded = self._expand(candidate)
        # join() would return an absolute path as it is: skip its Python-level work
        joined = expanded if expanded.startswith("/") else os.path.join(self.cwd, expanded)
        # Both views: the lexical one (normpath) and the kernel's. realpath gets the path
        # before normpath: it resolves a symlink before the ".." that follows it, as open()
        # does ("/tmp/link/../.ssh/x" with link -> ~/dir opens ~/.ssh/x).
        normal = _collapse(os.path.normpath(joined))
        for form in (normal, _realpath(joined, normal)):
            folded = self._fold(form)
            shown = self._roots.get(folded)
            if shown is not None:
                return shown
            for prefix, shown in self._prefixes:
                if folded.startswith(prefix):
                    return shown
        return None

    def _expand(self, path: str) -> str:
        path = path.split("\x00", 1)[0]  # C APIs stop at NUL: so does the check
        if path.startswith("/"):
            return path  # the common case: nothing below applies to it
        if path.startswith("file:"):  # file:///x, file://localhost/x, file:/x
            path = unquote(urlsplit(path).path)
        for prefix in ("$HOME", "${HOME}"):
            if path == prefix or path.startswith(prefix + "/"):
                return self.home + path[len(prefix) :]
        if path == "~" or path.startswith("~/"):
            return self.home + path[1:]
        return os.path.expanduser(path)  # ~user/...

    def _fold(self, path: str) -> str:
        return path.casefold() if self.case_insensitive else path


def _collapse(path: str) -> str:
    if path.startswith("//"):  # POSIX keeps a leading "//"; the kernel treats it as "/"
        return "/" + path.lstrip("/")
    return path


def _realpath(path: str, normal: str | None = None) -> str:
    """``os.path.realpath(path)`` (strict=False); ``normal`` is ``path`` normpath-ed, if known."""
    try:
        if KERNEL_RESOLVE and path.startswith("/"):
            try:
                return _collapse(_kernel_realpath(path, normal))
            except OSError:
                pass  # /proc unusable (closed fd limit, unmounted): realpath does it
        return _collapse(os.path.realpath(path))
    except (OSError, ValueError):
        return path


def _kernel_realpath(path: str, normal: str | None) -> str:
    """What ``os.path.realpath`` answers, asking the kernel where it surely agrees.

    The path exists: open(O_PATH) resolves it with the walk realpath does (each symlink
    before the ``..`` that follows it) and /proc names what it reached. It does not: for a
    normal path (no ``.``, ``..``, ``//``) lstat from the root down to the first missing
    name; with no symlink on the way realpath is the path itself, as realpath keeps missing
    names as written. A symlink on the way (a dangling one into a protected directory
    included), permission problems, loops and odd /proc names go to realpath itself.
    Nothing is cached: a symlink the agent swaps in between two calls is seen by the next.
    """
    try:
        fd = os.open(path, _O_PATH | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno not in _MISSING:
            return os.path.realpath(path)
        if normal is None:
            normal = _collapse(os.path.normpath(path))
        return _missing_tail(path) if path == normal else os.path.realpath(path)
    try:
        real = os.readlink(str(fd), dir_fd=_proc_fds())
    finally:
        os.close(fd)
    if not real.startswith("/") or real.endswith(" (deleted)"):
        return os.path.realpath(path)  # "pipe:[..]", "/x (deleted)", an unreachable mount
    return real


def _missing_tail(path: str) -> str:
    """realpath of a normal absolute ``path`` that does not fully exist (see above)."""
    end = 0
    while True:
        end = path.find("/", end + 1)
        prefix = path if end < 0 else path[:end]
        try:
            mode = os.lstat(prefix).st_mode
        except OSError as exc:
            if exc.errno in _MISSING:
                return path  # no symlink before the first missing name
            return os.path.realpath(path)
        if stat.S_ISLNK(mode) or end < 0:  # a symlink; or it exists after all
            return os.path.realpath(path)


_proc_dir: list[int] = [-1, -1]  # fd of /proc/self/fd, pid it was opened in
_proc_lock = threading.Lock()


def _proc_fds() -> int:
    """/proc/self/fd, opened once per process (reopened after a fork: it names the opener)."""
    pid = os.getpid()
    if _proc_dir[1] != pid:
        with _proc_lock:
            if _proc_dir[1] != pid:
                _proc_dir[0] = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                _proc_dir[1] = pid
    return _proc_dir[0]


def _candidates(value: object) -> Iterator[str]:
    """Every path-like string in a JSON value: leaves, dict keys, and their tokens."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield from _tokens(item)
        elif isinstance(item, dict):
            for key, inner in item.items():
                if isinstance(key, str):
                    yield from _tokens(key)
                stack.append(inner)
        elif isinstance(item, list):
            stack.extend(item)


def _tokens(text: str) -> Iterator[str]:
    """The whole string, its whitespace tokens (DESIGN §4.5), and pieces glued to shell or
    list punctuation (``cat</etc/shadow``, ``a;cat ~/.ssh/x``, ``--key=~/.ssh/id``,
    ``host:/etc/shadow``): more candidates only ever block more."""
    # Every candidate contains one of these characters; most argument values contain none,
    # and four C-level scans are far cheaper than splitting.
    if "/" not in text and "~" not in text and "." not in text and "$" not in text:
        return
    pieces = _GLUE.split(text)
    if len(pieces) == 1:
        # No whitespace (\s is str.isspace, as split() uses) and no punctuation: the text and
        # its host:path parts are all the candidates the three passes below would find.
        if text.startswith(_STARTS):
            yield text
        if ":" in text and not text.startswith("file:"):
            for sub in text.split(":")[1:]:
                if sub.startswith(_STARTS):
                    yield sub
        return
    if text.startswith(_STARTS):
        yield text
    for part in text.split():
        if part.startswith(_STARTS):
            yield part
    for piece in pieces:
        if piece.startswith(_STARTS):
            yield piece
        if ":" in piece and not piece.startswith("file:"):
            for sub in piece.split(":")[1:]:
                if sub.startswith(_STARTS):
                    yield sub
