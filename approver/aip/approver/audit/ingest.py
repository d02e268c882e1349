"""Proxy records into the log: checking them, and ingesting spools of proxies that are gone.

A proxy that could not hand over its records keeps them in its spool (aip.shared.audit.spool). A
live proxy re-sends them itself; the approver ingests the spools whose flock is free, in
order, at start and whenever asked. ``(session, rseq)`` dedup makes a re-send harmless.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Final

from aip.approver.audit.writer import AuditLog, AuditUnavailable
from aip.shared import paths
from aip.shared.audit.record import Event
from aip.shared.audit.spool import claim_orphans, read_orphan, release_orphan, spool_dir

log = logging.getLogger(__name__)

PROXY_EVENTS: Final = frozenset(
    {
        Event.DECISION,
        Event.NOT_FORWARDED,
        Event.DROPPED_NOTIFICATION,
        Event.POLICY_RELOAD,
        Event.REDACTION,
    }
)
BATCH: Final = 64
_SESSION = re.compile(r"[0-9a-f]{16}")


def proxy_record_problem(record: Any) -> str | None:
    """Why a record sent by a proxy cannot go into the log (None: it can)."""
    if not isinstance(record, dict):
        return "not an object"
    if record.get("event") not in PROXY_EVENTS:
        return f"event {record.get('event')!r} is not one a proxy may send"
    session, rseq = record.get("session"), record.get("rseq")
    if not isinstance(session, str) or not _SESSION.fullmatch(session):
        return "no valid session"
    if type(rseq) is not int or rseq < 0:
        return "no valid rseq"
    return None


def orphan_spool_dirs(audit_log: Path) -> list[tuple[Path, bool]]:
    """Where the approver writing ``audit_log`` looks for orphan spools, as (dir, must be
    private): beside its log, and where this user's proxies spool by default (the state dir,
    ``$AIP_AUDIT_LOG`` honoured as the proxy does). A proxy does not know an approver's custom
    ``--audit-log``, so without the second its exit spool would never be collected. The
    default dir is only read when it is a private dir of ours (it is shared by every proxy of
    the user; a symlink or foreign dir there is not ours to ingest)."""
    beside = spool_dir(audit_log)
    default = spool_dir()
    if os.path.abspath(default) == os.path.abspath(beside):
        return [(beside, False)]
    return [(beside, False), (default, True)]


async def ingest_spool_dirs(audit: AuditLog, dirs: list[tuple[Path, bool]]) -> int:
    """``ingest_orphan_spools`` for each dir in turn (see ``orphan_spool_dirs``)."""
    total = 0
    for directory, must_be_private in dirs:
        if must_be_private:
            problem = paths.dir_problem(directory)
            if problem is not None:
                if directory.exists() or directory.is_symlink():
                    log.warning("spool dir skipped: %s", problem)
                continue
        if not audit.available:
            break
        total += await ingest_orphan_spools(audit, directory)
    return total


async def ingest_orphan_spools(audit: AuditLog, directory: Path | None = None) -> int:
    """Write the records of every orphaned spool; the number written. A spool is removed only
    once all its records are in the log; if the log fails midway it stays for next time."""
    total = 0
    for path, fd in claim_orphans(directory):
        done = False
        try:
            records = read_orphan(fd)
            good = [r for r in records if proxy_record_problem(r) is None]
            if len(good) != len(records):
                log.warning(
                    "spool %s: %d malformed records skipped", path, len(records) - len(good)
                )
            for start in range(0, len(good), BATCH):
                written, _dups = await audit.append_proxy_records(good[start : start + BATCH])
                total += written
            done = True
        except AuditUnavailable as exc:
            log.warning("spool %s not ingested: %s", path, exc)
            break
        finally:
            release_orphan(path, fd, ingested=done)
    if total:
        log.info("ingested %d audit records from proxy spools", total)
    return total
