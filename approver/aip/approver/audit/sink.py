"""The approver's ``DecisionLog`` backed by the central audit log (aip.approver.audit.writer).

The server records each answered ask here (an allow durably, before it is sent) and hands
over the proxies' ``audit`` batches; spools left by proxies that are gone are ingested at
start, whenever the log becomes writable again, and every ``ingest_interval_s``, from beside
the log and from the proxies' default spool dir (aip.approver.audit.ingest.orphan_spool_dirs).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any, Final

from aip.approver.audit.ingest import (
    accept_batch,
    complete_record,
    ingest_spool_dirs,
    orphan_spool_dirs,
)
from aip.approver.audit.writer import AuditLog, AuditUnavailable
from aip.approver.give_way import give_way
from aip.approver.session_keys import SessionKeys, keys_dir
from aip.shared.audit.record import decision_record, not_forwarded_record
from aip.shared.outcomes import Outcome

log = logging.getLogger(__name__)

INGEST_INTERVAL_S: Final = 10.0  # spools of proxies that exited: a cheap directory scan


class AuditSink:
    def __init__(
        self,
        path: Path,
        *,
        spool_dir: Path | None = None,
        ingest_interval_s: float = INGEST_INTERVAL_S,
        **log_options: Any,
    ) -> None:
        self.log = AuditLog(path, **log_options)
        # An explicit spool_dir (tests) is the only one scanned; otherwise beside the log and
        # the default dir, which differ when --audit-log is custom.
        self._spool_dirs = [(spool_dir, False)] if spool_dir else orphan_spool_dirs(path)
        self._keys = SessionKeys(keys_dir(path))  # the server's hellos fill the same dir
        self._ingest_interval_s = ingest_interval_s
        self._task: asyncio.Task[None] | None = None
        self._next = 0.0  # loop time of the next periodic spool scan

    async def __aenter__(self) -> AuditSink:
        await self.log.open()
        self._task = asyncio.create_task(self._ingest_loop(), name="audit-spools")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.log.close()

    # --- DecisionLog ----------------------------------------------------------------------

    def available(self) -> bool:
        return self.log.available

    async def record(self, record: dict[str, Any], *, durable: bool) -> None:
        """Append one of the approver's records. A durable append that fails leaves a record
        of what really happened (the allow is not sent) for when the log is back."""
        record = complete_record(record)
        before = self.log.seq
        try:
            await self.log.append(record, durable=durable)
        except AuditUnavailable:
            if durable:
                await self.log.append(self._fallback(record, written=self.log.seq > before))
            raise

    def ingest(self, records: list[dict[str, Any]]) -> list[int]:
        """Write a proxy's batch; the rseqs to ack. Raises AuditUnavailable: no ack, the proxy
        keeps the records. A malformed record is acked (it can never be written) and logged."""
        give_way()  # after the message's decode (aip.approver.give_way)
        good, acks = accept_batch(records, self.log.user)
        give_way()
        self.log.append_proxy_records(good)
        return acks

    # --- internals ------------------------------------------------------------------------

    @staticmethod
    def _fallback(record: dict[str, Any], *, written: bool) -> dict[str, Any]:
        session = str(record.get("session", ""))
        if written:  # the allow line was written but is not durable: it was never acted on
            return not_forwarded_record(
                session=session,
                request_id=record.get("request_id"),
                why="approval unavailable: audit_unavailable (allow record not durable)",
                agent_id=str(record.get("agent_id", "")),
                tool=record.get("tool"),
                server=record.get("server"),
                pid=record.get("pid"),
            )
        return decision_record(
            outcome=Outcome.AUDIT_UNAVAILABLE,
            session=session,
            agent_id=str(record.get("agent_id", "")),
            user=record.get("user"),
            server=record.get("server"),
            pid=record.get("pid"),
            tool=record.get("tool"),
            arguments=record.get("arguments"),
            method="tools/call",
            request_id=record.get("request_id"),
            policy=record.get("policy"),
            rule=record.get("rule"),
            queue_wait_ms=record.get("queue_wait_ms"),
        )

    async def _ingest_loop(self) -> None:
        was_available = False
        while True:
            now_available = self.log.available
            if now_available and (not was_available or self._due()):
                try:
                    await ingest_spool_dirs(self.log, self._spool_dirs, self._keys)
                except OSError as exc:
                    log.warning("could not ingest proxy spools: %s", exc)
                self._next = asyncio.get_running_loop().time() + self._ingest_interval_s
            was_available = now_available
            await asyncio.sleep(min(1.0, self._ingest_interval_s))

    def _due(self) -> bool:
        return asyncio.get_running_loop().time() >= self._next
