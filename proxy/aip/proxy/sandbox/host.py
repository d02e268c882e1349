"""Host lookups a sandboxed start needs, without ``shutil`` and ``tempfile`` (issue 16).

Every start looks up ``bwrap``, ``true`` and ``sh`` on PATH, asks whether the policy's folder
is a temp root, and makes a private temp folder for the server's stdout FIFO. ``shutil.which``
and ``tempfile`` did that, but importing them costs each proxy ~5 ms of CPU and ~0.9 MB of RSS
(``shutil`` loads zlib, bz2 and lzma for its archive helpers; ``tempfile`` loads ``shutil`` and
``random``, and ``gettempdir`` probes each folder by creating a file in it). These keep the
stdlib's rules: ``which`` is ``shutil.which`` on POSIX (tests/proxy/test_sandbox_host.py
compares them), the temp roots are ``tempfile``'s candidates in its order.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

# tempfile's fixed candidates on POSIX, after $TMPDIR, $TEMP and $TMP.
FIXED_TEMP_ROOTS: Final = ("/tmp", "/var/tmp", "/usr/tmp")  # noqa: S108 - names, none created
_TEMP_ENV: Final = ("TMPDIR", "TEMP", "TMP")


def which(cmd: str) -> str | None:
    """``shutil.which(cmd)`` on POSIX: a name with a folder part is checked as it is; else the
    first ``PATH`` entry (``CS_PATH`` when PATH is unset; nothing when it is empty) holding an
    executable non-folder of that name."""
    if os.path.dirname(cmd):
        return cmd if _executable(cmd) else None
    path = os.environ.get("PATH")
    if path is None:
        try:
            path = os.confstr("CS_PATH")
        except (AttributeError, ValueError):
            path = os.defpath
    if not path:
        return None
    seen: set[str] = set()
    for folder in path.split(os.pathsep):
        if folder in seen:
            continue
        seen.add(folder)
        name = os.path.join(folder, cmd)
        if _executable(name):
            return name
    return None


def _executable(name: str) -> bool:
    return os.path.exists(name) and os.access(name, os.F_OK | os.X_OK) and not os.path.isdir(name)


def temp_roots() -> list[str]:
    """The folders ``tempfile`` would choose its temp folder from, in its order, as absolute
    paths (the current folder, its last resort, is left to the caller)."""
    named = [os.environ.get(var) for var in _TEMP_ENV]
    return list(dict.fromkeys(os.path.abspath(d) for d in [*named, *FIXED_TEMP_ROOTS] if d))


def private_temp_dir(prefix: str) -> str:
    """A new 0700 folder in the first temp root that takes one (``tempfile.mkdtemp``'s
    result, made with one ``mkdir`` per root instead of a probe file first); ``tempfile``
    itself where none does (it also tries the current folder and says why it failed)."""
    for root in temp_roots():
        for _ in range(4):  # a name already taken: another random one
            path = os.path.join(root, prefix + os.urandom(6).hex())
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                continue
            except OSError:
                break
            return path
    import tempfile

    return tempfile.mkdtemp(prefix=prefix)
