"""The two steps every native backend runs (issue 13): Deny · Allow once · Allow and remember…,
then, only after the third, what to remember (remember_text.SecondStep).

The scheduler runs the whole ``show()`` under the ask's deadline, so both steps share it: the
second dialog is told the seconds still left and is killed at the deadline like the first
(then the ask times out: denied, nothing remembered, no human choice was completed).
A backend supplies the two dialogs; this module decides what their answers mean.
"""

from __future__ import annotations

import enum
import logging
import math
import time
from dataclasses import dataclass
from typing import Protocol

from aip.approver.dialogs.base import Prompt
from aip.approver.dialogs.remember_text import SecondStep, offer_for, second_step
from aip.approver.dialogs.render import Limits
from aip.approver.dialogs.verdict import ALLOW_ONCE, DENY, ERROR, Verdict

log = logging.getLogger(__name__)


class First(enum.Enum):
    DENY = "deny"  # Deny, Return, Escape, closing the window
    ALLOW_ONCE = "allow"
    REMEMBER = "remember"  # "Allow and remember…"
    ERROR = "error"  # the dialog failed: never a human decision


@dataclass(frozen=True, slots=True)
class Clock:
    """The ask's deadline as a backend sees it (``Prompt.seconds_left`` when shown)."""

    deadline: float

    @classmethod
    def start(cls, prompt: Prompt) -> Clock:
        return cls(time.monotonic() + prompt.seconds_left)

    def seconds_left(self) -> int:
        return max(1, math.floor(self.deadline - time.monotonic()))


class TwoSteps(Protocol):
    @property
    def name(self) -> str: ...

    async def first(self, prompt: Prompt, offered: bool) -> First:
        """Step 1; the Remember button (or word) only when ``offered``."""
        ...

    async def second(self, step: SecondStep, seconds_left: int) -> str | None:
        """Step 2: the key of the chosen row, or None (cancelled, nothing chosen)."""
        ...


async def run_two_steps(backend: TwoSteps, prompt: Prompt, second_limits: Limits) -> Verdict:
    clock = Clock.start(prompt)
    offered = offer_for(prompt).offered
    first = await backend.first(prompt, offered)
    if first is First.DENY:
        return DENY
    if first is First.ALLOW_ONCE:
        return ALLOW_ONCE
    if first is First.ERROR:
        return ERROR
    if not offered:  # a button we never showed: not a human answer we can trust
        log.warning("dialog %s answered remember, which was not offered", backend.name)
        return ERROR
    step = second_step(prompt, clock.seconds_left(), second_limits)
    return step.verdict(await backend.second(step, clock.seconds_left()))
