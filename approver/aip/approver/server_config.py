"""The approval server's settings (``aip-approver``'s command line, DESIGN §3, §10)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from aip.approver.queue import BUDGET_BURST, BUDGET_PER_MINUTE, MAX_PENDING, MAX_PENDING_SESSION
from aip.shared.protocol.messages import DEFAULT_TIMEOUT_S, MAX_ASK_BYTES, MAX_FRAME_BYTES

WATCHDOG_S: Final = 2.0  # how often the ipc socket's inode is checked (a stolen endpoint)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    endpoint: str
    timeout_s: float = DEFAULT_TIMEOUT_S
    audit_path: str = ""
    max_ask_bytes: int = MAX_ASK_BYTES
    max_frame_bytes: int = MAX_FRAME_BYTES
    max_pending_session: int = MAX_PENDING_SESSION
    max_pending: int = MAX_PENDING
    ask_per_minute: float = BUDGET_PER_MINUTE
    ask_burst: float = BUDGET_BURST
    watchdog_s: float = WATCHDOG_S
    remote_listen: str = ""  # tcp://HOST:PORT: the CURVE listener (DESIGN §10), else none
    # ipc:// path of the restricted extra socket for ssh -R (issue 14.2, extra_socket); ""
    # for none. aip-approver makes it beside the socket unless told otherwise.
    extra_endpoint: str = ""
