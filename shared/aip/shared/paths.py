"""Where aip keeps its files (DESIGN §3), and the owner/mode/symlink checks that guard them.

Runtime dir (socket + lock): ``$XDG_RUNTIME_DIR/aip``, else ``/run/user/$UID/aip`` when
that is a private dir of ours, macOS ``$TMPDIR/aip``, else ``/tmp/aip-$UID``; always 0700,
owned by us, not a symlink. State dir (audit log): ``$XDG_STATE_HOME/aip`` or
``~/.local/state/aip`` (macOS ``~/Library/Logs/aip``).
"""

from __future__ import annotations

import enum
import os
import stat
import sys
from pathlib import Path

from aip.shared.errors import ConfigError
from aip.shared.userns import ambiguity

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

ENDPOINT_ENV: Final = "AIP_APPROVER_ENDPOINT"
AUDIT_LOG_ENV: Final = "AIP_AUDIT_LOG"
POLICY_ENV: Final = "AIP_POLICY"
SOCKET_NAME: Final = "approver.sock"
AUDIT_NAME: Final = "aip-audit.jsonl"
IPC_PREFIX: Final = "ipc://"
MAX_IPC_PATH: Final = 103  # sun_path is 104 bytes on macOS, 108 on Linux, NUL included
HMAC_KEY_NAME: Final = "audit-hmac.key"  # beside the audit log (approver and proxy)
SPOOL_DIR_NAME: Final = "spool"  # beside the audit log: records proxies could not hand over
# Where logind makes $XDG_RUNTIME_DIR; a test seam (tests point it at tmp_path).
RUN_USER_BASE: Final = Path("/run/user")


class UnsafePathError(ConfigError):
    """A directory or file that another user could control."""


class DirState(enum.Enum):
    OK = "ok"
    MISSING = "missing"
    UNTRUSTED = "untrusted"


def runtime_dir(run_user_base: Path | None = None) -> Path:
    """The per-user runtime directory for the approver socket (not created here).

    MCP clients start servers with a stripped environment (HOME, PATH, USER, ...: no
    XDG_RUNTIME_DIR), while the approver, started by the desktop session, has it. So without
    the variable we still pick ``/run/user/$UID`` when it is the private dir logind makes
    (ours, 0700, not a symlink): both sides then meet at the same socket."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and sys.platform != "darwin":
        return Path(xdg) / "aip"
    if sys.platform != "darwin":
        session_dir = (run_user_base or RUN_USER_BASE) / str(os.getuid())
        if dir_problem(session_dir) is None:
            return session_dir / "aip"
    tmp = os.environ.get("TMPDIR")
    if sys.platform == "darwin" and tmp:
        return Path(tmp) / "aip"
    return Path(f"/tmp/aip-{os.getuid()}")  # noqa: S108 - private 0700 dir, checked on use


def default_endpoint() -> str:
    """``$AIP_APPROVER_ENDPOINT``, else ``ipc://<runtime dir>/approver.sock``."""
    return os.environ.get(ENDPOINT_ENV) or IPC_PREFIX + str(runtime_dir() / SOCKET_NAME)


def socket_path(endpoint: str) -> Path:
    """The filesystem path of an ``ipc://`` endpoint. Anything else is refused: TCP has no
    peer uid and the abstract namespace (``ipc://@``) ignores permissions (security §2.1)."""
    if not endpoint.startswith(IPC_PREFIX):
        raise ConfigError(f"endpoint {endpoint!r}: only ipc:// endpoints are supported")
    raw = endpoint[len(IPC_PREFIX) :]
    if not raw.startswith("/"):
        raise ConfigError(f"endpoint {endpoint!r}: needs an absolute path (no abstract socket)")
    if len(raw.encode()) > MAX_IPC_PATH:
        raise ConfigError(f"endpoint {endpoint!r}: path longer than {MAX_IPC_PATH} bytes")
    return Path(raw)


def lock_path(endpoint: str) -> Path:
    """The single-instance lock beside the socket (``approver.sock.lock``)."""
    sock = socket_path(endpoint)
    return sock.with_name(sock.name + ".lock")


