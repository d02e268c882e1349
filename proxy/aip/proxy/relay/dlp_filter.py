"""DLP in the proxy (DESIGN §8): the redactors of one policy and the four places they act —
server lines, tool-call arguments (``scan_requests``), ask/audit payloads, the child's stderr.

The relay modules call in here at one spot each; the scanning itself is ``aip.shared.dlp.redactor``.
"""

from __future__ import annotations

import os
import re
import sys
import threading

from aip.proxy.audit.recorder import record_event
from aip.shared import logs, slotclass
from aip.shared.audit.record import Event, meta_record
from aip.shared.dlp.redactor import Redactor, summarize
from aip.shared.dlp.scan import DlpError
from aip.shared.dlp.stderr import StderrFilter
from aip.shared.jsonrpc import Kind, Message, RequestId, ServerLine, error_line
from aip.shared.jsontext import reserialize
from aip.shared.outcomes import Outcome
from aip.shared.own_pid import own_pid
from aip.shared.policy.model import OnRequestMatch, Policy
from aip.shared.slotclass import FrozenSlotted

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any, Final

    from aip.proxy.relay.session import Session

log = logs.get(__name__)

UNSCANNABLE: Final = "[REDACTED:unscannable]"  # an audit/ask value too deep to scan
STDERR_READ_BYTES: Final = 64 * 1024
_MEMO_KEY: Final = "aip.proxy.relay.dlp_filter"


