"""User namespaces (a rootless container, ``unshare --user``, bwrap): when a uid cannot be
told apart from a stranger's.

Inside a user namespace the kernel translates every uid it reports (``stat``'s owner,
SO_PEERCRED, hence libzmq's ``Peer-Address``) into the namespace; a uid the namespace does
not map shows as the *overflow uid* (``/proc/sys/kernel/overflowuid``, 65534). Our owner and
peer checks compare such uids with ``getuid()``, so a proxy that itself runs as the overflow
uid inside a namespace would take any unmapped owner, a stranger's socket folder, for its
own (measured with bwrap: a 0700 folder of an unmapped uid lists as owned by 65534). Such a
uid is therefore never "ours" unless the namespace maps every uid (the initial namespace,
where no overflow can happen). A proxy run as a mapped uid (rootless podman's container
root, ``--userns=keep-id``, ``unshare --map-root-user``) sees the folder, the socket and the
approver's peer uid as its own uid, exactly as outside (docs/remote.md).
"""

from __future__ import annotations

import functools
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

OVERFLOW_UID_FILE: Final = Path("/proc/sys/kernel/overflowuid")
UID_MAP_FILE: Final = Path("/proc/self/uid_map")
FULL_MAP: Final = ("0", "0", "4294967295")  # the initial namespace maps every uid to itself


@functools.cache
def _overflow_uid() -> int | None:
    """The overflow uid when we run in a namespace that does not map every uid, else None
    (the initial namespace, or no /proc: macOS). Read once: a process never changes its
    user namespace after start (we never call setns)."""
    try:
        lines = UID_MAP_FILE.read_text().split("\n")
        overflow = int(OVERFLOW_UID_FILE.read_text().strip())
    except (OSError, ValueError):
        return None
    ranges = [line.split() for line in lines if line.strip()]
    if ranges == [list(FULL_MAP)]:
        return None
    return overflow


def ambiguous_uid(uid: int) -> bool:
    """``uid`` is the overflow uid of the partial user namespace we run in: an owner or peer
    shown with it may be anyone outside the namespace's map, so it is never trusted."""
    overflow = _overflow_uid()
    return overflow is not None and uid == overflow


def ambiguity(uid: int, what: str) -> str | None:
    """Why ``what`` (owned by or coming from ``uid``) cannot be trusted, or None."""
    if not ambiguous_uid(uid):
        return None
    return (
        f"{what} shows uid {uid}, the overflow uid of this user namespace: an owner outside "
        "the namespace's uid map looks the same, so it cannot be told from ours (run the "
        "proxy as a mapped uid, e.g. the container's root under rootless podman)"
    )
