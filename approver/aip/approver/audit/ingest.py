"""Proxy records into the log: checking them, and ingesting spools of proxies that are gone.

A proxy that could not hand over its records keeps them in its spool (aip.shared.audit.spool). A
live proxy re-sends them itself; the approver ingests the spools whose flock is free, in
order, at start and whenever asked. ``(session, rseq)`` dedup makes a re-send harmless.
Only lines that open with the key the session's hello gave (aip.shared.audit.spool_line) go
in; every other line is recorded as ``spool_rejected`` (file, line, reason, its SHA-256), and
a spool whose session never gave a key is set aside as ``<name>.rejected``.
"""

from __future__ import annotations

import hashlib
import logging
import operator
import os
import re
from itertools import repeat
from pathlib import Path
from typing import Any, Final

from aip.approver.audit.writer import AuditLog, AuditUnavailable
from aip.approver.session_keys import SessionKeys
from aip.shared import paths
from aip.shared.audit.record import Event, meta_record
from aip.shared.audit.spool import claim_orphans, read_orphan, release_orphan, spool_dir
from aip.shared.audit.spool_line import LineKey

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
MAX_REJECTED_RECORDS: Final = 100  # per spool file; the rest are counted in the last one
_SESSION = re.compile(r"[0-9a-f]{16}")


def proxy_record_problem(record: Any) -> str | None:
    """Why a record sent by a proxy cannot go into the log (None: it can)."""
    if not isinstance(record, dict):
        return "not an object"
    event = record.get("event")
    # A str first: ``in`` a frozenset raises TypeError for a list or an object, which failed
    # the whole message (never acked: re-sent forever) or ended the spool scans.
    if not isinstance(event, str) or event not in PROXY_EVENTS:
        return f"event {event!r} is not one a proxy may send"
    session, rseq = record.get("session"), record.get("rseq")
    if not isinstance(session, str) or not _SESSION.fullmatch(session):
        return "no valid session"
    if type(rseq) is not int or rseq < 0:
        return "no valid rseq"
    return None


def complete_record(record: dict[str, Any]) -> dict[str, Any]:
    """Fill the DESIGN §8 fields a producer left out (a record with a tool is a tools/call)."""
    out = dict(record)  # a copy: the caller's dict is never changed
    if record.get("event") not in _DECISION_EVENTS:
        return out
    out.setdefault("user", None)  # the writer fills in the user name
    if out.get("tool") is not None:
        out.setdefault("method", "tools/call")
    if not out.keys() >= _DEFAULT_KEYS:  # a proxy's own records have them all: no loop
        for key, value in _DEFAULTS:
            out.setdefault(key, value)
    return out


_DECISION_EVENTS: Final = frozenset({Event.DECISION.value, Event.DROPPED_NOTIFICATION.value})
_DEFAULTS: Final[tuple[tuple[str, Any], ...]] = (
    ("rseq", None),
    ("method", None),
    ("dlp", []),
    ("monitor", None),
    ("queue_wait_ms", None),
    ("policy", None),
    ("server", None),
    ("pid", None),
    ("rule", None),
    ("request_id", None),
    ("mode", "enforce"),
)
_DEFAULT_KEYS: Final = frozenset(key for key, _ in _DEFAULTS)


def accept_proxy_record(record: dict[str, Any], user: str | None = None) -> dict[str, Any]:
    """A proxy's record (``proxy_record_problem`` is None) as it goes into the log. ``user``
    is ours to say (DESIGN §8), not the proxy's: peers are checked to be our uid. Given here
    (the writer's name), the writer need not copy the record again to fill it in; None
    leaves it for the writer, which writes the same name."""
    out = complete_record(record)
    if "user" in out:
        out["user"] = user or None
    return out


def accept_batch(records: list[Any], user: str | None) -> tuple[list[Any], list[int]]:
    """``proxy_record_problem`` then ``accept_proxy_record`` for each record of an ``audit``
    message: (records to write, rseqs to ack). A refused record is logged, and acked all the
    same: it can never be written. The records are the caller's to give away (decoded for
    this call): each is completed in place, not copied (the same fields, in the same order,
    as the copy ``accept_proxy_record`` makes)."""
    whole = _accept_whole(records, user)
    if whole is not None:
        return whole
    good: list[dict[str, Any]] = []
    acks: list[int] = []
    matched: str | None = None  # the last session that matched _SESSION
    for record in records:
        if not isinstance(record, dict):
            log.warning("dropping a malformed audit record from a proxy: not an object")
            continue
        event, session, rseq = record.get("event"), record.get("session"), record.get("rseq")
        if type(rseq) is int:
            acks.append(rseq)
        if (
            isinstance(event, str)  # see proxy_record_problem
            and event in PROXY_EVENTS
            and isinstance(session, str)
            and (session == matched or _SESSION.fullmatch(session))
            and type(rseq) is int
            and rseq >= 0
        ):
            matched = session
            if event in _DECISION_EVENTS:
                record.setdefault("user", None)
                if record.get("tool") is not None:
                    record.setdefault("method", "tools/call")
                if not record.keys() >= _DEFAULT_KEYS:
                    for key, value in _DEFAULTS:
                        record.setdefault(key, value)
            if "user" in record:
                record["user"] = user or None
            good.append(record)
        else:
            problem = proxy_record_problem(record)
            log.warning("dropping a malformed audit record from a proxy: %s", problem)
    return good, acks


