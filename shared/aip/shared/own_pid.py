"""The pid a process names as its own: in the approver ``hello``, audit records and log lines.

A proxy session forked by the per-user fork server (aip.proxy.forkserver) does the work of the
``aip-proxy`` process its agent started, the *launcher*: that is the process a user sees in
``ps`` as the agent's child, the one they would signal, and what ``aipctl approver status``
should name. So such a session reports the launcher's pid, exactly as an in-process start
reports its own. The launcher's pid comes from the kernel (SO_PEERCRED, pinned by
SO_PEERPIDFD: aip.proxy.forkserver.server), never from what the launcher sends.

The pid is only a name: nothing signals, compares or trusts it (the approver gates on the
socket's peer uid and keeps the kernel's peer pid apart, aip.approver.sessions). Code that
acts on a process (kill, /proc/self) uses ``os.getpid()``. The stand-in holds only in the
process that set it: a child forked from the session reports its own pid.
"""

from __future__ import annotations

import os

_stand_in: tuple[int, int] | None = None  # (the process that set it, the pid it reports)


def own_pid() -> int:
    """The pid this process reports: its own, or the launcher's in a forked session."""
    real = os.getpid()
    shown = _stand_in
    return shown[1] if shown is not None and shown[0] == real else real


def stand_in_for(pid: int) -> None:
    """From now on this process reports ``pid`` (a fork-server session: its launcher's)."""
    global _stand_in
    _stand_in = (os.getpid(), pid)
