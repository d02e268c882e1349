"""Record each policy decision: one JSON line on stderr with the guide's audit fields.

``record_decision`` is the one place the proxy reports decisions; each record also goes to
the central audit log (spooled, then sent to the approver: aip.proxy.audit.outbox). Fields
follow DESIGN §8; values pass through ``redact`` first.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import orjson

from aip.proxy.audit.outbox import AuditOutbox
from aip.proxy.stdio import Wire
from aip.shared import logs
from aip.shared.audit.record import DecisionTemplate, Event, not_forwarded_record, record_fields
from aip.shared.audit.spool import Spool
from aip.shared.outcomes import Outcome
from aip.shared.own_pid import own_pid

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

log = logs.get(__name__)

_lock = threading.Lock()


def _no_redaction(value: Any) -> Any:
    return value


class Recorder:
    """Who is deciding: the fields every record of this proxy session shares.

    A plain slotted class, not ``@dataclass(slots=True)``: that compiles its methods from
    source at every start (~1.8 ms of the proxy's start-up, issue 16), and a Recorder is never
    compared, copied or printed. ``audit``: the session's records on their way to the central
    audit log; runner.py hands the same outbox to the approval client, which sends it. None:
    one of its own (tests, benches)."""

    __slots__ = (
        "_template",
        "agent_id",
        "fd",
        "mode",
        "outbox",
        "policy_name",
        "policy_sha256",
        "redact",
        "scan",
        "seq",
        "server",
        "session",
        "sink",
    )

    def __init__(
        self,
        session: str,
        server: str,
        policy_name: str,
        policy_sha256: str,
        mode: str,
        agent_id: str,
        fd: int = 2,
        redact: Callable[[Any], Any] = _no_redaction,  # DLP plugs in here
        # DLP, with the rules that fired (aip.proxy.relay.dlp_filter): used for records when set
        scan: Callable[[Any], tuple[Any, list[str]]] | None = None,
        sink: Wire | None = None,  # when set, records go through it (the relay batches them)
        seq: int = 0,
        audit: AuditOutbox | None = None,
    ) -> None:
        self.session, self.server, self.agent_id = session, server, agent_id
        self.policy_name, self.policy_sha256, self.mode = policy_name, policy_sha256, mode
        self.fd, self.redact, self.scan, self.sink, self.seq = fd, redact, scan, sink, seq
        self.outbox: AuditOutbox = audit if audit is not None else AuditOutbox(Spool(session))
        self._template: DecisionTemplate | None = None

    def template(self) -> DecisionTemplate:
        """The session's fields, serialized once (the allow path only adds each record's)."""
        if self._template is None:
            self._template = DecisionTemplate(
                session=self.session,
                server=self.server,
                pid=own_pid(),
                policy={"name": self.policy_name, "sha256": self.policy_sha256},
                mode=self.mode,
            )
        return self._template

    def use_policy(self, name: str, sha256: str, mode: str) -> None:
        """A reloaded policy: later records name it (the template is rebuilt on next use)."""
        self.policy_name, self.policy_sha256, self.mode = name, sha256, mode
        self._template = None


def record_decision(
    rec: Recorder,
    outcome: Outcome,
    *,
    tool: str | None = None,
    arguments: Any = None,
    request_id: str | int | None = None,
    rule: str | None = None,
    detail: str | None = None,
    monitor_would: str | None = None,
    event: str = "decision",
    extra: dict[str, Any] | None = None,
) -> None:
    """Write one decision record. ``monitor_would`` set: the call was forwarded in monitor
    mode and the record says what enforce mode would have done."""
    # DLP on every field that carries client or server text (issue 11): the arguments, the
    # tool name and request id in one scan, the detail (which quotes client text) on its own.
    pack, hits = _shown(rec, {"arguments": arguments, "tool": tool, "request_id": request_id})
    if detail:
        detail, detail_hits = _shown(rec, detail)
        hits = [*(hits or ()), *(detail_hits or ())]
    answered = lost = False
    human = wait_ms = None
    if extra:  # from the approval client (AskResult.info) and the request's DLP scan
        answered = bool(extra.get("answered_by_approver"))
        lost = bool(extra.get("sent_to_approver"))
        hits = extra.get("dlp") or hits  # the request scan's own list wins
        wait_ms = extra.get("queue_wait_ms")
        shown_to_human = extra.get("human_decision")  # the approval client's as_dict
        if shown_to_human:  # an ask's record: the approval client (and the protocol) is loaded
            from aip.shared.protocol.messages import HumanDecision

            human = HumanDecision(**shown_to_human)
    template = rec.template()
    record = record_fields(
        outcome,
        agent_id=rec.agent_id,
        tool=pack["tool"],
        arguments=pack["arguments"],
        request_id=pack["request_id"],
        rule=rule,
        dlp=hits,
        human=human,
        queue_wait_ms=wait_ms,
        monitor_would=monitor_would,
        detail=detail,
        event=Event.DECISION if event == "decision" else Event(event),
    )
    with _lock:
        if not answered:
            # Only records the approver gets take an rseq: it tracks each session's rseqs as
            # a contiguous run, and a gap would hold every later rseq in its memory for good.
            rec.seq += 1
            record["rseq"] = rec.seq
        line = template.line(record)
        # First to the central audit log (spooled, then sent by the approval client, in
        # rseq order), whatever happens to the local stderr copy below.
        if not answered:
            rec.outbox.submit(rec.seq, line)
            if lost:
                rec.seq += 1
                why = "approver connection lost after the ask was sent: an allow it may have"
                why += " recorded was not acted on"
                nf = _not_forwarded_line(rec, request_id, why=why, tool=tool)
                rec.outbox.submit(rec.seq, nf)
        elif outcome is Outcome.SERVER_EXITED:
            # The approver already wrote this ask's one decision record (an allow); that we
            # then could not forward it gets a not_forwarded record (DESIGN §8).
            rec.seq += 1
            nf = _not_forwarded_line(rec, request_id, why="server exited", tool=tool)
            rec.outbox.submit(rec.seq, nf)
        _copy_out(rec, line)


def _shown(rec: Recorder, value: Any) -> tuple[Any, list[str] | None]:
    """``value`` redacted for the record, and the rules that fired. A pack of fields that
    cannot be scanned (arguments nested too deeply) keeps its short fields, scanned alone."""

    scan = rec.scan
    shown, hits = scan(value) if scan is not None else (rec.redact(value), None)
    if isinstance(value, dict) and not isinstance(shown, dict):
        rest_of = {k: v for k, v in value.items() if k != "arguments"}
        rest, hits = scan(rest_of) if scan is not None else (rec.redact(rest_of), None)
        if not isinstance(rest, dict):
            rest = dict.fromkeys(value, shown)  # fail closed: every field is the marker
        shown = {**rest, "arguments": shown}
    return shown, hits


def _copy_out(rec: Recorder, line: bytes) -> None:
    """The local copy of a record: the recorder's sink when it has one, else stderr."""
    if rec.sink is not None:
        rec.sink.write(line)
        return
    try:
        os.write(rec.fd, line)
    except OSError:
        log.warning("cannot write an audit record (stderr closed?)")