_FULL_KEYS: Final = _DEFAULT_KEYS | {"user"}


def _accept_whole(records: list[Any], user: str | None) -> tuple[list[Any], list[int]] | None:
    """``accept_batch`` of a message whose every record passes and already has every field
    ``complete_record`` would add (a proxy's own records: nearly every message), or None.
    Each check is one pass in C over the message (``map``), not Python code per record:
    issue 16 measured the approver's interpreter time per record as its main cost. Then only
    ``user`` is set, in its place: that is all the per-record path does to such records."""
    if not records:
        return None
    try:  # TypeError: a record that is not an object, or an event that cannot be hashed
        events = set(map(dict.get, records, repeat("event")))
        sessions: list[Any] = list(map(dict.get, records, repeat("session")))
        rseqs: list[Any] = list(map(dict.get, records, repeat("rseq")))
    except TypeError:
        return None
    session, count = sessions[0], len(records)
    if (
        not events <= PROXY_EVENTS
        or type(session) is not str
        or sessions.count(session) != count
        or not _SESSION.fullmatch(session)
        or list(map(type, rseqs)).count(int) != count
        or min(rseqs) < 0
        or not all(map(operator.ge, map(dict.keys, records), repeat(_FULL_KEYS)))
    ):
        return None
    name = user or None
    for record in records:
        record["user"] = name
    return records, rseqs


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


async def ingest_spool_dirs(
    audit: AuditLog, dirs: list[tuple[Path, bool]], keys: SessionKeys
) -> int:
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
        total += await ingest_orphan_spools(audit, keys, directory)
    keys.prune()
    return total


async def ingest_orphan_spools(
    audit: AuditLog, keys: SessionKeys, directory: Path | None = None
) -> int:
    """Write the authentic records of every orphaned spool; the number written. A spool is
    removed only once all its records are in the log; if the log fails midway it stays for
    next time."""
    total = 0
    for path, fd in claim_orphans(directory):
        done = False
        try:
            key = keys.key_for(path.stem)
            lines = read_orphan(fd)
            if key is None:
                await _reject_file(audit, path, lines)
                continue
            good = await _authentic(audit, path, bytes.fromhex(key), lines)
            for start in range(0, len(good), BATCH):
                written, _dups = audit.append_proxy_records(good[start : start + BATCH])
                total += written
            done = True
        except AuditUnavailable as exc:
            log.warning("spool %s not ingested: %s", path, exc)
            break
        finally:
            release_orphan(path, fd, ingested=done)
        keys.forget(path.stem)
    if total:
        log.info("ingested %d audit records from proxy spools", total)
    return total


async def _authentic(
    audit: AuditLog, path: Path, key: bytes, lines: list[bytes]
) -> list[dict[str, Any]]:
    """The records whose line opens with ``key`` and that a proxy may send; each other line
    gets a ``spool_rejected`` record (at most MAX_REJECTED_RECORDS per file)."""
    good, rejected = [], 0
    line_key = LineKey(key, path.stem)
    for number, line in enumerate(lines, 1):
        record, why = line_key.open(line)
        if record is not None:
            why = proxy_record_problem(record) or ""
        if record is not None and not why:
            good.append(accept_proxy_record(record, audit.user))
            continue
        rejected += 1
        log.warning("spool %s line %d rejected: %s", path, number, why)
        if rejected <= MAX_REJECTED_RECORDS:
            await audit.append(rejected_record(path, number, why, line))
    return good


async def _reject_file(audit: AuditLog, path: Path, lines: list[bytes]) -> None:
    """No key for this session: nothing in the file can be trusted. It is recorded once and
    renamed so later scans pass it by."""
    why = "no session key (the session never said hello to this approver)"
    log.warning("spool %s rejected: %s", path, why)
    await audit.append(rejected_record(path, 0, why, b"\n".join(lines)))
    os.rename(path, path.with_name(path.name + ".rejected"))


def rejected_record(path: Path, line: int, reason: str, data: bytes) -> dict[str, Any]:
    """``spool_rejected``: ``line`` 0 is the whole file, ``sha256`` of what was rejected."""
    return meta_record(
        Event.SPOOL_REJECTED,
        session=path.stem,
        file=str(path),
        line=line,
        reason=reason,
        sha256=hashlib.sha256(data).hexdigest(),
    )
