"""Where a path really leads (DESIGN §4.5): ``realpath`` (strict=False), asked of the kernel
where it surely agrees with ``os.path.realpath`` (Linux: one ``open(O_PATH)`` and a /proc name,
~3 us, against ~12 us for realpath's lstat per component). A normal path is first walked by
``openat2`` refusing every symlink (``aip.shared.policy.nosymlinks``): when no symlink is on
the way the path is its own real path, in one call. Nothing is cached: a symlink the agent
swaps in between two calls is seen by the next.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import threading

from aip.shared.policy.nosymlinks import walk_without_symlinks

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

# Linux: the kernel resolves a path in one open(O_PATH) and /proc names what it reached
# (~3 us); os.path.realpath walks it in Python with an lstat per component (~12 us).
_O_PATH: Final = getattr(os, "O_PATH", 0)
KERNEL_RESOLVE: Final = sys.platform == "linux" and _O_PATH != 0 and os.path.isdir("/proc/self/fd")
_MISSING: Final = (errno.ENOENT, errno.ENOTDIR)


def collapse(path: str) -> str:
    if path.startswith("//"):  # POSIX keeps a leading "//"; the kernel treats it as "/"
        return "/" + path.lstrip("/")
    return path


def realpath(path: str, normal: str | None = None, known: int = 0) -> str:
    """``os.path.realpath(path)`` (strict=False); ``normal`` is ``path`` normpath-ed, if known;
    ``path[:known]`` is a directory's real path (a base's): the walk for a missing tail
    starts below it, one lstat instead of one per component of the base."""
    try:
        if KERNEL_RESOLVE and path.startswith("/"):
            # One openat2 walk that refuses symlinks: exists, or missing before any symlink,
            # and realpath is the path as written (it keeps missing names as written).
            if path == normal and walk_without_symlinks(path):
                return collapse(path)
            try:
                return collapse(_kernel_realpath(path, normal, known))
            except OSError:
                pass  # /proc unusable (closed fd limit, unmounted): realpath does it
        return collapse(os.path.realpath(path))
    except (OSError, ValueError):
        return path


def _kernel_realpath(path: str, normal: str | None, known: int = 0) -> str:
    """What ``os.path.realpath`` answers, asking the kernel where it surely agrees, once the
    openat2 walk (``realpath``) did not answer.

    The path exists: open(O_PATH) resolves it with the walk realpath does (each symlink
    before the ``..`` that follows it) and /proc names what it reached. It does not: for a
    normal path (no ``.``, ``..``, ``//``) lstat from the root down to the first missing
    name; with no symlink on the way realpath is the path itself, as realpath keeps missing
    names as written. A symlink on the way (a dangling one into a protected directory
    included), permission problems, loops and odd /proc names go to realpath itself.
    """
    if known and path == normal:
        # Below a base most names are missing: one lstat of the first name says so.
        cut = path.find("/", known + 1)
        try:
            os.lstat(path if cut < 0 else path[:cut])
        except OSError as exc:
            if exc.errno in _MISSING:
                return path
    try:
        fd = os.open(path, _O_PATH | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno not in _MISSING:
            return os.path.realpath(path)
        if normal is None:
            normal = collapse(os.path.normpath(path))
        return _missing_tail(path, known) if path == normal else os.path.realpath(path)
    try:
        real = os.readlink(str(fd), dir_fd=_proc_fds())
    finally:
        os.close(fd)
    if not real.startswith("/") or real.endswith(" (deleted)"):
        return os.path.realpath(path)  # "pipe:[..]", "/x (deleted)", an unreachable mount
    return real


def _missing_tail(path: str, known: int = 0) -> str:
    """realpath of a normal absolute ``path`` that does not fully exist (see above)."""
    end = known if 0 < known < len(path) and path[known] == "/" else 0
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