def state_dir() -> Path:
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Logs" / "aip"
    xdg = os.environ.get("XDG_STATE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "state") / "aip"


def default_audit_log() -> Path:
    """``$AIP_AUDIT_LOG``, else ``<state dir>/aip-audit.jsonl``."""
    env = os.environ.get(AUDIT_LOG_ENV)
    return Path(env) if env else state_dir() / AUDIT_NAME


def default_policy() -> Path:
    """``$AIP_POLICY``, else ``~/.config/aip/policy.yaml`` (never the current directory)."""
    env = os.environ.get(POLICY_ENV)
    return Path(env) if env else Path.home() / ".config" / "aip" / "policy.yaml"


def own_folders() -> tuple[Path, ...]:
    """aip's own folders: the runtime dir, the state dir, the config dir and the /tmp fallback.
    ``aipctl`` proposes a fix (chmod, rm, mv) only for these and what lies inside them, never
    for a folder a user merely pointed a setting into (``/tmp``, ``/usr``, a home)."""
    return (
        runtime_dir(),
        state_dir(),
        Path.home() / ".config" / "aip",  # the default policy's folder
        Path(f"/tmp/aip-{os.getuid()}"),  # noqa: S108 - the fallback runtime dir's name
    )


def is_aip_own(path: Path) -> bool:
    """``path`` is one of ``own_folders()`` or lies inside one (compared lexically, after
    making it absolute: a fix is text for a human, never an operation on what a link names)."""
    here = os.path.normpath(os.path.abspath(path))
    for folder in own_folders():
        root = os.path.normpath(os.path.abspath(folder))
        if root != "/" and (here == root or here.startswith(root + "/")):
            return True
    return False


def protectable_dir(path: Path) -> bool:
    """A private dir of ours that holds no home directory (safe to protect whole)."""
    if dir_problem(path) is not None:
        return False
    home = os.path.realpath(os.path.expanduser("~"))
    here = os.path.realpath(path)
    return here != "/" and not (home + "/").startswith(here.rstrip("/") + "/")


def private_file(st: os.stat_result) -> bool:
    """``st`` (an fstat or lstat) is a regular file of ours that neither group nor others may
    use: what every private file aip reads or appends to must be (keys, spools)."""
    return stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077


class NotPrivateError(OSError):
    """A file aip reads as its own is not a regular file of ours that neither group nor
    others may use (``private_file``)."""


_READ_PRIVATE: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def read_private_file(path: str | os.PathLike[str], limit: int) -> tuple[bytes, os.stat_result]:
    """Up to ``limit`` + 1 bytes of ``path`` (one more than ``limit`` tells the caller it is
    longer) and the fstat it was checked by. Opened without following a symlink or waiting on
    a FIFO; NotPrivateError unless ``private_file``; OSError as the open or read raises it.
    Every private file aip reads (keys, the node cache, pairing files) is read this way; each
    caller says in its own words what is wrong."""
    fd = os.open(path, _READ_PRIVATE)
    try:
        st = os.fstat(fd)
        if not private_file(st):
            raise NotPrivateError(f"{os.fspath(path)}: not a private file of ours")
        return os.read(fd, limit + 1), st
    finally:
        os.close(fd)


def dir_problem(path: Path) -> str | None:
    """Why ``path`` is not a private directory of ours, or None when it is (lstat: a symlink
    is refused, never followed)."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return f"{path} does not exist"
    if stat.S_ISLNK(st.st_mode):
        return f"{path} is a symlink"
    if not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a directory"
    if st.st_uid != os.getuid():
        return f"{path} is owned by uid {st.st_uid}, not {os.getuid()}"
    if (unclear := ambiguity(st.st_uid, str(path))) is not None:
        return unclear
    if st.st_mode & 0o077:
        return f"{path} has mode {stat.S_IMODE(st.st_mode):04o}, expected 0700"
    return None


def check_private_dir(path: Path) -> tuple[DirState, str]:
    """The proxy's check before connecting: OK, MISSING (no approver) or UNTRUSTED."""
    problem = dir_problem(path)
    if problem is None:
        return DirState.OK, ""
    if not os.path.lexists(path):
        return DirState.MISSING, problem
    return DirState.UNTRUSTED, problem


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (0700) if needed, then verify it; raise UnsafePathError otherwise.

    The parent of a runtime dir from ``$XDG_RUNTIME_DIR`` is checked too: it must be ours
    and 0700 as the XDG spec demands (don't trust the environment blindly)."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and path.parent == Path(xdg):
        problem = dir_problem(path.parent)
        if problem is not None:
            raise UnsafePathError(f"XDG_RUNTIME_DIR unusable: {problem}")
    try:
        path.mkdir(mode=0o700, parents=False)
    except FileExistsError:
        pass
    except FileNotFoundError:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.mkdir(mode=0o700, exist_ok=True)
    problem = dir_problem(path)
    if problem is not None:
        raise UnsafePathError(problem)
    return path


def socket_problem(path: Path) -> str | None:
    """Why the socket file itself is not trustworthy (wrong owner, not a socket)."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return f"{path} does not exist"
    if not stat.S_ISSOCK(st.st_mode):
        return f"{path} is not a socket"
    if st.st_uid != os.getuid():
        return f"{path} is owned by uid {st.st_uid}, not {os.getuid()}"
    return ambiguity(st.st_uid, str(path))