class DlpFilter:
    """The redactors one policy needs, built once (compiling the built-ins takes ~10 ms).

    - ``responses``: server -> host lines, when ``dlp.enabled`` (policy patterns, then the
      built-ins if ``builtin``); also the request scanner when ``scan_requests``.
    - ``stderr``: the child's stderr, when ``filter_stderr`` (whatever ``enabled`` says).
    - ``display``: ask and audit payloads, always (policy patterns + built-ins + decoding).
    """

    def __init__(self, policy: Policy) -> None:
        cfg = policy.dlp
        self.on_request_match = cfg.on_request_match
        self.responses = Redactor.from_config(cfg) if cfg.enabled else None
        self.requests = self.responses if cfg.scan_requests else None
        self.stderr: Redactor | None = None
        if cfg.filter_stderr:
            self.stderr = self.responses or Redactor.from_config(cfg)
        self.display = Redactor.from_config(cfg, for_display=True)

    # ---- ask and audit payloads ----

    def display_scan(self, value: Any) -> tuple[Any, list[str]]:
        """``value`` as the approver and the audit log may see it, and the rules that fired.

        A string is also scanned with its ``\\xNN \\uNNNN \\UNNNNNNNN`` escapes decoded:
        texts we build quote client values with ``repr`` (a ``detail``, a log line), which
        spells an invisible character inside a key as an escape the shadow view cannot see.
        """
        try:
            escaped = isinstance(value, str) and "\\" in value
            if not escaped and self.display.clean_value(value):
                return value, []  # what the lines below give a clean value, without a Counter
            new, counts = self.display.redact_value(value)
            if escaped:
                view = _ESCAPE.sub(_unescape, value)
                if view != value:
                    red, more = self.display.redact_text(view)
                    if more:  # escaped again: a control character must not reach a terminal
                        new, counts = _reescape(red), counts + more
        except DlpError as exc:  # fail closed: nothing unscanned leaves the proxy
            log.warning("a payload could not be scanned for secrets (%s); replaced", exc)
            return UNSCANNABLE, []
        return new, summarize(counts)

    def display_value(self, value: Any) -> Any:
        return self.display_scan(value)[0]

    # ---- client -> server: tool-call arguments ----

    def scan_request(self, msg: Message) -> RequestScan | None:
        """Scan a ``tools/call``'s arguments (``scan_requests``); None when off or clean."""
        red = self.requests
        if red is None:
            return None
        params = msg.obj["params"]
        if "arguments" not in params:
            return None
        try:
            new, counts = red.scan_arguments(params["arguments"])
        except DlpError as exc:
            log.warning("tool-call arguments could not be scanned (%s); denied", exc)
            return RequestScan(msg, [], Outcome.INTERNAL_ERROR, "arguments could not be scanned")
        if not counts:
            return None
        hits = summarize(counts)
        log.warning("DLP: secret in the arguments of id=%r: %s", msg.id, ", ".join(hits))
        if self.on_request_match is OnRequestMatch.BLOCK:
            detail = "secret in arguments: " + ", ".join(sorted(counts))
            return RequestScan(msg, hits, Outcome.DLP, detail)
        if self.on_request_match is OnRequestMatch.REDACT:
            # What the policy checks, the human approves (digest) and the server gets is this
            # re-serialization; the caller decides on it instead of the original. Numbers and
            # strings the redaction left alone keep the client's own spelling.
            obj = {**msg.obj, "params": {**params, "arguments": new}}
            wire = reserialize(obj, msg.wire)
            return RequestScan(Message(obj, wire, msg.kind, msg.method, msg.id), hits)
        return RequestScan(msg, hits)  # warn: forwarded unchanged, recorded

    # ---- client -> server: answers to the server's requests (sampling, elicitation) ----

    def scan_answer(self, session: Session, msg: Message, method: str | None) -> Message | None:
        """The client's answer to a server request, as it may go to the server; None when it
        must not (``block``, or it cannot be scanned: the server gets an error instead).

        Scanned like tool-call arguments (``scan_requests``, ``on_request_match``): a sampled
        completion or an elicited form can carry a secret from the agent's context to the
        server. Each hit is recorded (``redaction``, direction ``to_server``).
        """
        red = self.requests
        if red is None:
            return msg
        try:
            new, counts = red.redact_message(msg.obj)
        except DlpError as exc:
            log.warning("a client answer could not be scanned (%s); not forwarded", exc)
            detail = "the client's answer could not be scanned"
            session.server.write(error_line(msg.id, Outcome.INTERNAL_ERROR, detail=detail))
            return None
        if not counts:
            return msg
        hits = summarize(counts)
        action = {OnRequestMatch.BLOCK: "blocked", OnRequestMatch.REDACT: "redacted"}.get(
            self.on_request_match, "warned"
        )
        log.warning("DLP: secret in the client's answer id=%r: %s (%s)", msg.id, hits, action)
        record_redaction(
            session,
            direction="to_server",
            message="answer",
            method=method or None,  # of the server's request this answers
            tool=None,
            request_id=msg.id,
            action=action,
            dlp=hits,
        )
        if self.on_request_match is OnRequestMatch.BLOCK:
            detail = "secret in the client's answer: " + ", ".join(sorted(counts))
            session.server.write(error_line(msg.id, Outcome.DLP, detail=detail))
            return None
        if self.on_request_match is OnRequestMatch.REDACT:
            return Message(new, reserialize(new, msg.wire), msg.kind, msg.method, msg.id)
        return msg

    # ---- server -> host ----

    def relay_line(
        self,
        session: Session,
        line: bytes,
        info: ServerLine,
        obj: Any,
        tool: str | None,
        method: str | None = None,
    ) -> bytes | None:
        """The bytes to relay for a server line (``line`` itself when clean), or None when it
        must not reach the host: an over-size or unscannable response is answered with an
        internal error instead, a server request with an error to the server, a
        notification dropped. ``obj`` is ``line`` decoded, or None; ``method`` (of the
        request a response answers) and ``tool`` name it in a ``redaction`` record."""
        red = self.responses
        if red is None:
            return line
        try:
            r = red.redact_line(line, obj)
        except DlpError as exc:
            log.warning("server %s could not be scanned (%s); not relayed", info.kind.value, exc)
            problem = f"{_NOUN[info.kind]} could not be scanned"
        else:
            if not r.oversize and r.line is not None:
                if r.counts:
                    what = ", ".join(summarize(r.counts))
                    log.info(
                        "DLP redacted %s in a server %s (id=%r)", what, info.kind.value, info.id
                    )
                    if info.kind is not Kind.RESPONSE and isinstance(r.message, dict):
                        method = r.message.get("method")  # the envelope is never redacted
                    record_redaction(
                        session,
                        direction="to_client",
                        message=info.kind.value,
                        method=method if isinstance(method, str) else None,
                        tool=tool,
                        request_id=info.id,
                        action="redacted",
                        dlp=summarize(r.counts),
                    )
                return r.line
            problem = f"{_NOUN[info.kind]} over max_scan_size ({red.max_scan_size} bytes)"
        _refuse(session, info, tool, problem)
        return None


