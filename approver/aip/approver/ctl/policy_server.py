"""``aipctl policy check FILE --server CMD``: what a policy would block of what a server offers.

The server is started (no proxy in between), asked ``initialize`` and every page of
``tools/list``, and stopped. Its capabilities are mapped to the methods each one uses, and
every method and tool is put through the policy's own checks (DESIGN §4.6, §4.7): the user
sees, before wiring a client, that the default method list blocks ``resources/*``,
``prompts/*`` and ``logging/setLevel``, and which advertised tools the agent will never see.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from aip.shared.policy.engine import filter_tools_list, method_allowed
from aip.shared.policy.model import DEFAULT_METHODS, Action, Policy
from aip.shared.policy.names import normalize

PROTOCOL: Final = "2025-11-25"
MAX_PAGES: Final = 50
MAX_LINE: Final = 16 << 20
# The methods each advertised capability brings (the MCP specification's lists).
CAPABILITY_METHODS: Final = {
    "tools": ("tools/list", "tools/call"),
    "resources": (
        "resources/list",
        "resources/templates/list",
        "resources/read",
        "resources/subscribe",
        "resources/unsubscribe",
    ),
    "prompts": ("prompts/list", "prompts/get"),
    "logging": ("logging/setLevel",),
    "completions": ("completion/complete",),
}


class ProbeError(RuntimeError):
    """The server could not be asked (did not start, did not answer in time, spoke nonsense)."""


@dataclass
class Offer:
    server: str
    protocol: str
    capabilities: dict[str, Any]
    tools: list[dict[str, Any]] = field(default_factory=list)


class _Stdio:
    def __init__(self, command: list[str]) -> None:
        try:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            raise ProbeError(f"cannot start {command[0]!r}: {exc}") from None
        self._buffer = b""
        self._next_id = 0

    def request(self, method: str, params: dict[str, Any], deadline: float) -> Any:
        self._next_id += 1
        ident = self._next_id
        self.send({"jsonrpc": "2.0", "id": ident, "method": method, "params": params})
        while True:
            message = self._read(deadline)
            if isinstance(message, dict) and message.get("id") == ident:
                if "error" in message:
                    raise ProbeError(f"{method}: the server answered an error: {message['error']}")
                return message.get("result")

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(orjson.dumps(message) + b"\n")
            self.proc.stdin.flush()
        except OSError as exc:
            raise ProbeError(f"the server stopped reading: {exc}") from None

    def _read(self, deadline: float) -> Any:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise ProbeError("the server did not answer in time")
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise ProbeError("the server exited before answering")
                self._buffer += chunk
                if len(self._buffer) > MAX_LINE:
                    raise ProbeError("the server wrote a line over 16 MiB")
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            return orjson.loads(line)
        except orjson.JSONDecodeError:
            return None  # a log line on stdout: not an answer, keep reading

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(2)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(2)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def probe(command: list[str], timeout_s: float = 15.0) -> Offer:
    """Start ``command``, read what it offers, stop it."""
    deadline = time.monotonic() + timeout_s
    stdio = _Stdio(command)
    try:
        init = stdio.request(
            "initialize",
            {
                "protocolVersion": PROTOCOL,
                "capabilities": {},
                "clientInfo": {"name": "aipctl-policy-check", "version": "1"},
            },
            deadline,
        )
        if not isinstance(init, dict):
            raise ProbeError("initialize: the result is not an object")
        stdio.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        info_value, caps_value = init.get("serverInfo"), init.get("capabilities")
        info: dict[str, Any] = info_value if isinstance(info_value, dict) else {}
        caps: dict[str, Any] = caps_value if isinstance(caps_value, dict) else {}
        offer = Offer(
            f"{info.get('name', '?')} {info.get('version', '')}".strip(),
            str(init.get("protocolVersion", "?")),
            caps,
        )
        if "tools" in caps:
            cursor: Any = None
            for _ in range(MAX_PAGES):
                page = stdio.request("tools/list", {"cursor": cursor} if cursor else {}, deadline)
                if not isinstance(page, dict):
                    break
                offer.tools += [t for t in page.get("tools", []) if isinstance(t, dict)]
                cursor = page.get("nextCursor")
                if not cursor:
                    break
        return offer
    finally:
        stdio.close()


def judge(policy: Policy, offer: Offer) -> dict[str, Any]:
    """Per advertised capability, the methods the policy blocks; per tool, listed or hidden
    and whether a human is asked."""
    capabilities = {}
    for name, methods in CAPABILITY_METHODS.items():
        if name not in offer.capabilities:
            continue
        blocked = [m for m in methods if not method_allowed(policy, normalize(m))]
        capabilities[name] = {"methods": list(methods), "blocked": blocked}
    kept = filter_tools_list(policy, {"tools": offer.tools})
    listed = {id(t) for t in (kept or {"tools": offer.tools})["tools"]}
    tools = []
    for tool in offer.tools:
        name = str(tool.get("name", ""))
        rules = policy.rules_for(normalize(name))
        tools.append(
            {
                "name": name,
                "listed": id(tool) in listed,
                "asks": any(r.action is Action.ASK for r in rules),
            }
        )
    blocked = [m for cap in capabilities.values() for m in cap["blocked"]]
    allowed = DEFAULT_METHODS if policy.allowed_methods is None else policy.allowed_methods
    unlock = sorted(allowed | set(blocked)) if blocked else None
    return {
        "server": offer.server,
        "protocol": offer.protocol,
        "capabilities": capabilities,
        "tools": tools,
        # The one spec line that lets every blocked method through (denied_methods still wins).
        "allow_line": None if unlock is None else f"allowed_methods: [{', '.join(unlock)}]",
    }
