"""The small error hierarchy shared by both processes (STYLE §4.6).

``AipError`` is the root; ``ConfigError`` covers anything a user must fix in a file, a flag or
the environment before a process can start. ``PolicyError`` lists every problem of one policy
file, each with its line and key, so ``aipctl policy check`` can print them all at once.
"""

from __future__ import annotations

from collections.abc import Sequence

from aip.shared import slotclass
from aip.shared.slotclass import FrozenSlotted

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

MAX_RENDERED_PROBLEMS: Final = 100  # a broken 1 MiB file can have thousands


class AipError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(AipError):
    """A configuration a user must fix (policy, flags, environment, file permissions)."""


class PolicyProblem(FrozenSlotted):
    """One problem in a policy file. ``line`` is 1-based, 0 when no line applies."""

    __slots__ = ("key_path", "line", "message")
    line: int
    key_path: str  # e.g. "spec.tool_rules[2].allow_args.query"; "" for the whole file
    message: str

    def __init__(self, line: int, key_path: str, message: str) -> None:
        slotclass.init(self, "line", line)
        slotclass.init(self, "key_path", key_path)
        slotclass.init(self, "message", message)

    def render(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line else source
        return (
            f"{where}: {self.key_path}: {self.message}"
            if self.key_path
            else f"{where}: {self.message}"
        )


class PolicyError(ConfigError):
    """A policy that cannot be used. ``problems`` holds every problem found, in file order."""

    def __init__(self, source: str, problems: Sequence[PolicyProblem]) -> None:
        self.source = source
        self.problems = sorted(problems, key=lambda p: p.line)
        super().__init__(self._render())

    def _render(self) -> str:
        lines = [p.render(self.source) for p in self.problems[:MAX_RENDERED_PROBLEMS]]
        if len(self.problems) == 1:
            return lines[0]
        more = len(self.problems) - len(lines)
        if more:
            lines.append(f"... and {more} more")
        return f"{len(self.problems)} problems in policy {self.source}:\n" + "\n".join(lines)

    @classmethod
    def single(cls, source: str, message: str, line: int = 0, key_path: str = "") -> PolicyError:
        return cls(source, [PolicyProblem(line, key_path, message)])
