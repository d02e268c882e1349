"""Making the approval client: the one place that imports the ZeroMQ client, lazily.

pyzmq is loaded only by proxies that can ask (the relay's start-up stays light, see
``tests/proxy/test_startup_imports.py``); a hello or endpoint that cannot be used gives a
client that denies every ask.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from aip.proxy.approval.api import UnavailableApprover
from aip.proxy.audit.outbox import AuditOutbox
from aip.shared import logs
from aip.shared.errors import AipError, ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from aip.proxy.approval.api import ApprovalClient


def make_approval_client(
    endpoint: str | None,
    hello: dict[str, Any],
    on_audit_path: Callable[[str], None] | None = None,
    *,
    audit: AuditOutbox | None = None,
    on_late_allow: Callable[[str | int], None] | None = None,
) -> ApprovalClient:
    """The approval client for this proxy session (``hello``: session, pid, agent_id, server,
    policy {name, sha256}): a ZeroMQ client of the approver at ``endpoint`` (default: DESIGN
    §3). A hello or endpoint that cannot be used gives a client that denies every ask.
    ``on_audit_path`` gets the audit log path of each ``welcome`` (client thread); ``audit``
    is the session's outbox the client sends; ``on_late_allow(request_id)`` records an allow
    that came after the ask ended."""
    # Imported here: pyzmq is only loaded by proxies that can ask (and socket, ~6 ms, by
    # proxies that connect: after the agent's initialize).
    import socket

    from aip.proxy.approval.zmq_client import ZmqApprovalClient
    from aip.shared import paths
    from aip.shared.protocol.messages import Hello, PolicyRef

    try:
        message = Hello(
            session=hello["session"],
            pid=hello["pid"],
            agent_id=hello["agent_id"],
            server=hello["server"],
            policy=PolicyRef(**hello["policy"]),
            host=socket.gethostname()[:64],  # the name a dialog shows for a forwarded proxy
        )
        remote = _remote(endpoint or os.environ.get(paths.ENDPOINT_ENV))
        target = remote[0].endpoint if remote else endpoint or paths.default_endpoint()
        if remote is None:
            paths.socket_path(target)  # only ipc:// with an absolute path
    except (KeyError, TypeError, ValueError, AipError) as exc:
        logs.get(__name__).error("approval disabled, every ask is denied: %s", exc)
        return UnavailableApprover()
    return ZmqApprovalClient(
        target,
        message,
        on_audit_path=on_audit_path,
        audit=audit,
        on_late_allow=on_late_allow,
        remote=remote,
    )


def _remote(explicit: str | None) -> Any:
    """This host's pairing (DESIGN §10) when it applies: no endpoint was given (a paired host
    asks its desktop by default), or the one given is the paired ``tcp://`` endpoint. A
    ``tcp://`` endpoint without that pairing is refused: TCP without CURVE has no identity."""
    if explicit is not None and not explicit.startswith("tcp://"):
        return None
    found = load_remote()  # ConfigError when the pairing files are not private
    if explicit is not None and (found is None or found[0].endpoint != explicit):
        raise ConfigError(
            f"{explicit}: not the endpoint of this host's pairing (aipctl remote join)"
        )
    return found


def load_remote() -> Any:
    """This host's (pairing, key pair), or None when it was never paired. A pairing that
    exists but cannot be trusted (modes, owner, format) raises ConfigError. Files only: a
    host that was never paired loads no pyzmq (its approver is local: ipc_dealer)."""
    from aip.shared.remote.files import (
        CLIENT_KEY,
        PAIRING,
        load_keypair,
        load_pairing,
        remote_dir,
    )

    folder = remote_dir()
    if not (folder / PAIRING).exists():
        return None
    return load_pairing(folder / PAIRING), load_keypair(folder / CLIENT_KEY)
