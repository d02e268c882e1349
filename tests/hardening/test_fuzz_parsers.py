"""Time-boxed fuzzing of the policy loader, the protocol decoder and DLP (security.md §8.7
case 95): only the module's own typed error, no input slower than 2 s, and what is accepted is
whole (a loaded policy decides; a decoded frame round-trips; a redacted line is clean JSON
that stays the same when redacted again). $AIP_FUZZ_SECONDS (default 5) per target.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import yaml
from hypothesis import given
from hypothesis import strategies as st

from aip.shared.dlp.redactor import Redactor
from aip.shared.dlp.scan import DlpError
from aip.shared.errors import PolicyError
from aip.shared.outcomes import Outcome
from aip.shared.policy import engine
from aip.shared.policy.decision import Context
from aip.shared.policy.load import load_policy_text
from aip.shared.policy.model import DlpConfig, DlpPattern
from aip.shared.policy.ratelimit import RateLimiter
from aip.shared.policy.regexes import compile_pattern
from aip.shared.protocol.codec import PROTOCOL_VERSION, ProtocolError, encode
from aip.shared.protocol.frames import decode_to_approver, decode_to_proxy
from aip.shared.protocol.messages import ErrorCode, MsgType
from tests.hardening.fuzzkit import FUZZ, JSON, SCALARS, run_for

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
    st.sampled_from([t.value for t in MsgType])
    | st.sampled_from([o.value for o in Outcome])
    | st.sampled_from([c.value for c in ErrorCode]),
    st.just(PROTOCOL_VERSION),
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
    obj.setdefault("v", PROTOCOL_VERSION)
    obj.setdefault("type", draw(st.sampled_from([t.value for t in MsgType])))
    return json.dumps(obj).encode()  # json, not orjson: integers beyond 64 bits too


def test_fuzz_protocol_decoder() -> None:
    @FUZZ
    @given(frames())
    def one(frame: bytes) -> None:
        for decode in (decode_to_approver, decode_to_proxy):
            try:
                msg = decode(frame)
            except ProtocolError:
                continue
            assert decode(encode(msg)) == msg  # what decodes, round-trips

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
# Pieces are joined with a space: a key glued to other letters is no match by design (the
# gitleaks-style patterns want a word boundary), so only separated secrets must disappear.
SECRET_TEXT = st.lists(st.sampled_from(SECRETS) | st.text(max_size=10), max_size=6).map(" ".join)


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
