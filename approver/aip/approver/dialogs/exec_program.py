"""``--dialog exec:PROGRAM`` (DESIGN §3): a program decides; the test seam and an extension point.

Started without a shell, no arguments, environment PATH=/usr/bin:/bin + HOME + LANG + AIP_*;
one JSON line on stdin, written asynchronously then closed; its ``text`` is the whole
request, nothing cut (``withheld`` says why not, above render.FULL_TEXT_MAX), and
``remember`` the offer of the second step. Exit 0 with a first line in the grammar of
verdict.parse_answer_line counts; anything else is a dialog error; at the deadline it is killed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from aip.approver.dialogs.base import SAFE_PATH, Prompt, binary_problem, run_dialog
from aip.approver.dialogs.render import WHOLE, Fit
from aip.approver.dialogs.verdict import ERROR, Verdict, parse_answer_line
from aip.shared.errors import ConfigError
from aip.shared.protocol.codec import PROTOCOL_VERSION


def program_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.startswith("AIP_")}
    for key in ("HOME", "LANG"):
        if os.environ.get(key):
            env[key] = os.environ[key]
    env["PATH"] = SAFE_PATH
    return env


@dataclass(frozen=True, slots=True)
class ExecProgram:
    program: str
    name: str = "exec"
    fit: Fit = WHOLE
    env: dict[str, str] = field(default_factory=program_env)  # fixed at start-up

    @classmethod
    def from_spec(cls, spec: str) -> ExecProgram:
        """``exec:/abs/path``: one absolute path, no arguments, an executable file."""
        program = spec.removeprefix("exec:")
        path = Path(program)
        if not path.is_absolute() or any(ch.isspace() for ch in program):
            raise ConfigError(f"--dialog exec:PROGRAM needs one absolute path, got {program!r}")
        if not path.is_file() or not os.access(path, os.X_OK):
            raise ConfigError(f"--dialog exec: {program} is not an executable file")
        problem = binary_problem(path)  # it decides asks: nobody else may be able to edit it
        if problem is not None:
            raise ConfigError(f"--dialog exec: {problem}")
        return cls(program)

    def request_line(self, prompt: Prompt) -> bytes:
        return orjson.dumps(
            {
                "v": PROTOCOL_VERSION,
                "kind": prompt.kind,
                "request_id": prompt.request_id,
                "agent_id": prompt.agent_id,
                "server": prompt.server,
                "tool": prompt.tool,
                "arguments": prompt.arguments,
                "text": prompt.text,
                "rule": prompt.rule,
                "seconds_left": prompt.seconds_left,
                "queue_position": prompt.queue_position,
                "withheld": prompt.withheld,
                "remember": prompt.remember.to_json(),
            },
            option=orjson.OPT_APPEND_NEWLINE,
        )

    async def show(self, prompt: Prompt) -> Verdict:
        done = await run_dialog([self.program], self.env, self.request_line(prompt))
        if done.returncode != 0:
            return ERROR
        return parse_answer_line(done.first_line())
