"""The restricted extra socket for SSH hosts (issue 14.2), like gpg-agent's extra socket, and
what every remote peer (this one and the CURVE listener) may not do.

``aip-approver`` binds ``approver-extra.sock`` beside its socket (``--extra-endpoint``).
The user forwards it to a remote host with ``ssh -R`` (docs/remote.md); proxies there
connect to the forwarded end. What arrives is checked like the local socket (the peer is
the ssh client, our uid) and then treated as remote:

- routes: stored as ``EXTRA_TAG + id``, so one session table serves every socket and a
  reply finds its way back (the CURVE listener's are ``remote.bridge.REMOTE_TAG + id``);
- origin: transport ``ssh``; the device is the host name the proxy *claims* in its hello
  (nothing on this side can verify it: whoever holds the ssh session decides what connects),
  shown as claimed in the dialog and recorded in every record of the session;
- allowed: hello, ask, cancel, audit, bye. ``status`` and ``grants`` are refused with
  error ``forbidden`` and a reason, and the refusal is audited once per connection
  (``remote_refused``), for both remote transports.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import Any, Final

from aip.approver.audit.decision_log import DecisionLog
from aip.approver.remote.origin import Origin
from aip.shared.audit.record import Event, meta_record
from aip.shared.protocol.messages import Error, ErrorCode, MsgType

log = logging.getLogger(__name__)

EXTRA_TAG: Final = b"\xffS"
EXTRA_NAME: Final = "approver-extra.sock"
SSH: Final = "ssh"
SSH_ORIGIN: Final = Origin(SSH, "", "", "")  # the device is filled in from the hello
DEVICE_MAX: Final = 64
_NOT_HOST: Final = re.compile(r"[^A-Za-z0-9_.-]")
ALLOWED: Final = "hello, ask, cancel, audit and bye"


def extra_route(route: bytes) -> bytes:
    return EXTRA_TAG + route


def split_extra(route: bytes) -> bytes | None:
    """The extra socket's routing id, or None for any other route."""
    return route[len(EXTRA_TAG) :] if route.startswith(EXTRA_TAG) else None


def with_claim(origin: Origin | None, host: str) -> Origin | None:
    """An SSH origin named by what the hello claims: host-name characters only, at most
    DEVICE_MAX (empty: ``unnamed``). Any other origin is left as authenticated."""
    if origin is None or origin.transport != SSH:
        return origin
    device = _NOT_HOST.sub("_", host)[:DEVICE_MAX] or "unnamed"
    return dataclasses.replace(origin, device=device)


def origin_label(origin: Origin | None) -> str:
    """How a dialog names where an ask comes from (characters the dialog shows unquoted);
    empty for the local socket."""
    if origin is None:
        return ""
    if origin.transport == SSH:
        return f"{origin.device} via ssh, name claimed by the proxy"
    return f"{origin.device} via {origin.transport}, key {origin.key_fingerprint}"


def forbidden(about: MsgType, ref: str, origin: Origin) -> Error:
    detail = (
        f"{about.value} is not served to remote peers ({origin.transport}); "
        f"they may only send {ALLOWED}"
    )
    return Error(code=ErrorCode.FORBIDDEN, about=about, ref=ref, detail=detail)


class Refusals:
    """Audits the first refusal of each connection (a loop of refused messages must not fill
    the log); every one is answered and logged."""

    MAX_ROUTES: Final = 4096

    def __init__(self, decisions: DecisionLog) -> None:
        self._log = decisions
        self._seen: set[bytes] = set()

    def first(self, route: bytes) -> bool:
        if route in self._seen or len(self._seen) >= self.MAX_ROUTES:
            return False
        self._seen.add(route)
        return True

    async def audit(self, error: Error, origin: Origin) -> None:
        record: dict[str, Any] = meta_record(
            Event.REMOTE_REFUSED,
            about=error.about.value if error.about else "",
            origin=origin.to_json(),
            detail=error.detail,
        )
        try:
            await self._log.record(record, durable=False)
        except Exception:  # a task boundary: the refusal stands, only its record is lost
            log.exception("could not record a refused remote message")
