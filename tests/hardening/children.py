"""Misbehaving MCP servers for the fault tests (stdlib only; run as scripts).

Usage: children.py MODE [ARG]
  deaf-talker N   never reads stdin; writes N numbered log notifications, one every 10 ms,
                  then keeps quiet (still not reading) until killed
  half-line CODE  answers ``initialize``; on the first tools/call writes half a response
                  line (no newline) and exits with CODE
"""

from __future__ import annotations

import json
import sys
import time


def _send(obj: dict[str, object], end: bytes = b"\n") -> None:
    sys.stdout.buffer.write(json.dumps(obj).encode() + end)
    sys.stdout.buffer.flush()


def deaf_talker(count: int) -> None:
    for n in range(count):
        _send({"jsonrpc": "2.0", "method": "notifications/message", "params": {"n": n}})
        time.sleep(0.01)
    time.sleep(600)


def half_line(code: int) -> None:
    for line in sys.stdin.buffer:
        msg = json.loads(line)
        if msg.get("method") == "tools/call":
            half = json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": {"content": []}})
            sys.stdout.buffer.write(half[: len(half) // 2].encode())
            sys.stdout.buffer.flush()
            sys.exit(code)
        if "id" in msg:
            _send({"jsonrpc": "2.0", "id": msg["id"], "result": {}})


if __name__ == "__main__":
    mode, arg = sys.argv[1], int(sys.argv[2])
    {"deaf-talker": deaf_talker, "half-line": half_line}[mode](arg)
