"""DLP in the relay, over raw pipes: what the server receives in each ``on_request_match``
mode, records without a ``dlp`` block, and (in-process) what happens to a server line that is
over ``max_scan_size`` or cannot be scanned: never relayed, the waiting side answered."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from aip.proxy.relay import dlp_filter, downstream
from aip.proxy.relay.asks import Asks
from aip.proxy.relay.session import Session
from aip.proxy.stdio import Wire
from aip.shared.jsonrpc import Kind, Message, parse_line
from aip.shared.policy.decision import Context, Decision, Verdict
from aip.shared.policy.load import load_policy
from tests.support.proxyproc import RAW_SERVER, ProxyProcess, write_policy
from tests.support.sessionkit import LocalSession, available

TYPE_CHECKING = False
if TYPE_CHECKING:
    from aip.proxy.approval.api import ApprovalClient

Make = Callable[..., ProxyProcess]
KEY = "AKIA" + "IOSFODNN7" + "EXAMPLE"
MARK = "[REDACTED:aws-access-key]"


def _spec(dlp: str) -> str:
    body = "".join(f"  {line}\n" for line in dlp.strip().splitlines())
    return f"allowed_tools: [read_file, echo]\ndlp:\n{body}"


@pytest.mark.parametrize("mode", ["block", "redact", "warn"])
def test_what_the_server_receives_per_mode(make_proxy: Make, tmp_path: Path, mode: str) -> None:
    policy = write_policy(
        tmp_path, _spec(f"scan_requests: true\nbuiltin: true\non_request_match: {mode}"), mode
    )
    log = tmp_path / "server.log"
    p = make_proxy([*RAW_SERVER, "--log", str(log)], policy_path=policy)
    p.initialize()
    reply = p.call(1, "echo", {"text": f"k={KEY}", "n": 1})
    received = log.read_text()
    if mode == "block":
        assert reply["error"]["code"] == -32001
        assert reply["error"]["data"]["reason"] == "dlp"
        assert "aws-access-key" in reply["error"]["data"]["detail"]
        assert '"echo"' not in received
    elif mode == "redact":
        assert reply["result"]["content"][0]["text"] == json.dumps(
            {"n": 1, "text": f"k={MARK}"}, sort_keys=True
        )
        forwarded = orjson.loads(received.splitlines()[-1])
        assert forwarded["params"]["arguments"] == {"text": f"k={MARK}", "n": 1}
        assert KEY not in received
    else:
        assert f"k={KEY}" in received  # forwarded unchanged ...
        assert KEY not in json.dumps(reply)  # ... and its echo redacted on the way back
    record = next(r for r in p.decisions() if r.get("tool") == "echo")
    assert record["dlp"] == ["aws-access-key:1"]
    assert record["arguments"]["text"] == f"k={MARK}"
    assert KEY not in p.log()


def test_records_are_redacted_without_any_dlp_block(make_proxy: Make, tmp_path: Path) -> None:
    policy = write_policy(tmp_path, "allowed_tools: [read_file]", "nodlp")
    p = make_proxy(policy_path=policy)
    p.initialize()
    allowed = p.call(1, "read_file", {"path": "x", "token": KEY})
    denied = p.call(2, "drop_db", {"token": KEY})
    assert KEY in json.dumps(allowed)  # responses are not scanned without dlp
    assert denied["error"]["data"]["reason"] == "not_allowed"
    records = {r["tool"]: r for r in p.decisions() if r.get("tool")}
    assert records["read_file"]["arguments"] == {"path": "x", "token": MARK}
    assert records["drop_db"]["arguments"] == {"token": MARK}
    assert records["drop_db"]["dlp"] == ["aws-access-key:1"]
    assert KEY not in p.log()


# ---- in-process: lines the redactor refuses ----


@pytest.fixture
def make_session(tmp_path: Path) -> Iterator[Callable[[str], tuple[Session, LocalSession]]]:
    made: list[LocalSession] = []

    def make(max_scan_size: str) -> tuple[Session, LocalSession]:
        spec = _spec(f"builtin: true\nmax_scan_size: {max_scan_size}")
        policy = load_policy(write_policy(tmp_path, spec, f"refuse-{len(made)}"))
        dlp_filter.for_policy(policy)  # as the runner does, before any line
        local = LocalSession(policy, context=Context(cwd="/", always_protected=()))
        local.recorder.sink = Wire(local.records_fd, "records")
        made.append(local)
        return local.session, local

    yield make
    for local in made:
        local.close()


@pytest.fixture
def session(
    make_session: Callable[[str], tuple[Session, LocalSession]],
) -> tuple[Session, LocalSession]:
    return make_session("1KB")


def _forward(s: Session, pipes: LocalSession, request_id: int) -> None:
    line = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
            "params": {"name": "echo", "arguments": {}}}  # fmt: skip
    assert s.forward(parse_line(orjson.dumps(line)), "tools/call", "echo")
    assert available(pipes.server_r)


def test_oversize_response_is_answered_internal_error(
    session: tuple[Session, LocalSession],
) -> None:
    s, pipes = session
    _forward(s, pipes, 5)
    line = orjson.dumps({"jsonrpc": "2.0", "id": 5, "result": {"text": "y" * 2000}})
    downstream.relay_server_line(s, line)
    reply = orjson.loads(available(pipes.host_r))
    assert reply["id"] == 5
    assert reply["error"]["code"] == -32603
    assert reply["error"]["data"]["detail"] == "response over max_scan_size (1024 bytes)"
    assert reply["error"]["data"]["tool"] == "echo"


def test_unscannable_response_is_answered_internal_error(
    make_session: Callable[[str], tuple[Session, LocalSession]],
) -> None:
    s, pipes = make_session("1MB")
    _forward(s, pipes, 6)
    # Deeper than the relay accepts (orjson still parses it): refused before any scan.
    deep = b"[" * 990 + b'"' + KEY.encode() + b'"' + b"]" * 990
    downstream.relay_server_line(s, b'{"jsonrpc":"2.0","id":6,"result":{"v":' + deep + b"}}")
    out = available(pipes.host_r)
    assert KEY.encode() not in out
    reply = orjson.loads(out)
    assert reply["id"] == 6
    assert reply["error"]["data"]["reason"] == "internal_error"
    assert "nested deeper than 254 levels" in reply["error"]["data"]["detail"]


def test_oversize_server_request_is_answered_to_the_server(
    session: tuple[Session, LocalSession],
) -> None:
    s, pipes = session
    line = orjson.dumps(
        {
            "jsonrpc": "2.0",
            "id": 77,
            "method": "sampling/createMessage",
            "params": {"p": "z" * 2000},
        }
    )
    downstream.relay_server_line(s, line)
    assert available(pipes.host_r) == b""
    answer = orjson.loads(available(pipes.server_r))
    assert answer["id"] == 77
    assert answer["error"]["data"]["detail"] == "request over max_scan_size (1024 bytes)"
    assert not s.take_server_request(77)  # a late client answer would not be forwarded


def test_oversize_notification_is_dropped(session: tuple[Session, LocalSession]) -> None:
    s, pipes = session
    note = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"d": "z" * 2000}}
    downstream.relay_server_line(s, orjson.dumps(note))
    assert available(pipes.host_r) == b""
    assert available(pipes.server_r) == b""


# ---- the shipped example policy ----

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "policies" / "dlp-example.yaml"


def test_shipped_example_blocks_a_call_carrying_a_secret(make_proxy: Make, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    p = make_proxy([*RAW_SERVER, "--log", str(log)], policy_path=EXAMPLE)
    p.initialize()
    token = "itk_" + "a1B2" * 8
    blocked = p.call(1, "read_file", {"path": f"notes/{token}"})
    assert blocked["error"]["data"]["reason"] == "dlp"
    assert "internal-token" in blocked["error"]["data"]["detail"]
    fine = p.call(2, "read_file", {"path": "notes/today.txt"})
    assert "result" in fine
    assert token not in log.read_text()
    assert token not in p.log()


def test_shipped_example_redacts_responses() -> None:
    policy = load_policy(EXAMPLE)
    f = dlp_filter.DlpFilter(policy)
    assert f.responses is not None
    assert f.stderr is not None
    token = "itk_" + "Zz09" * 8
    line = orjson.dumps({"jsonrpc": "2.0", "id": 1, "result": {"content": [
        {"type": "text", "text": f"token={token} aws={KEY}"}]}}) + b"\n"  # fmt: skip
    r = f.responses.redact_line(line)
    assert r.line is not None
    text = orjson.loads(r.line)["result"]["content"][0]["text"]
    assert text == f"token=[REDACTED:internal-token] aws={MARK}"


def test_an_ask_whose_arguments_cannot_be_scanned_is_never_shown(
    session: tuple[Session, LocalSession],
) -> None:
    """Defence in depth: the wire cannot carry such nesting (orjson re-serializes <= 255
    levels), but a display payload the scanner gives up on must never be shown to a human."""
    s, pipes = session
    s.recorder.redact = dlp_filter.for_policy(s.policy).display_value  # as the runner does

    def no_client() -> ApprovalClient:
        raise AssertionError("an unscannable ask must not reach the approver")

    deep: Any = "x"
    for _ in range(1000):
        deep = [deep]
    obj = {"jsonrpc": "2.0", "id": 9, "method": "tools/call",
           "params": {"name": "write_file", "arguments": {"content": deep}}}  # fmt: skip
    msg = Message(obj, b"{}", Kind.REQUEST, "tools/call", 9)
    Asks(s, no_client).start(msg, Decision(Verdict.ASK, None), "write_file")
    reply = orjson.loads(available(pipes.host_r))
    assert reply["error"]["code"] == -32002
    assert reply["error"]["data"]["reason"] == "too_large_to_review"


def test_monitor_mode_still_blocks_a_secret_in_arguments(make_proxy: Make, tmp_path: Path) -> None:
    spec = "mode: monitor\n" + _spec("scan_requests: true\nbuiltin: true")
    log = tmp_path / "server.log"
    p = make_proxy(
        [*RAW_SERVER, "--log", str(log)], policy_path=write_policy(tmp_path, spec, "mon")
    )
    p.initialize()
    reply = p.call(1, "not_in_any_list", {"key": KEY})
    assert reply["error"]["data"]["reason"] == "dlp"
    assert KEY not in log.read_text()
    forwarded = p.call(2, "not_in_any_list", {"key": "fine"})  # monitor forwards the rest
    assert "result" in forwarded


def test_a_quoted_secret_is_found_through_its_escapes_and_control_characters_stay_escaped(
    session: tuple[Session, LocalSession],
) -> None:
    """Details and log lines quote client text with repr: U+200B inside a key becomes the
    text \\u200b. The display scan decodes such escapes for a second look, and what it then
    writes is escaped again (no raw ESC from the client reaches a terminal)."""
    s, _ = session
    dlp = dlp_filter.for_policy(s.policy)
    quoted = repr("x\x1b[2J " + KEY[:4] + "\u200b" + KEY[4:])
    shown, hits = dlp.display_scan(f"method {quoted} is not allowed")
    assert hits == ["aws-access-key:1"]
    assert shown == "method 'x\\x1b[2J [REDACTED:aws-access-key]' is not allowed"
    assert dlp.display_scan("C:\\x41 no secret \\u0041") == ("C:\\x41 no secret \\u0041", [])
