"""One proxy session's settings: what ``aip-proxy``'s command line and environment chose
(aip.proxy.cli builds them, aip.proxy.runner serves with them)."""

from __future__ import annotations

from collections.abc import Callable

from aip.proxy.child import STDIN_CLOSE_GRACE_S, TERM_GRACE_S
from aip.proxy.relay.asks import PROGRESS_INTERVAL_S
from aip.proxy.reload import POLL_INTERVAL_S
from aip.proxy.sandbox.launch import DEFAULT as SANDBOX_DEFAULT
from aip.proxy.sandbox.launch import Mode as SandboxMode
from aip.shared import slotclass
from aip.shared.jsonrpc import MAX_LINE_BYTES, MAX_SERVER_LINE_BYTES
from aip.shared.slotclass import FrozenSlotted


class Settings(FrozenSlotted):
    """One session's settings, from the command line and the environment."""

    __slots__ = (
        "agent_id",
        "approver",
        "command",
        "extra_protected",
        "max_line_bytes",
        "max_server_line_bytes",
        "on_start",
        "progress_interval_s",
        "reload_interval_s",
        "sandbox",
        "server_name",
        "stdin_grace_s",
        "term_grace_s",
    )
    command: list[str]
    server_name: str
    approver: str | None
    agent_id: str | None
    max_line_bytes: int
    max_server_line_bytes: int
    stdin_grace_s: float
    term_grace_s: float
    progress_interval_s: float
    reload_interval_s: float  # policy file poll; 0: only SIGHUP reloads
    extra_protected: tuple[str, ...]
    sandbox: SandboxMode
    on_start: Callable[[Callable[[str], None]], None] | None  # given the stop function

    def __init__(
        self,
        command: list[str],
        server_name: str,
        approver: str | None = None,
        agent_id: str | None = None,
        max_line_bytes: int = MAX_LINE_BYTES,
        max_server_line_bytes: int = MAX_SERVER_LINE_BYTES,
        stdin_grace_s: float = STDIN_CLOSE_GRACE_S,
        term_grace_s: float = TERM_GRACE_S,
        progress_interval_s: float = PROGRESS_INTERVAL_S,
        reload_interval_s: float = POLL_INTERVAL_S,
        extra_protected: tuple[str, ...] = (),
        sandbox: SandboxMode = SANDBOX_DEFAULT,
        on_start: Callable[[Callable[[str], None]], None] | None = None,
    ) -> None:
        slotclass.init(self, "command", command)
        slotclass.init(self, "server_name", server_name)
        slotclass.init(self, "approver", approver)
        slotclass.init(self, "agent_id", agent_id)
        slotclass.init(self, "max_line_bytes", max_line_bytes)
        slotclass.init(self, "max_server_line_bytes", max_server_line_bytes)
        slotclass.init(self, "stdin_grace_s", stdin_grace_s)
        slotclass.init(self, "term_grace_s", term_grace_s)
        slotclass.init(self, "progress_interval_s", progress_interval_s)
        slotclass.init(self, "reload_interval_s", reload_interval_s)
        slotclass.init(self, "extra_protected", extra_protected)
        slotclass.init(self, "sandbox", sandbox)
        slotclass.init(self, "on_start", on_start)
