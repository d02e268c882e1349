"""Recording the approver's decisions: the seam the central audit log plugs into.

The server calls ``DecisionLog.record`` for every decision on an ask (before replying; an
allow is only sent once ``record(durable=True)`` returned) and ``ingest`` for the records
proxies send in ``audit`` messages. ``StderrLog`` writes each record as one JSON line on
stderr until the central audit writer replaces it.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Protocol, TextIO


class DecisionLog(Protocol):
    def available(self) -> bool:
        """False while records cannot be written: asks are then denied audit_unavailable."""
        ...

    async def record(self, record: dict[str, Any], *, durable: bool) -> None:
        """Append one record; raise on failure. ``durable``: on disk before returning."""
        ...

    def ingest(self, records: list[dict[str, Any]]) -> list[int]:
        """Append proxy records (skipping known (session, rseq) pairs); the rseqs to ack.
        Synchronous: called where the ``audit`` message is received (no task per message)."""
        ...


class StderrLog:
    """Interim sink: one JSON line per record on stderr, never stdout."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    def available(self) -> bool:
        return True

    async def record(self, record: dict[str, Any], *, durable: bool) -> None:
        self._write(record)

    def _write(self, record: dict[str, Any]) -> None:
        stream = self._stream if self._stream is not None else sys.stderr
        # ASCII only, like the audit file: bidi or control characters in an argument must
        # not reorder or hide anything on the terminal that shows this log.
        line = json.dumps(record, ensure_ascii=True, separators=(",", ":"))
        stream.write(line.replace("\x7f", "\\u007f") + "\n")
        stream.flush()

    def ingest(self, records: list[dict[str, Any]]) -> list[int]:
        for record in records:
            self._write(record)
        return [int(record["rseq"]) for record in records]
