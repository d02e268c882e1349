"""What a session forked from the server must share with the launcher it stands in for.

Two parts. The *process identity* (credentials, capabilities, no_new_privs, seccomp, LSM
label, namespaces, cgroup, root, login uid and session, oom_score_adj, the interpreter
binary) is what fork cannot change afterwards: the child re-reads its own after the fork and
refuses unless it equals the launcher's, so a session never runs with other (weaker or
stronger) privileges or in another container than the agent started. The *key* hashes that
identity with the code (interpreter version, flags, import path, the environment variables
Python reads at start-up, and the size and mtime of every source file of the proxy) and names
the socket: a launcher finds only a server that could serve it, and a server whose code
changed is never found again (it also notices and exits, aip.proxy.forkserver.server).

Light on purpose (runs in every launcher): os and sys only, no typing, no pathlib, no logging.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

KEY_VERSION: Final = "2"  # bump when the request or the key's contents change
NAMESPACES: Final = (
    "cgroup",
    "ipc",
    "mnt",
    "net",
    "pid",
    "pid_for_children",
    "time",
    "time_for_children",
    "user",
    "uts",
)
# /proc/self/status lines that fork keeps and a session cannot set itself.
STATUS_FIELDS: Final = (
    "Uid",
    "Gid",
    "Groups",
    "CapInh",
    "CapPrm",
    "CapEff",
    "CapBnd",
    "CapAmb",
    "NoNewPrivs",
    "Seccomp",
    "Seccomp_filters",
)
# Read at process or interpreter start into state a fork cannot redo: the dynamic loader's
# (LD_PRELOAD and the like: a library in the server would be in every session), glibc's,
# the interpreter's encodings, locale and paths.
_STARTUP_ENV_PREFIXES: Final = ("PYTHON", "LC_", "LD_", "MALLOC_")
_STARTUP_ENV: Final = frozenset({"LANG", "LANGUAGE", "GLIBC_TUNABLES"})
_PORTIONS: Final = ("proxy", "shared")  # the packages a proxy session runs


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"<{exc.__class__.__name__}>"


def _link(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError as exc:
        return f"<{exc.__class__.__name__}>"


def status_fields(status: str) -> dict[str, str]:
    """``/proc/<pid>/status`` as a mapping of its field names to their (stripped) values."""
    out = {}
    for line in status.splitlines():
        name, sep, value = line.partition(":")
        if sep:
            out[name] = value.strip()
    return out


def own_status() -> dict[str, str]:
    """This process's ``/proc/self/status`` fields."""
    return status_fields(_read("/proc/self/status"))


def capability_problem(status: dict[str, str], prefix: str = "") -> str | None:
    """Why a process whose status fields (named with ``prefix``) are ``status`` may hold
    capabilities, or None: any effective, permitted or ambient one, or a set not shown."""
    for name in ("CapEff", "CapPrm", "CapAmb"):
        value = status.get(f"{prefix}{name}", "")
        if not value or value.strip("0"):
            return f"it holds capabilities ({name} {value})"
    return None


def process_identity(
    proc: str = "/proc/self", status: dict[str, str] | None = None
) -> dict[str, str]:
    """The fork-proof attributes of a process (``proc``: its /proc folder)."""
    fields = status if status is not None else status_fields(_read(f"{proc}/status"))
    ident = {f"status.{name}": fields.get(name, "") for name in STATUS_FIELDS}
    for ns in NAMESPACES:
        ident[f"ns.{ns}"] = _link(f"{proc}/ns/{ns}")
    ident["cgroup"] = _read(f"{proc}/cgroup")
    ident["root"] = _link(f"{proc}/root")
    ident["exe"] = _link(f"{proc}/exe")
    for name in ("attr/current", "attr/apparmor/current", "loginuid", "sessionid", "oom_score_adj"):
        ident[name] = _read(f"{proc}/{name}").strip()
    return ident


def unconfinable_problem(ident: dict[str, str]) -> str | None:
    """Why a process may hold a confinement that /proc does not show, or None.

    A fork of the server runs with the server's confinement, not the launcher's; what /proc
    shows (credentials, seccomp mode and filter count, namespaces, cgroup, LSM label) is
    compared, but a Landlock domain shows nowhere and two seccomp filter sets of the same size
    look alike. Both need no_new_privs or CAP_SYS_ADMIN to be set up, so only processes with
    neither, and without seccomp or any effective, permitted or ambient capability (root is
    thus never served), are: for them nothing invisible can be in force (docs/security.md)."""
    if ident.get("status.NoNewPrivs") != "0":
        return "no_new_privs is set"
    if ident.get("status.Seccomp") != "0":
        return "a seccomp filter is in force"
    return capability_problem(ident, "status.")


def peer_limits(pid: int) -> tuple[list[tuple[int, int, int]], int]:
    """(rlimits, nice) of process ``pid`` from /proc: its real limits, never its claims.
    /proc/<pid>/limits lists the resources in RLIMIT order, one per line after a header."""
    import resource

    rlimits = []
    lines = _read(f"/proc/{pid}/limits").splitlines()[1:]
    for res, line in enumerate(lines[: getattr(resource, "RLIM_NLIMITS", 16)]):
        soft, hard = line[26:47].strip(), line[47:68].strip()
        rlimits.append((res, _limit(soft), _limit(hard)))
    stat = _read(f"/proc/{pid}/stat")
    nice = int(stat[stat.rindex(")") + 2 :].split()[16])  # field 19: after state, 17 more
    return rlimits, nice


