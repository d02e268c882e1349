"""Time-boxed fuzzing of the four parsers an attacker reaches (security.md §8.7 cases 94, 95):
the proxy's client-line handler, the policy loader, the protocol decoder and DLP.

Each target runs for $AIP_FUZZ_SECONDS (default 5 s; ``scripts/fuzz`` gives each 20 s).
Properties: no exception but the module's own typed reject, no input slower than 2 s, and for
the line handler: nothing forwarded but the canonical form of a checked, duplicate-free line
that the policy allows.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from aip.proxy import upstream
from aip.proxy.approval import UnavailableApprover
from aip.proxy.asking import Asks
from aip.proxy.decisions import Recorder
from aip.proxy.session import Session
from aip.proxy.stdio import Wire
from aip.shared import engine
from aip.shared import protocol as p
from aip.shared.dlp import DlpError, Redactor
from aip.shared.engine import Context, Verdict
from aip.shared.errors import PolicyError
from aip.shared.loader import load_policy_text
from aip.shared.names import normalize
from aip.shared.outcomes import Outcome
from aip.shared.policy import DlpConfig, DlpPattern
from aip.shared.ratelimit import RateLimiter
from aip.shared.regexes import compile_pattern
from tests.hardening.fuzzkit import FUZZ, run_for
from tests.hardening.relaykit import read_lines

POLICY = """
apiVersion: aip.io/v1alpha1
kind: AgentPolicy
metadata: {name: fuzz}
spec:
  allowed_tools: [read_file, echo]
  denied_tools: [delete_file]
  allowed_methods: [initialize, ping, tools/list, tools/call, notifications/initialized,
                    notifications/cancelled, resources/read]
  tool_rules:
    - tool: write_file
      action: ask
    - tool: run
      action: allow
      allow_args: {cmd: "ls( -l)?"}
      strict_args: true
    - tool: sql
      action: block
      allow_args: {q: "(?i).*drop.*"}
    - tool: sql
      action: allow
  protected_paths: [/etc/shadow]
