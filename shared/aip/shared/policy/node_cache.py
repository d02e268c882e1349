"""Composed policies kept between proxy starts, so a start whose policy file has not changed
loads it without importing PyYAML (issue 16: ~16 ms of the ~95 ms of CPU a start spends before
its first answer; the YAML parse itself is ~1 ms more).

What is kept is only the composition: the node graph of ``aip.shared.policy.nodes``, keyed by
the SHA-256 of the file's bytes (with the cache format and the PyYAML install in the name). The
loader validates the graph exactly as after a parse: every check is still made, on every start.

Trust. Whoever can write this folder can make a proxy read, for a given policy file, another
graph than the file's. The folder is a private 0700 folder of ours inside the state dir (which
aip.shared.policy.always_protected hides from every sandboxed MCP server), each entry a private
0600 file of ours read without following links, and an entry is used only for a policy file
owned by our own uid: whoever could write the folder (our uid) could rewrite that file as well.
A root-owned (admin-managed) policy is always parsed afresh. Anything unexpected (no folder,
a foreign or malformed entry, a full disk) means a parse, never an error: the cache only
ever saves time. ``$AIP_POLICY_CACHE=off`` turns it off.
"""

from __future__ import annotations

import contextlib
import os

from aip.shared import paths
from aip.shared.policy import nodes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Final

ENV: Final = "AIP_POLICY_CACHE"
FOLDER_NAME: Final = "policy-cache"
FORMAT: Final = "n1"  # bump when nodes.encode changes
KEEP: Final = 16  # entries kept (the newest): a user's policies and their recent versions
MAX_ENTRY_BYTES: Final = 16 << 20  # a 1 MiB policy (file.MAX_POLICY_BYTES) composes to less


def usable(owner_uid: int) -> bool:
    """A policy file owned by ``owner_uid`` may be loaded from the cache."""
    return owner_uid == os.geteuid() and os.environ.get(ENV, "").lower() not in ("off", "0")


def folder() -> Path:
    return paths.state_dir() / FOLDER_NAME


def load(sha256: str) -> nodes.Node | None:
    """The graph composed from the policy bytes hashing to ``sha256``, if kept and sound."""
    where = folder()
    try:
        if paths.dir_problem(where) is not None:
            return None
        data, st = paths.read_private_file(where / _name(sha256), MAX_ENTRY_BYTES)
    except (OSError, ValueError):
        return None
    return nodes.decode(data) if len(data) == st.st_size <= MAX_ENTRY_BYTES else None


def store(sha256: str, root: nodes.Node) -> None:
    """Keep ``root`` for the next start (best effort, silent: see the module's doc)."""
    with contextlib.suppress(Exception):
        data = nodes.encode(root)
        if len(data) > MAX_ENTRY_BYTES:
            return
        from aip.shared.safe_write import write_new  # only when a policy was parsed

        where = paths.ensure_private_dir(paths.ensure_private_dir(paths.state_dir()) / FOLDER_NAME)
        name = _name(sha256)
        with contextlib.suppress(FileExistsError):  # another proxy kept it first
            write_new(where / name, data, 0o600, sync=False)
        _prune(where, name)


def _name(sha256: str) -> str:
    return f"{sha256}.{FORMAT}.{_yaml_stamp()}.json"


def _yaml_stamp() -> str:
    """Which PyYAML composed it (its install's modification time), without importing it: an
    upgrade may resolve a scalar differently, so its entries are not reused."""
    from importlib.machinery import PathFinder  # ~0.1 ms (the fork server preloads it)

    spec = PathFinder.find_spec("yaml")
    if spec is None or spec.origin is None:
        raise ValueError("PyYAML not found")
    return format(os.stat(spec.origin).st_mtime_ns, "x")


def _prune(where: Path, just_kept: str) -> None:
    """Keep ``just_kept`` and the ``KEEP - 1`` newest other entries (modification time: file
    times are coarse, several entries may share one)."""
    entries = []
    for entry in os.scandir(where):
        if (
            entry.name.endswith(".json")
            and entry.name != just_kept
            and entry.is_file(follow_symlinks=False)
        ):
            entries.append((entry.stat(follow_symlinks=False).st_mtime_ns, entry.path))
    for _, path in sorted(entries, reverse=True)[KEEP - 1 :]:
        with contextlib.suppress(OSError):
            os.unlink(path)