class RequestScan(FrozenSlotted):
    """What request scanning found: ``msg`` is what to decide on and forward (redacted in
    ``redact`` mode); ``outcome`` set means deny with it; ``dlp`` goes in the record."""

    __slots__ = ("detail", "dlp", "msg", "outcome")
    msg: Message
    dlp: list[str]
    outcome: Outcome | None
    detail: str

    def __init__(
        self, msg: Message, dlp: list[str], outcome: Outcome | None = None, detail: str = ""
    ) -> None:
        slotclass.init(self, "msg", msg)
        slotclass.init(self, "dlp", dlp)
        slotclass.init(self, "outcome", outcome)
        slotclass.init(self, "detail", detail)


_ESCAPE: Final = re.compile(r"\\(?:x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8})")


def _reescape(text: str) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _unescape(m: re.Match[str]) -> str:
    code = int(m.group()[2:], 16)
    return m.group() if code > sys.maxunicode else chr(code)


_NOUN: Final = {Kind.RESPONSE: "response", Kind.REQUEST: "request", Kind.NOTIFICATION: "message"}


def _refuse(session: Session, info: ServerLine, tool: str | None, problem: str) -> None:
    if info.kind is Kind.RESPONSE and info.id is not None:
        session.record(Outcome.INTERNAL_ERROR, tool=tool, request_id=info.id, detail=problem)
        session.reply_error(info.id, Outcome.INTERNAL_ERROR, tool=tool, detail=problem)
    elif info.kind is Kind.REQUEST and info.id is not None:
        # The server waits for an answer the client will never see: give it one.
        session.take_server_request(info.id)
        session.server.write(error_line(info.id, Outcome.INTERNAL_ERROR, detail=problem))
    else:
        log.warning("dropped a server notification: %s", problem)


def record_redaction(
    session: Session,
    *,
    direction: str,
    message: str,
    method: str | None,
    tool: str | None,
    request_id: RequestId | None,
    action: str,
    dlp: list[str],
) -> None:
    """A ``redaction`` audit record: DLP acted on a message that no decision record covers
    (a server message, a client's answer). Rule names and counts only, never the match."""
    rec = session.recorder
    named = rec.redact({"method": method, "tool": tool, "request_id": request_id})
    if not isinstance(named, dict):  # cannot happen for flat values; fail closed anyway
        named = {"method": None, "tool": None, "request_id": None}
    record = meta_record(
        Event.REDACTION,
        session=rec.session,
        agent_id=rec.agent_id,
        server=rec.server,
        pid=own_pid(),
        policy={"name": rec.policy_name, "sha256": rec.policy_sha256},
        direction=direction,
        message=message,
        method=named["method"],
        tool=named["tool"],
        request_id=named["request_id"],
        action=action,
        dlp=dlp,
    )
    record_event(rec, record)


def for_policy(policy: Policy) -> DlpFilter:
    """The policy's ``DlpFilter``, built on first use and kept in ``policy.memo`` (the runner
    builds it before the relay threads start, so they only read it)."""
    found = policy.memo.get(_MEMO_KEY)
    if found is None:
        found = policy.memo[_MEMO_KEY] = DlpFilter(policy)
    assert isinstance(found, DlpFilter)
    return found


# ---- the child's stderr (filter_stderr) ----


def start_stderr_pump(source: IO[bytes], redactor: Redactor, out_fd: int = 2) -> threading.Thread:
    """Relay the child's stderr pipe to ``out_fd`` line by line, redacted; ends at EOF."""
    thread = threading.Thread(
        target=_pump_stderr,
        args=(source.fileno(), StderrFilter(redactor), out_fd),
        name="stderr-filter",
        daemon=True,
    )
    thread.start()
    return thread


def _pump_stderr(fd: int, f: StderrFilter, out_fd: int) -> None:
    writable = True
    while True:
        try:
            chunk = os.read(fd, STDERR_READ_BYTES)
        except OSError:
            break
        if not chunk:
            break
        try:
            data = f.feed(chunk)
        except Exception:  # fail closed: what cannot be scanned is not shown
            log.exception("stderr filter failed; %d bytes of server stderr dropped", len(chunk))
            continue
        if writable:
            writable = _write_all(out_fd, data)  # else keep draining: the child must not block
    try:
        rest = f.close()
    except Exception:
        log.exception("stderr filter failed on the last line; dropped")
        rest = b""
    if writable:
        _write_all(out_fd, rest)
    if f.counts:
        log.info("DLP redacted %s in the server's stderr", ", ".join(summarize(f.counts)))


def _write_all(fd: int, data: bytes) -> bool:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except OSError:
            return False
        view = view[n:]
    return True
