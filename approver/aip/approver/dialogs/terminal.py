"""``--dialog terminal``: the prompt on the approver's own terminal (SSH/tmux, no display).

Like polkit's text agent: the text goes to the approver's stdout, the answer comes from its
stdin. Typeahead is flushed before asking, and only the word ``allow`` allows. The whole
request is printed (the terminal scrolls); the identity lines are repeated under it.
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
from aip.approver.dialogs.render import TITLE, WHOLE, Fit
from aip.approver.dialogs.verdict import Answer, Verdict

MAX_LINE_BYTES = 4096


@dataclass(slots=True)
class Terminal:
    stdin_fd: int = 0
    out: TextIO = field(default_factory=lambda: sys.stdout)
    name: str = "terminal"
    fit: Fit = WHOLE

    async def show(self, prompt: Prompt) -> Verdict:
        # Keys typed before the question appeared must not answer it.
        with contextlib.suppress(termios.error, OSError):
            termios.tcflush(self.stdin_fd, termios.TCIFLUSH)
        bar = "=" * 76
        self._say(f"\n{bar}\n{TITLE}\n{bar}\n{prompt.text}\n{bar}\n")
        # A long request scrolls its first lines away: say again who asks, next to the prompt.
        self._say(f"Agent: {prompt.agent_id[:60]}  Server: {prompt.server[:60]}\n")
        if prompt.withheld:
            self._say("Allow is withheld (see above). Press Enter to deny: ")
        else:
            self._say('Type "allow" and Enter to allow; anything else denies: ')
        try:
            line = await self._read_line()
        except asyncio.CancelledError:
            self._say("\n[request withdrawn or timed out: denied]\n")
            raise
        if line is None:
            return Verdict(Answer.ERROR)  # the terminal went away
        allowed = line.strip().lower() == "allow" and not prompt.withheld
        answer = Answer.ALLOW if allowed else Answer.DENY
        self._say(f"[{answer.value}]\n")
        return Verdict(answer)

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
