"""A remote host's ``pair`` request on the listener (issue 14.3): check its claim on an open
window, ask the human in a dialog (Deny is the default; the ``exec:`` program sees
``"kind": "pair"``), record the device on Allow, and answer exactly once.

The request's key must be the key CURVE authenticated for the connection: a joiner cannot
pair a key it does not hold. A claim that fits no window costs the open windows an attempt.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aip.approver.dialogs.base import Prompt
from aip.approver.dialogs.verdict import Answer, Verdict
from aip.approver.remote.trust import TrustStore
from aip.shared.protocol.codec import encode
from aip.shared.protocol.pairing import PairReply, PairRequest
from aip.shared.remote.code import fingerprint

log = logging.getLogger(__name__)

Confirm = Callable[[Prompt], Awaitable[Verdict]]


def pair_text(name: str, fp: str, host: str, address: str, days: int) -> str:
    shown_host = "".join(c if c.isascii() and c.isprintable() else "?" for c in host)[:64]
    return "\n".join(
        [
            f"Pair remote device: {name}",
            f"Key fingerprint: {fp}",
            "Compare it with the fingerprint `aipctl remote join` printed there.",
            f"The host calls itself: {shown_host or '-'} (address {address})",
            f"Its agents' asks will be labelled {name}. Expires in {days} days.",
            "Deny unless you started this pairing yourself.",
        ]
    )


class Pairer:
    def __init__(
        self,
        trust: TrustStore,
        confirm: Confirm | None,
        send: Callable[[bytes, bytes], None],
        timeout_s: float,
    ) -> None:
        self._trust = trust
        self._confirm = confirm
        self._send = send
        self._timeout_s = timeout_s
        self.busy: set[bytes] = set()  # routes with a pairing under way (one each)

    async def handle(self, route: bytes, key: str, address: str, request: PairRequest) -> None:
        self.busy.add(route)
        try:
            reply = await self._decide(key, address, request)
        except Exception:  # a task boundary: whatever broke, nobody is paired
            log.exception("pairing request failed")
            reply = PairReply(paired=False, reason="error")
        finally:
            self.busy.discard(route)
        self._send(route, encode(reply))

    async def _decide(self, key: str, address: str, request: PairRequest) -> PairReply:
        if request.key != key:
            log.warning("pair request for a key other than the connection's; refused")
            return PairReply(paired=False, reason="key_mismatch")
        window = await asyncio.to_thread(self._trust.claim, key, request.proof)
        if window is None:
            log.warning("pair request from %s fits no open window; refused", address)
            return PairReply(paired=False, reason="no_window")
        if self._confirm is None:
            return PairReply(paired=False, reason="no_display")
        fp = fingerprint(key.encode())
        text = pair_text(window.name, fp, request.host, address, window.days)
        prompt = Prompt(
            request_id=f"pair-{window.name}",
            agent_id=f"remote:{window.name}",
            server="",
            tool="remote pairing",
            arguments={"device": window.name, "key_fingerprint": fp, "address": address},
            text=text,
            rule="",
            seconds_left=int(self._timeout_s),
            queue_position=0,
            kind="pair",
        )
        try:
            async with asyncio.timeout(self._timeout_s):
                verdict = await self._confirm(prompt)
        except TimeoutError:
            return PairReply(paired=False, reason="timeout")
        if verdict.answer is not Answer.ALLOW:
            reason = "denied" if verdict.answer is Answer.DENY else "dialog_error"
            log.info("pairing of %s (%s): %s", window.name, fp, reason)
            return PairReply(paired=False, reason=reason)
        device = await asyncio.to_thread(self._trust.confirm, window.name, key, window.days)
        log.info("paired remote device %s (%s) until %s", device.name, fp, device.expires)
        return PairReply(paired=True, reason="paired", name=device.name, expires=device.expires)