"""

# ---- the JSON-RPC line handler ---------------------------------------------------------

METHODS = [
    "tools/call",
    "TOOLS/CALL",
    " tools/call ",
    "tools/call\u200b",
    "\uff54\uff4f\uff4f\uff4c\uff53/call",
    "tools/list",
    "initialize",
    "ping",
    "notifications/cancelled",
    "resources/read",
    "sampling/createMessage",
    "",
]
TOOLS = [
    "read_file",
    "READ_FILE",
    "read_file\u202e",
    "\uff52\uff45\uff41\uff44_file",
    "delete_file",
    "write_file",
    "run",
    "sql",
    "echo",
    "",
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.sampled_from(["/etc/shadow", "/etc/../etc/shadow", "~/x", "ls", "ls -l", "DROP t"]),
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def rpc_objects(draw: st.DrawFn) -> Any:
    obj: dict[str, Any] = {}
    if draw(st.booleans()):
        obj["jsonrpc"] = draw(st.sampled_from(["2.0", "1.0", 2]))
    if draw(st.integers(0, 4)):
        obj["id"] = draw(st.one_of(st.integers(-(2**60), 2**60), st.text(max_size=300), SCALARS))
    if draw(st.integers(0, 5)):
        obj["method"] = draw(st.sampled_from(METHODS) | st.text(max_size=12))
    if draw(st.integers(0, 4)):
        params: dict[str, Any] = {}
        if draw(st.integers(0, 4)):
            params["name"] = draw(st.sampled_from(TOOLS) | SCALARS)
        if draw(st.integers(0, 4)):
            params["arguments"] = draw(
                st.dictionaries(st.sampled_from(["cmd", "q", "path", "x", "CMD"]), JSON) | JSON
            )
        params.update(draw(st.dictionaries(st.sampled_from(["_meta", "uri", "requestId"]), JSON)))
        obj["params"] = params
    for key in draw(st.lists(st.sampled_from(["result", "error", "extra"]), max_size=2)):
        obj[key] = draw(JSON)
    return draw(st.sampled_from([obj, [obj], [], obj, obj]))


@st.composite
def client_lines(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.binary(max_size=300))
    text = json.dumps(draw(rpc_objects()), ensure_ascii=draw(st.booleans()))
    mutation = draw(st.integers(0, 8))
    if mutation == 0 and "{" in text:  # a duplicate key, the first or the last one wins?
        key = draw(st.sampled_from(["id", "method", "params", "name", "arguments", "cmd"]))
        value = json.dumps(draw(SCALARS))
        text = text.replace("{", f'{{"{key}": {value}, ', 1)
    elif mutation == 1 and text:
        cut = draw(st.integers(0, len(text)))
        text = text[:cut]
    elif mutation == 2:
        text = "\ufeff" + text
    raw = text.encode("utf-8", "surrogatepass")
    if mutation == 3 and raw:
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\x00", b"\r", b"\t"])) + raw[at:]
    return raw


def _has_duplicate_keys(line: bytes) -> bool:
    found = False

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal found
        if len({k for k, _ in pairs}) != len(pairs):
            found = True
        return dict(pairs)

    with contextlib.suppress(ValueError):
        json.loads(line, object_pairs_hook=hook)
    return found


class LineHarness:
    def __init__(self, tmp: str) -> None:
        self.host_r, host_w = os.pipe()
        self.server_r, server_w = os.pipe()
        self.records = os.open(os.path.join(tmp, "records"), os.O_WRONLY | os.O_CREAT, 0o600)
        self.policy = load_policy_text(POLICY)
        self.session = Session(
            policy=self.policy,
            limiter=RateLimiter(),
            context=Context(cwd="/"),
            recorder=Recorder(
                session=os.urandom(8).hex(),
                server="srv",
                policy_name="fuzz",
                policy_sha256="0" * 64,
                mode="enforce",
                agent_id="fuzz",
                fd=self.records,
            ),
            host=Wire(host_w, "host"),
            server=Wire(server_w, "server"),
            agent_id_fixed=True,
        )
        self.session.asks = Asks(self.session, UnavailableApprover)
        self.fds = [self.host_r, host_w, self.server_r, server_w, self.records]
        self.host_buf = bytearray()
        self.server_buf = bytearray()

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)


@pytest.fixture
def lines_harness(tmp_path: Any) -> Iterator[LineHarness]:
    h = LineHarness(str(tmp_path))
    yield h
    h.close()


def test_fuzz_client_line_handler(lines_harness: LineHarness) -> None:
    h = lines_harness

    @FUZZ
    @given(client_lines())
    def one(line: bytes) -> None:
        os.ftruncate(h.records, 0)
        upstream.handle_line(h.session, line + b"\n")  # must not raise: it answers instead
        for out in read_lines(h.host_r, h.host_buf):
            reply = orjson.loads(out)
            assert reply.get("jsonrpc") == "2.0", reply
        forwarded = read_lines(h.server_r, h.server_buf)
        assert len(forwarded) <= 1
        for out in forwarded:
            # The canonical form of the checked object, never the raw line ...
            assert out == orjson.dumps(orjson.loads(line)) + b"\n", (line, out)
            assert not _has_duplicate_keys(line), line
            msg = orjson.loads(out)
            # ... and a tools/call only when the policy allows it (no approver: no asks).
            if normalize(msg["method"]) == "tools/call":
                d = engine.decide(h.policy, msg, RateLimiter(), Context(cwd="/"))
                assert d.verdict is Verdict.FORWARD, (msg, d)
            take = h.session.take_pending(msg.get("id"))  # so ids can be reused
            assert take is not None or "id" not in msg

    run_for(one)


# ---- the policy loader -------------------------------------------------------------------

KEYS = [
    "apiVersion",
    "kind",
    "metadata",
    "name",
    "spec",
    "mode",
    "allowed_tools",
    "denied_tools",
    "tool_rules",
    "tool",
    "action",
    "allow_args",
    "strict_args",
    "rate_limit",
    "strict_args_default",
    "allowed_methods",
    "denied_methods",
    "protected_paths",
    "dlp",
    "patterns",
    "regex",
    "builtin",
    "enabled",
    "on_request_match",
    "max_scan_size",
    "signature",
]
YAML_SCALARS = st.one_of(
    st.sampled_from(
        [
            "aip.io/v1alpha1",
            "aip.io/v1alpha2",
            "AgentPolicy",
            "enforce",
            "monitor",
            "allow",
            "ask",
            "block",
            "redact",
            "5/minute",
            "0/second",
            "(a+)+$",
            "(?!x)",
            "^/tmp/.*$",
            "[",
            "no",
            "*",
            "~/x",
            "1 MiB",
        ]
    ),
    st.booleans(),
    st.integers(-5, 10**6),
    st.none(),
    st.text(max_size=10),
)
YAML_TREE = st.recursive(
    YAML_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=16,
)


@st.composite
def policy_texts(draw: st.DrawFn) -> str:
    spec = draw(st.dictionaries(st.sampled_from(KEYS), YAML_TREE, max_size=6))
    doc = {
        "apiVersion": draw(st.sampled_from(["aip.io/v1alpha1", "aip.io/v1alpha2", "x"])),
        "kind": "AgentPolicy",
        "metadata": {"name": draw(st.sampled_from(["p", "", "no"]) | st.text(max_size=5))},
        "spec": spec,
    }
    text = yaml.safe_dump(doc, allow_unicode=draw(st.booleans()))
    mutation = draw(st.integers(0, 4))
    if mutation == 0 and text:
        at = draw(st.integers(0, len(text)))
        text = (
            text[:at]
            + draw(st.sampled_from(["\n  ", ": ", "- ", "&a ", "*a", "!!python/", "\t", "{", "'"]))
            + text[at:]
        )
    elif mutation == 1 and text:
        at = draw(st.integers(0, len(text)))
        text = text[:at]
    return text


def test_fuzz_policy_loader() -> None:
    message = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "run", "arguments": {"cmd": "ls", "path": "/etc/shadow"}},
    }

    @FUZZ
    @given(policy_texts())
    def one(text: str) -> None:
        try:
            policy = load_policy_text(text)
        except PolicyError:
            return
        # A policy that loads is whole: the engine can decide with it.
        assert policy.name
        engine.decide(policy, message, RateLimiter(), Context(cwd="/"))

    run_for(one)


# ---- the protocol decoder ----------------------------------------------------------------

PROTO_KEYS = [
    "v",
    "type",
    "session",
    "pid",
    "agent_id",
    "server",
    "policy",
    "name",
    "sha256",
    "request_id",
    "nonce",
    "digest",
    "tool",
    "arguments",
    "rule",
    "size",
    "batch",
    "records",
    "timeout_s",
    "max_ask_bytes",
    "audit_path",
    "outcome",
    "human_decision",
    "approved",
    "response_time_ms",
    "dialog_shown_at",
    "queue_wait_ms",
    "rseqs",
    "code",
    "about",
    "ref",
    "detail",
]
PROTO_SCALARS = st.one_of(
    st.sampled_from([t.value for t in p.MsgType])
    | st.sampled_from([o.value for o in Outcome])
    | st.sampled_from([c.value for c in p.ErrorCode]),
    st.just(p.PROTOCOL_VERSION),
    st.just("0123456789abcdef"),
    st.just("a" * 64),
    st.just("b" * 32),
    SCALARS,
)
PROTO_TREE = st.recursive(
    PROTO_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(PROTO_KEYS), inner, max_size=4)
    ),
    max_leaves=20,
)


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 5)) == 0:
        return draw(st.binary(max_size=200))
    obj = draw(st.dictionaries(st.sampled_from(PROTO_KEYS), PROTO_TREE, max_size=10))
    obj.setdefault("v", p.PROTOCOL_VERSION)
    obj.setdefault("type", draw(st.sampled_from([t.value for t in p.MsgType])))
    return json.dumps(obj).encode()  # json, not orjson: integers beyond 64 bits too


def test_fuzz_protocol_decoder() -> None:
    @FUZZ
    @given(frames())
    def one(frame: bytes) -> None:
        for decode in (p.decode_to_approver, p.decode_to_proxy):
            try:
                msg = decode(frame)
            except p.ProtocolError:
                continue
            assert decode(p.encode(msg)) == msg  # what decodes, round-trips

    run_for(one)


# ---- DLP ----------------------------------------------------------------------------------

SECRETS = [
    "AKIA" + "IOSFODNN7EXAMPLF",
    "ghp_" + "aB3dE5gH7jK9mN1pQ2rS4tU6vW8xY0zA1234",
    "xoxb-1234567890-1234567890-abcdefghijklmnopqrstuvwx",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0Z3VS5JJcds3xfn\n",
    "4111 1111 1111 1111",
    "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "SECRET_ABC",
    "AKIA",
    "\u200b",
    "\\u0041KIA",
    "[REDACTED:",
]
# Pieces are joined with " | ": a key glued to other letters is no match by design (the
# gitleaks-style patterns want a word boundary), so only separated secrets must disappear.
# (A card number after a lone digit, "2 4111 ...", is a known miss: test_findings.py.)
SECRET_TEXT = st.lists(st.sampled_from(SECRETS) | st.text(max_size=10), max_size=6).map(" | ".join)


def _redactors() -> list[Redactor]:
    pats = [("secret", r"\bSECRET_[A-Z]{3}\b"), ("caps", r"[A-Z]{6,}")]
    cfg = DlpConfig(
        enabled=True,
        patterns=tuple(DlpPattern(n, q, compile_pattern(q)) for n, q in pats),
        builtin=True,
        detect_encoding=True,
        max_scan_size=64 * 1024,
    )
    return [Redactor.builtin_only(), Redactor.from_config(cfg)]


@st.composite
def server_lines(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 6)) == 0:
        return draw(st.binary(max_size=200))
    content = draw(
        st.lists(
            st.fixed_dictionaries({"type": st.just("text"), "text": SECRET_TEXT})
            | st.fixed_dictionaries({"type": st.just("image"), "data": SECRET_TEXT}),
            max_size=4,
        )
    )
    shape = draw(st.integers(0, 3))
    msg: dict[str, Any]
    if shape == 0:
        msg = {"jsonrpc": "2.0", "id": 1, "result": {"content": content}}
    elif shape == 1:
        msg = {"jsonrpc": "2.0", "id": 2, "error": {"code": -1, "message": draw(SECRET_TEXT)}}
    elif shape == 2:
        msg = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"data": content}}
    else:
        msg = {"jsonrpc": "2.0", "id": 3, "result": draw(JSON)}
    raw = json.dumps(msg, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    return raw + draw(st.sampled_from([b"\n", b""]))


def test_fuzz_dlp_server_lines() -> None:
    redactors = _redactors()

    @FUZZ
    @given(st.sampled_from(redactors), server_lines())
    def one(red: Redactor, raw: bytes) -> None:
        try:
            result = red.redact_line(raw)
        except DlpError:
            return  # the caller does not forward it
        if result.line is None:
            assert result.oversize
            return
        if result.line is raw:
            return  # clean: relayed as the same bytes
        redacted = orjson.loads(result.line)
        assert result.counts
        for secret in SECRETS[:7]:
            assert secret not in json.dumps(redacted, ensure_ascii=False)
        # Idempotent: what we forward has nothing left to flag.
        again = red.redact_line(result.line)
        assert again.line == result.line, (result.line, again.line)

    run_for(one)
