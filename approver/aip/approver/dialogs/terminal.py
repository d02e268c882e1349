"""``--dialog terminal``: the prompt on the approver's own terminal (SSH/tmux, no display).

Like polkit's text agent: the text goes to the approver's stdout, the answer comes from its
stdin. Typeahead is flushed before asking, and only the word ``allow`` allows (once);
``remember`` (when offered) opens the second step, a numbered list whose Enter alone, or any
other answer, is Allow once. The whole request is printed (the terminal scrolls); the
identity lines are repeated under it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import termios
from dataclasses import dataclass, field
from typing import TextIO

from aip.approver.dialogs.base import Prompt
from aip.approver.dialogs.remember_text import SecondStep, first_text
from aip.approver.dialogs.render import TITLE, UNLIMITED, WHOLE, Fit
from aip.approver.dialogs.second_step import First, run_two_steps
from aip.approver.dialogs.verdict import Verdict

MAX_LINE_BYTES = 4096


@dataclass(slots=True)
class Terminal:
    stdin_fd: int = 0
    out: TextIO = field(default_factory=lambda: sys.stdout)
    name: str = "terminal"
    fit: Fit = WHOLE

    async def show(self, prompt: Prompt) -> Verdict:
        return await run_two_steps(self, prompt, UNLIMITED)

    async def first(self, prompt: Prompt, offered: bool) -> First:
        # Keys typed before the question appeared must not answer it.
        self._flush()
        bar = "=" * 76
        self._say(f"\n{bar}\n{TITLE}\n{bar}\n{first_text(prompt)}\n{bar}\n")
        # A long request scrolls its first lines away: say again who asks, next to the prompt.
        self._say(f"Agent: {prompt.agent_id[:60]}  Server: {prompt.server[:60]}\n")
        if prompt.withheld:
            self._say("Allow is withheld (see above). Press Enter to deny: ")
        elif offered:
            self._say('Type "allow" to allow once, "remember" to allow and choose what to '
                      "remember; anything else denies: ")  # fmt: skip
        else:
            self._say('Type "allow" and Enter to allow; anything else denies: ')
        line = await self._answer()
        if line is None:
            return First.ERROR  # the terminal went away
        word = line.strip().lower()
        if (
            prompt.withheld
            or word not in ("allow", "remember")
            or (word == "remember" and not offered)
        ):
            self._say("[deny]\n")
            return First.DENY
        self._say("[allow]\n" if word == "allow" else "")
        return First.ALLOW_ONCE if word == "allow" else First.REMEMBER

    async def second(self, step: SecondStep, seconds_left: int) -> str | None:
        self._flush()
        rows = "".join(f"  {n}) {c.label}\n" for n, c in enumerate(step.choices, 1))
        self._say(f"\n{step.text}\n(auto-deny in {seconds_left} s)\n{rows}")
        self._say("Type a number and Enter; Enter alone or anything else allows once: ")
        line = await self._answer()
        key = None
        if line is not None and line.strip().isdigit():
            index = int(line.strip()) - 1
            key = step.choices[index].key if 0 <= index < len(step.choices) else None
        self._say(f"[{step.verdict(key).answer.value}]\n")
        return key

    def _flush(self) -> None:
        with contextlib.suppress(termios.error, OSError):
            termios.tcflush(self.stdin_fd, termios.TCIFLUSH)

    async def _answer(self) -> str | None:
        try:
            return await self._read_line()
        except asyncio.CancelledError:
            self._say("\n[request withdrawn or timed out: denied]\n")
            raise

    def _say(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.out.write(text)
            self.out.flush()

    async def _read_line(self) -> str | None:
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        loop.add_reader(self.stdin_fd, ready.set)
        buf = b""
        try:
            while b"\n" not in buf:
                await ready.wait()
                ready.clear()
                try:
                    chunk = os.read(self.stdin_fd, 1024)
                except BlockingIOError:
                    continue
                if not chunk:
                    return None
                buf += chunk
                if len(buf) > MAX_LINE_BYTES:
                    return ""
        finally:
            loop.remove_reader(self.stdin_fd)
        return buf.split(b"\n", 1)[0].decode("utf-8", "replace")
