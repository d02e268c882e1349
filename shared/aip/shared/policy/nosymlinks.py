"""Linux ``openat2(RESOLVE_NO_SYMLINKS)`` for ``protected_resolve`` (DESIGN §4.5): does the
kernel's walk of a path meet no symlink? One system call answers what ``realpath`` would need
an ``open``, a ``/proc`` read and a ``close`` for (an existing path), or an ``open`` and an
``lstat`` per component down to the first missing one (a missing path).

The kernel walks the path as ``open`` would and fails with ELOOP at the first symlink (the
last component's too, and /proc's magic links). ENOENT/ENOTDIR mean a name was missing
before any symlink was met. Any other answer (ELOOP, EACCES, a seccomp filter's ENOSYS or
EPERM, no such call) is "don't know": the caller resolves the path the long way. Nothing is
remembered between calls but whether the call exists.
"""

from __future__ import annotations

import errno
import os
import platform
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

_RESOLVE_NO_SYMLINKS: Final = 0x04
_AT_FDCWD: Final = -100
# openat2 is 437 on every architecture with the unified syscall table (Linux >= 5.6); only
# the two we run on are listed: elsewhere the long way serves.
_SYS_OPENAT2: Final = {"x86_64": 437, "aarch64": 437}
_MISSING: Final = (errno.ENOENT, errno.ENOTDIR)
_FS_ENCODING: Final = sys.getfilesystemencoding()
_FS_ERRORS: Final = sys.getfilesystemencodeerrors()
_state: list[Any] = []  # [call, how, ctypes] once built; [None] when unavailable


def walk_without_symlinks(path: str) -> bool:
    """True when the kernel walks absolute ``path`` to its end, or to a missing name, without
    meeting a symlink: then a normal ``path`` (no ``.``, ``..``, ``//``) is its own
    ``realpath``. False: don't know (a symlink on the way, an error, no openat2)."""
    call = (_state or _build())[0]
    if call is None or "\x00" in path:
        return False
    # os.fsencode without its checks: ``path`` is a str
    fd = call[0](call[1], _AT_FDCWD, path.encode(_FS_ENCODING, _FS_ERRORS), call[2], call[3])
    if fd >= 0:
        os.close(fd)
        return True
    err = call[4]()
    if err in (errno.ENOSYS, errno.EINVAL, errno.E2BIG, errno.EPERM):
        _state[:] = [None]  # not available here (old kernel, a filter): stop asking
    return err in _MISSING


def _build() -> list[Any]:
    number = _SYS_OPENAT2.get(platform.machine()) if sys.platform == "linux" else None
    if number is None or not hasattr(os, "O_PATH"):
        _state[:] = [None]
        return _state
    import ctypes  # the proxy loads it at start anyway (child.become_subreaper)

    class OpenHow(ctypes.Structure):
        _fields_ = (
            ("flags", ctypes.c_uint64),
            ("mode", ctypes.c_uint64),
            ("resolve", ctypes.c_uint64),
        )

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        syscall = libc.syscall
    except (OSError, AttributeError):
        _state[:] = [None]
        return _state
    syscall.restype = ctypes.c_long
    how = OpenHow(os.O_PATH | os.O_CLOEXEC, 0, _RESOLVE_NO_SYMLINKS)

    # Called directly (no Python wrapper): restype c_long makes ctypes return an int.
    _state[:] = [(syscall, number, ctypes.byref(how), ctypes.sizeof(how), ctypes.get_errno), how]
    return _state
