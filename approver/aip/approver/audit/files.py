"""Files of the audit log: the 0700 directory, the 0600 append-only file, rotated names.

The writer's syscalls go through ``FileOps`` so tests can inject faults (short writes, EIO on
fsync) next to the root-proof real ones (/dev/full, RLIMIT_FSIZE, a directory at the path).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import stat
import sys
from pathlib import Path

from aip.shared import paths
from aip.shared.safe_write import write_new

log = logging.getLogger(__name__)

ROTATED_SUFFIX_DIGITS = 12  # name.jsonl.000000001042: sorts oldest first as plain text


class FileOps:
    """The syscalls the writer makes on the open log; subclass to inject faults."""

    def write(self, fd: int, data: bytes) -> int:
        return os.write(fd, data)

    def sync(self, fd: int) -> None:
        # fdatasync also flushes the size of an appended file; macOS has only fsync.
        if sys.platform == "darwin":
            os.fsync(fd)
        else:
            os.fdatasync(fd)

    def truncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)


def prepare_dir(directory: Path) -> None:
    """Create the log directory 0700; an existing one must be ours. One of aip's own folders
    (paths.own_folders) open to others is tightened to 0700, with a warning. Any other folder
    is never changed (``--audit-log /tmp/x.jsonl`` as root would otherwise make /tmp 0700):
    one that others can write to (they could delete or swap the log) is refused with the
    reason; one they can only read is used as it is (the log itself is 0600). Raises OSError."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.stat(directory, follow_symlinks=False)
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(f"{directory}: not a directory")
    if st.st_uid != os.getuid():
        raise PermissionError(f"{directory}: owned by uid {st.st_uid}, not by us")
    if not st.st_mode & 0o077:
        return
    mode = f"{stat.S_IMODE(st.st_mode):04o}"
    if paths.is_aip_own(directory):
        log.warning("audit directory %s had mode %s: tightened to 0700", directory, mode)
        os.chmod(directory, 0o700)
    elif st.st_mode & 0o022:
        raise PermissionError(
            f"{directory}: mode {mode} lets other users write there, and it is not aip's own "
            "folder (left unchanged): put the audit log in a private folder of its own (0700)"
        )


def open_log(path: Path) -> int:
    """Open (create 0600) the current file for append and take its exclusive lock.
    Refuses symlinks, non-regular files and files of another user."""
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
    fd = os.open(path, flags, 0o600)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path}: not a regular file")
        if st.st_uid != os.getuid():
            raise PermissionError(f"{path}: owned by uid {st.st_uid}, not by us")
        if st.st_mode & 0o077:
            os.fchmod(fd, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise OSError(f"{path}: another process is writing this audit log") from exc
    except BaseException:
        os.close(fd)
        raise
    return fd


def rotated_path(path: Path, seq: int) -> Path:
    """Where the current file goes when its ``rotate`` record has sequence number ``seq``."""
    return path.with_name(f"{path.name}.{seq:0{ROTATED_SUFFIX_DIGITS}d}")


def chain_files(path: Path) -> list[Path]:
    """The rotated files of this log, oldest first, then the current file (if present)."""
    pattern = re.compile(re.escape(path.name) + rf"\.\d{{{ROTATED_SUFFIX_DIGITS}}}")
    rotated: list[Path] = []
    with contextlib.suppress(FileNotFoundError):
        rotated = sorted(
            p for p in path.parent.iterdir() if pattern.fullmatch(p.name) and p.is_file()
        )
    return [*rotated, path] if path.exists() else rotated


def write_side_file(path: Path, data: bytes) -> None:
    """Keep discarded torn bytes beside the log (0600), never overwriting an earlier one:
    whole and synced before the log is cut (safe_write.write_new), so neither a kill nor a
    power cut in between leaves an empty copy of bytes the log no longer holds."""
    write_new(path, data, 0o600)