def _limit(text: str) -> int:
    import resource

    return resource.RLIM_INFINITY if text == "unlimited" else int(text)


def peer_view(pid: int) -> dict[str, str]:
    """The part of another process's identity that the launcher checks on the server:
    namespaces, cgroup, root and binary (a server elsewhere is never used)."""
    return peer_part(process_identity(f"/proc/{pid}", status={}))


def peer_part(ident: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in ident.items() if k.startswith("ns.") or k in _PEER_FIELDS}


_PEER_FIELDS: Final = frozenset({"cgroup", "root", "exe"})


def import_path() -> list[str]:
    """``sys.path`` without the launching script's folder (or the current folder of ``-c`` and
    ``-m``): the server starts with ``-P`` from ``/`` and never has that entry."""
    if sys.flags.safe_path:
        return list(sys.path)
    return list(sys.path[1:])


def code_stamp(path: list[str] | None = None) -> str:
    """Size and mtime (ns) of every source file of the proxy and shared portions found on
    the import path, in a stable order: it changes when the installed code does."""
    parts = []
    for entry in import_path() if path is None else path:
        for portion in _PORTIONS:
            top = os.path.join(entry or ".", "aip", portion)
            if os.path.isdir(top):
                parts.append(top)
                _walk(top, parts)
    return "\n".join(parts)


def _walk(folder: str, out: list[str]) -> None:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        out.append(f"{folder} <unreadable>")
        return
    for entry in entries:
        if entry.name == "__pycache__":
            continue
        if entry.is_dir(follow_symlinks=False):
            _walk(entry.path, out)
        elif entry.name.endswith((".py", ".json")):
            try:
                st = entry.stat()
            except OSError:
                out.append(f"{entry.path} <gone>")
                continue
            out.append(f"{entry.path} {st.st_size} {st.st_mtime_ns}")


def startup_environment(environ: dict[str, str] | None = None) -> list[str]:
    """The variables the interpreter read when it started (encodings, locale, paths, hash
    seed, warnings): a session cannot take other values of them from its launcher."""
    env = os.environ if environ is None else environ
    return sorted(
        f"{k}={v}"
        for k, v in env.items()
        if k in _STARTUP_ENV or k.startswith(_STARTUP_ENV_PREFIXES)
    )


def key(ident: dict[str, str], stamp: str | None = None) -> str:
    """The hex digest naming the socket of a server that may serve this process."""
    flags = {k: getattr(sys.flags, k) for k in dir(sys.flags) if not k.startswith("_")}
    for name in (
        "safe_path",
        "n_fields",
        "n_sequence_fields",
        "n_unnamed_fields",
        "count",
        "index",
    ):
        flags.pop(name, None)
    text = "\0".join(
        [
            KEY_VERSION,
            sys.version,
            sys.executable,
            repr(sorted(flags.items())),
            repr(sys._xoptions),
            repr(import_path()),
            repr(startup_environment()),
            repr(sorted(ident.items())),
            code_stamp() if stamp is None else stamp,
        ]
    )
    return _sha256(text.encode("utf-8", "surrogateescape"))[:32]


def _sha256(data: bytes) -> str:
    # CPython's own SHA-256, as aip.shared.hashes picks it (that module would import hashlib
    # here: the launcher has not kept OpenSSL out, and stays light).
    try:
        from _sha2 import sha256  # type: ignore[import-not-found]  # 3.12+
    except ImportError:
        try:
            from _sha256 import sha256  # type: ignore[import-not-found]  # 3.11
        except ImportError:
            from hashlib import sha256
    return str(sha256(data).hexdigest())


def runtime_folder() -> str:
    """The aip runtime folder, as aip.shared.paths.runtime_dir chooses it (without pathlib:
    the launcher stays light; tests/proxy/test_forkserver checks that both agree)."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return os.path.join(xdg, "aip")
    session = f"/run/user/{os.getuid()}"
    if folder_problem(session) is None:
        return os.path.join(session, "aip")
    return f"/tmp/aip-{os.getuid()}"  # noqa: S108 - private 0700 dir, checked on use


def socket_path(digest: str) -> str:
    return os.path.join(runtime_folder(), f"fork-{digest[:24]}.sock")


def uid_ambiguous() -> bool:
    """Our uid is the overflow uid of a user namespace that does not map every uid: owners
    cannot be told apart (aip.shared.userns), so no fork server."""
    uid_map = _read("/proc/self/uid_map").split()
    if uid_map in (["0", "0", "4294967295"], []) or uid_map[0].startswith("<"):
        return False
    return _read("/proc/sys/kernel/overflowuid").strip() == str(os.getuid())


def folder_problem(path: str) -> str | None:
    """Why ``path`` is not a private folder of ours (lstat: never a symlink), or None."""
    import stat

    try:
        st = os.lstat(path)
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    if not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a directory"
    if st.st_uid != os.getuid():
        return f"{path} is owned by uid {st.st_uid}"
    if st.st_mode & 0o077:
        return f"{path} has mode {stat.S_IMODE(st.st_mode):04o}, expected 0700"
    return None