def record_event(rec: Recorder, record: dict[str, Any]) -> None:
    """A record that is not about one message (``policy_reload``): it takes the next rseq
    and goes the way decision records go (central log via the outbox, stderr copy)."""
    with _lock:
        rec.seq += 1
        line = orjson.dumps({**record, "rseq": rec.seq}, option=orjson.OPT_APPEND_NEWLINE)
        rec.outbox.submit(rec.seq, line)
        _copy_out(rec, line)


def record_not_forwarded(
    rec: Recorder, request_id: str | int | None, *, why: str, tool: str | None = None
) -> None:
    """An ask the approver allowed (and recorded) that we did not forward (DESIGN §8)."""
    with _lock:
        rec.seq += 1
        line = _not_forwarded_line(rec, request_id, why=why, tool=tool)
        rec.outbox.submit(rec.seq, line)
        _copy_out(rec, line)


def record_late_allow(rec: Recorder, request_id: str | int) -> None:
    """The approver's allow for an ask we had already ended came in (the approval client
    calls this): it is in the log as allowed, so say that it was not forwarded."""
    record_not_forwarded(rec, request_id, why="late decision: the ask had already ended")


def _not_forwarded_line(
    rec: Recorder, request_id: str | int | None, *, why: str, tool: str | None
) -> bytes:
    shown, _ = _shown(rec, {"tool": tool, "request_id": request_id})
    record = not_forwarded_record(
        session=rec.session,
        request_id=shown["request_id"],
        why=why,
        agent_id=rec.agent_id,
        tool=shown["tool"],
        server=rec.server,
        pid=own_pid(),
        rseq=rec.seq,
    )
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
