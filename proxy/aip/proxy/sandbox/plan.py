"""What the server's sandbox hides and freezes: one plan, rendered for bwrap or sandbox-exec.

Input: the protected path strings of DESIGN §4.5 (as the string check gets them: ``~``,
``$HOME``, relative to the cwd, ``<log>.*`` family roots) and aip's own launch files. Output:
existing real paths, sorted and without anything already inside a hidden folder. A path that
does not exist at start is listed in ``missing`` (a mount needs a target; the string check
still covers it).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence

from aip.proxy.sandbox.host import temp_roots
from aip.shared import slotclass
from aip.shared.policy.protected import FAMILY_SUFFIX
from aip.shared.slotclass import FrozenSlotted
from aip.shared.startup_paths import startup_files


class Plan(FrozenSlotted):
    """What the sandbox hides, keeps read-only and pins for the server."""

    __slots__ = ("hide_dirs", "hide_files", "missing", "pin", "read_only")
    hide_dirs: tuple[str, ...]  # an empty read-only folder in their place
    hide_files: tuple[str, ...]  # an empty read-only file in their place
    read_only: tuple[str, ...]  # visible, not writable (aip's code and start-up files)
    pin: tuple[str, ...]  # folders the server may not rename (ancestors of the above)
    missing: tuple[str, ...]

    def __init__(
        self,
        hide_dirs: tuple[str, ...],
        hide_files: tuple[str, ...],
        read_only: tuple[str, ...],
        pin: tuple[str, ...],
        missing: tuple[str, ...] = (),
    ) -> None:
        slotclass.init(self, "hide_dirs", hide_dirs)
        slotclass.init(self, "hide_files", hide_files)
        slotclass.init(self, "read_only", read_only)
        slotclass.init(self, "pin", pin)
        slotclass.init(self, "missing", missing)

    def __bool__(self) -> bool:
        return bool(self.hide_dirs or self.hide_files or self.read_only)


def build(
    protected: Iterable[str],
    *,
    cwd: str,
    home: str,
    policy_path: str | None,
    command: Sequence[str] = (),
    read_only: Iterable[str] = (),
) -> Plan:
    """The plan for these protected strings. The policy's folder is hidden whole unless it is
    too wide to hide (home or above it, a temp root, the cwd, or it holds a path named on
    the server's command line: the server was told to work there); then the file alone is
    hidden and its folder pinned."""
    dirs: set[str] = set()
    files: set[str] = set()
    missing: list[str] = []
    keep = [cwd, home, *_named_paths(command)]
    if policy_path:
        folder = os.path.dirname(_resolve(policy_path, cwd, home))
        if not _too_wide(folder, keep):
            dirs.add(folder)
    for text in protected:
        for path in _expand(text, cwd, home):
            if os.path.isdir(path):
                dirs.add(path)
            elif os.path.lexists(path):
                files.add(path)
            else:
                missing.append(path)
    hidden = _outermost(dirs)
    hide_files = sorted(f for f in files if not _inside_any(f, hidden))
    frozen = _outermost(
        {os.path.realpath(r) for r in read_only if os.path.exists(r)} - files - set(hidden)
    )
    frozen = [p for p in frozen if not _inside_any(p, hidden)]
    targets = [*hidden, *hide_files, *frozen]
    # A mount inside a later (recursive, from the host's view) bind would be dropped by it.
    pins = [
        p
        for p in _outermost_order({a for t in targets for a in _renameable_ancestors(t)})
        if not _inside_any(p, [*hidden, *frozen])
    ]
    missing = [m for m in missing if not _inside_any(m, hidden)]
    return Plan(tuple(hidden), tuple(hide_files), tuple(frozen), tuple(pins), tuple(missing))


def launch_files() -> list[str]:
    """aip's own code and what starts it: our packages, the interpreter's site-packages (a
    ``.pth`` file there runs at every Python start), the virtualenv we run from, the script
    that started us, and the approver's start-up files."""
    import aip  # the namespace package: one folder per installed portion

    found = list(aip.__path__)
    found += [
        os.path.dirname(p)
        for p in aip.__path__
        if os.path.basename(os.path.dirname(p)) in ("site-packages", "dist-packages")
    ]
    if sys.prefix != sys.base_prefix:
        found.append(sys.prefix)  # the virtualenv: interpreter, scripts, site-packages
    else:  # sysconfig costs a few ms; a virtualenv (the usual install) does not need it
        import sysconfig

        paths = sysconfig.get_paths()
        found += [paths["purelib"], paths["platlib"]]
    if sys.argv and os.path.isabs(sys.argv[0]):
        found.append(sys.argv[0])
    found += [str(p) for p in startup_files()]
    return list(dict.fromkeys(found))


def _named_paths(command: Sequence[str]) -> list[str]:
    """Absolute paths on a command line, alone or as ``--option=/path``."""
    found = []
    for arg in command[1:]:
        value = arg.split("=", 1)[1] if arg.startswith("-") and "=" in arg else arg
        if value.startswith("/"):
            found.append(value)
    return found


def _resolve(text: str, cwd: str, home: str) -> str:
    for prefix in ("$HOME", "${HOME}"):
        if text == prefix or text.startswith(prefix + "/"):
            text = home + text[len(prefix) :]
    if text == "~" or text.startswith("~/"):
        text = home + text[1:]
    return os.path.realpath(os.path.join(cwd, text))


def _expand(text: str, cwd: str, home: str) -> list[str]:
    """The existing paths one protected string names (a family root names several)."""
    if text.endswith(FAMILY_SUFFIX) and len(text) > len(FAMILY_SUFFIX):
        base = _resolve(text[: -len(FAMILY_SUFFIX)], cwd, home)
        return [base, *_family(base)]
    return [_resolve(text, cwd, home)]


def _family(base: str) -> list[str]:
    """The entries beside ``base`` named ``<base>.*``, sorted: ``glob.glob(glob.escape(base) +
    ".*")`` without importing glob (a name is never hidden from it: it starts as base does)."""
    folder, name = os.path.split(base)
    try:
        names = os.listdir(folder or ".")
    except OSError:
        return []
    return sorted(os.path.join(folder, n) for n in names if n.startswith(name + "."))


def _too_wide(folder: str, keep: Iterable[str]) -> bool:
    # A temp root (any tempfile could pick) or "/": too wide to hide, the server would lose
    # its data; the current folder, tempfile's last resort, is in ``keep``.
    if folder == "/" or folder in temp_roots():
        return True
    return any(_inside(os.path.realpath(k), folder) for k in keep if k)


def _inside(path: str, folder: str) -> bool:
    """``path`` is ``folder`` or lies under it."""
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _inside_any(path: str, folders: Iterable[str]) -> bool:
    return any(_inside(path, f) for f in folders)


def _outermost_order(paths: set[str]) -> list[str]:
    return sorted(paths, key=lambda p: (p.count("/"), p))


def _outermost(paths: set[str]) -> list[str]:
    """Paths not inside another of them, shallowest first."""
    out: list[str] = []
    for d in _outermost_order(paths):
        if not _inside_any(d, out):
            out.append(d)
    return out


def _renameable_ancestors(path: str) -> list[str]:
    """Folders above ``path`` whose parent we may write: renaming one of them (and planting a
    look-alike under the old name) would put a new file where the protected one was."""
    out = []
    parent = os.path.dirname(path)
    while parent != "/" and parent:
        if os.access(os.path.dirname(parent), os.W_OK):
            out.append(parent)
        parent = os.path.dirname(parent)
    return out
