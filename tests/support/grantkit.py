"""Shared set-up of the grant tests: a real approver answering through the ``exec:`` test
program (its answer read from a file the test rewrites), a real proxy over the raw server, and
readers of what happened (dialogs opened, audit events)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.approverproc import Approver, answer_program, wait_for  # noqa: E402
from tests.support.mcpclient import read_json_lines  # noqa: E402
from tests.support.proxyproc import ProxyProcess, write_policy  # noqa: E402

RAW_SERVER = [sys.executable, str(ROOT / "tests" / "support" / "raw_server.py")]
ASK_WRITE = """
allowed_tools: [read_file]
tool_rules:
  - tool: write_file
    action: ask
"""


class Desk:
    """One approver + its answer file + its dialog record."""

    def __init__(self, folder: Path, approver: Approver) -> None:
        self.folder = folder
        self.approver = approver
        self.answer_file = folder / "answer.txt"
        self.record = folder / "dialogs.jsonl"

    def answer(self, line: str) -> None:
        self.answer_file.write_text(line + "\n")

    def dialogs(self) -> list[dict[str, Any]]:
        """The stdin JSON of every dialog the exec: program was started for."""
        return [r["request"] for r in read_json_lines(self.record) if r["event"] == "open"]

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        try:
            data = self.approver.audit_path.read_text()
        except FileNotFoundError:
            return []
        records = [json.loads(x) for x in data.splitlines(keepends=True) if x.endswith("\n")]
        return [r for r in records if kind is None or r.get("event") == kind]

    def wait_event(self, kind: str, count: int = 1, timeout_s: float = 10) -> list[dict[str, Any]]:
        wait_for(lambda: len(self.events(kind)) >= count, timeout_s, f"{count} {kind} record(s)")
        return self.events(kind)

    def decision(self, request_id: Any, timeout_s: float = 10) -> dict[str, Any]:
        def found() -> list[dict[str, Any]]:
            return [r for r in self.events("decision") if r.get("request_id") == request_id]

        wait_for(lambda: bool(found()), timeout_s, f"the decision record of {request_id!r}")
        return found()[-1]


@contextmanager
def desk(
    folder: Path, first_answer: str = "deny", env: dict[str, str] | None = None
) -> Iterator[Desk]:
    prog = answer_program(folder)
    full = {**os.environ, **(env or {})}
    full["AIP_TEST_ANSWER_FILE"] = str(folder / "answer.txt")
    full["AIP_TEST_RECORD"] = str(folder / "dialogs.jsonl")
    (folder / "answer.txt").write_text(first_answer + "\n")
    with Approver(folder, f"exec:{prog}", timeout_s=10, env=full).wait_ready() as approver:
        yield Desk(folder, approver)


@contextmanager
def proxy(
    folder: Path,
    endpoint: str,
    spec: str = ASK_WRITE,
    *,
    name: str = "grants",
    server_args: list[str] | None = None,
    agent_id: str = "agent-grants",
) -> Iterator[ProxyProcess]:
    policy = write_policy(folder, spec, name)
    server = [*RAW_SERVER, *(server_args or [])]
    proc = ProxyProcess(
        policy,
        server,
        folder,
        extra_args=["--approver", endpoint],
        env={"AIP_AGENT_ID": agent_id},
    )
    try:
        proc.initialize()
        yield proc
    finally:
        proc.kill()


def error_code(reply: dict[str, Any]) -> int | None:
    error = reply.get("error")
    return error.get("code") if isinstance(error, dict) else None
