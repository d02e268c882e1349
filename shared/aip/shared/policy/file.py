"""Where the policy file is and whether it may be trusted (DESIGN §3).

Lookup: ``--policy``, else ``$AIP_POLICY``, else ``~/.config/aip/policy.yaml`` — never the
current directory (a cloned repository or the agent itself could plant one there). A file
that is group/world-writable, or owned by someone other than the user (or root), is refused,
and so is a symlink to one. Checks run on the open descriptor that is then read (no TOCTOU).
``PolicyPin`` keeps the policy's folder open from start, so a reload reads the file in that
folder or nothing (issue 11: a renamed ancestor cannot put another policy in its place).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

from aip.shared.errors import PolicyError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

MAX_POLICY_BYTES: Final = 1 << 20
DEFAULT_POLICY: Final = Path(".config") / "aip" / "policy.yaml"  # under $HOME


def find_policy_path(cli_value: str | None, env: Mapping[str, str] = os.environ) -> Path:
    """The policy file to load, absolute. Raises PolicyError when there is none to find."""
    if cli_value:
        return Path(os.path.abspath(os.path.expanduser(cli_value)))
    from_env = env.get("AIP_POLICY", "")
    if from_env:
        return Path(os.path.abspath(os.path.expanduser(from_env)))
    home = env.get("HOME") or os.path.expanduser("~")
    default = Path(home) / DEFAULT_POLICY
    if not default.exists():
        raise PolicyError.single(
            str(default),
            "no policy: pass --policy FILE, set $AIP_POLICY, or create this file "
            "(a missing policy never means allow-all)",
        )
    return default


class PolicyPin:
    """The folder of the policy file, opened at start and read through ever after.

    ``read()`` refuses when the path now leads elsewhere: the folder at the path is not the
    one opened at start (an ancestor moved away and another put in its place: st_dev and
    st_ino differ) or the path's real location changed (a symlink re-pointed). The file is
    opened relative to the kept folder with O_NOFOLLOW, so nothing swapped in on the way counts.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self.real = os.path.realpath(self.path)
        self.folder, self.name = os.path.split(self.real)
        try:
            self._fd = os.open(self.folder, _DIR_FLAGS)
        except OSError as exc:
            raise PolicyError.single(
                self.path, f"cannot open the policy's folder: {exc.strerror}"
            ) from None
        st = os.fstat(self._fd)
        self.identity = (st.st_dev, st.st_ino)

    def read(self) -> bytes:
        """The file's bytes, after the pin and the ownership and mode checks."""
        return self.read_owned()[0]

    def read_owned(self) -> tuple[bytes, int]:
        """``read``, and the uid that owns the file."""
        if self._fd < 0:
            raise PolicyError.single(self.path, "the policy pin is closed")
        try:
            st = os.stat(self.folder)
            moved = (st.st_dev, st.st_ino) != self.identity
        except OSError:
            moved = True
        if moved:
            raise PolicyError.single(
                self.path,
                f"refused: the folder {self.folder} is not the folder the policy was loaded "
                "from at start (moved away or replaced); the policy in force stays until the "
                "proxy restarts",
            )
        if os.path.realpath(self.path) != self.real:
            raise PolicyError.single(
                self.path,
                f"refused: the path now leads to {os.path.realpath(self.path)}, not to "
                f"{self.real} as at start (a symlink changed); the policy in force stays "
                "until the proxy restarts",
            )
        try:
            fd = os.open(self.name, _FILE_FLAGS | os.O_NOFOLLOW, dir_fd=self._fd)
        except FileNotFoundError:
            raise PolicyError.single(self.path, "policy file not found") from None
        except OSError as exc:
            raise PolicyError.single(
                self.path, f"cannot open policy file: {exc.strerror}"
            ) from None
        return _read_checked(self.real, fd, check_safety=True)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def check_policy_file_safety(path: str | os.PathLike[str]) -> None:
    """Raise PolicyError unless ``path`` (after symlinks) is a file only its owner can change."""
    fd = _open(os.fspath(path))
    try:
        _check(os.fspath(path), fd)
    finally:
        os.close(fd)


def read_policy_file(path: str | os.PathLike[str], *, check_safety: bool = True) -> bytes:
    """The file's bytes (at most MAX_POLICY_BYTES), after the ownership and mode checks."""
    return read_policy_file_owned(path, check_safety=check_safety)[0]


def read_policy_file_owned(
    path: str | os.PathLike[str], *, check_safety: bool = True
) -> tuple[bytes, int]:
    """``read_policy_file``, and the uid that owns the file."""
    name = os.fspath(path)
    return _read_checked(name, _open(name), check_safety=check_safety)


def _read_checked(name: str, fd: int, *, check_safety: bool) -> tuple[bytes, int]:
    """Read ``fd`` (closed here) after the checks; its bytes and its owner's uid."""
    try:
        if check_safety:
            st = _check(name, fd)
        else:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise PolicyError.single(name, "not a regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_POLICY_BYTES:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > MAX_POLICY_BYTES:
        raise PolicyError.single(name, f"policy file is larger than {MAX_POLICY_BYTES} bytes")
    return b"".join(chunks), st.st_uid


# O_NONBLOCK: opening a FIFO planted at the path must not hang the proxy.
_FILE_FLAGS: Final = os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
# O_PATH (Linux) opens the folder without read permission on it; elsewhere a read-only open.
_DIR_FLAGS: Final = (
    (getattr(os, "O_PATH", 0) or os.O_RDONLY) | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)
)


def _open(name: str) -> int:
    try:
        return os.open(name, _FILE_FLAGS)
    except FileNotFoundError:
        raise PolicyError.single(name, "policy file not found") from None
    except OSError as exc:
        raise PolicyError.single(name, f"cannot open policy file: {exc.strerror}") from None


def _trusted_owner(uid: int) -> bool:
    # Root-owned files are accepted too: only root can change them (an admin-managed policy).
    return uid in (os.geteuid(), 0)


def _check(name: str, fd: int) -> os.stat_result:
    """The file's fstat, once it passed the checks (PolicyError otherwise)."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise PolicyError.single(name, "not a regular file")
    if not _trusted_owner(st.st_uid):
        raise PolicyError.single(
            name, f"refused: owned by uid {st.st_uid}, not by you (uid {os.geteuid()})"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise PolicyError.single(
            name,
            f"refused: group- or world-writable (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"run: chmod go-w {name}",
        )
    try:
        link = os.lstat(name)
    except OSError:
        return st
    if stat.S_ISLNK(link.st_mode) and not _trusted_owner(link.st_uid):
        # Whoever owns the link decides which file it names.
        raise PolicyError.single(name, f"refused: symlink owned by uid {link.st_uid}")
    return st
