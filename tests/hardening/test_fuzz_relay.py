"""Time-boxed fuzzing of the proxy's client-line handler (security.md §8.7 case 94): bytes in,
a reject or a forward out; never an exception, never a forward of anything but the canonical
form of a checked, duplicate-free line that the policy allows. $AIP_FUZZ_SECONDS (default 5).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aip.proxy.approval.api import UnavailableApprover
from aip.proxy.relay import upstream
from aip.proxy.relay.asks import Asks
from aip.shared.jsontext import decode
from aip.shared.policy import engine
from aip.shared.policy.decision import Context, Verdict
from aip.shared.policy.load import load_policy_text
from aip.shared.policy.names import normalize
from aip.shared.policy.ratelimit import RateLimiter
from tests.hardening.fuzzkit import FUZZ, JSON, SCALARS, run_for
from tests.support.sessionkit import LocalSession, read_lines

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


@pytest.fixture
def lines_harness(tmp_path: Path) -> Iterator[LocalSession]:
    with LocalSession(load_policy_text(POLICY), records=tmp_path / "records") as h:
        h.session.asks = Asks(h.session, UnavailableApprover)
        yield h


def test_fuzz_client_line_handler(lines_harness: LocalSession) -> None:
    h = lines_harness

    @FUZZ
    @given(client_lines())
    def one(line: bytes) -> None:
        os.ftruncate(h.records_fd, 0)
        upstream.handle_line(h.session, line + b"\n")  # must not raise: it answers instead
        for out in read_lines(h.host_r, h.host_buf):
            reply = orjson.loads(out)
            assert reply.get("jsonrpc") == "2.0", reply
        forwarded = read_lines(h.server_r, h.server_buf)
        assert len(forwarded) <= 1
        for out in forwarded:
            # The line as the client wrote it, whose one reading was checked ...
            assert out == line.strip() + b"\n", (line, out)
            assert not _has_duplicate_keys(line), line
            msg = decode(out.strip())
            # ... and a tools/call only when the policy allows it (no approver: no asks).
            if normalize(msg["method"]) == "tools/call":
                d = engine.decide(h.session.state.policy, msg, RateLimiter(), Context(cwd="/"))
                assert d.verdict is Verdict.FORWARD, (msg, d)
            take = h.session.take_pending(msg.get("id"))  # so ids can be reused
            assert take is not None or "id" not in msg

    run_for(one)
