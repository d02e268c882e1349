"""kdialog and Xdialog (security.md §1.3, §1.4), each with the two steps of second_step.py.

kdialog: rich text forced with ``<qt>`` and fully escaped, so Qt never guesses, and no
backslash reaches kdialog's own escape parser. It has no "default No": step 1 is a radio list
with Deny preselected (Deny · Allow once · Allow and remember…, the third only when offered);
Allow needs rc 0 plus ``allow`` out. Step 2 is a radio list with "Allow once, remember
nothing" preselected. Xdialog: every backslash shown as a lookalike (it has no escape), its
own 2,048-byte cut never reached; ``--yesno`` (Deny default) when nothing is offered, else a
radio list like kdialog's, printed on ``--stdout``. Rows are our constants, never data.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Final

from aip.approver.dialogs.base import Prompt, TextTooLarge, check_fits, gui_env, run_dialog
from aip.approver.dialogs.gui import (
    BODY_LIMITS,
    MESSAGE_LIMITS,
    SECOND_LIMITS,
    _by_returncode,
    _failed,
    orphan_proof,
)
from aip.approver.dialogs.remember_text import (
    ALLOW_ONCE_LABEL,
    REMEMBER_BUTTON,
    SecondStep,
    body_limits,
    first_text,
)
from aip.approver.dialogs.render import TITLE, Fit, Limits
from aip.approver.dialogs.second_step import First, run_two_steps
from aip.approver.dialogs.verdict import Answer, Verdict

KDIALOG_FIT: Final = Fit(BODY_LIMITS)  # no scrolling view with Allow and Deny: withheld
XDIALOG_TEXT_MAX: Final = 1500  # Xdialog silently cuts its label at 2048 bytes
FULLWIDTH_BACKSLASH: Final = "\uff3c"  # Xdialog turns the two chars \n into a newline
XDIALOG_LEGEND: Final = f"\n({FULLWIDTH_BACKSLASH} = backslash)"
XDIALOG_LIMITS: Final = Limits(
    XDIALOG_TEXT_MAX - len(XDIALOG_LEGEND.encode()), lines=20, backslash_size=3
)
XDIALOG_FIT: Final = Fit(body_limits(XDIALOG_LIMITS))
XDIALOG_SECOND: Final = Limits(XDIALOG_LIMITS.chars, lines=16, backslash_size=3)


def _step_one_rows(offered: bool) -> list[str]:
    rows = ["deny", "Deny", "on", "allow", ALLOW_ONCE_LABEL, "off"]
    return rows + (["remember", REMEMBER_BUTTON, "off"] if offered else [])


def _step_two_rows(step: SecondStep) -> list[str]:
    # The first row ("Allow once, remember nothing") is preselected: Return remembers nothing.
    return [
        item
        for n, choice in enumerate(step.choices)
        for item in (choice.key, choice.label, "on" if n == 0 else "off")
    ]


def _first(done_rc: int, word: str, offered: bool) -> First:
    if done_rc == 0 and word == "allow":
        return First.ALLOW_ONCE
    if done_rc == 0 and word == "remember" and offered:
        return First.REMEMBER
    return First.DENY


@dataclass(frozen=True, slots=True)
class Kdialog:
    binary: str
    name: str = "kdialog"
    fit: Fit = KDIALOG_FIT

    def argv(self, prompt: Prompt, offered: bool = False) -> list[str]:
        text = first_text(prompt)
        check_fits(text, MESSAGE_LIMITS)
        if prompt.withheld:
            return [self.binary, "--title", TITLE, "--ok-label", "Deny", "--error", qt(text)]
        return [self.binary, "--title", TITLE, "--radiolist", qt(text), *_step_one_rows(offered)]

    def second_argv(self, step: SecondStep) -> list[str]:
        check_fits(step.text, SECOND_LIMITS)
        return [self.binary, "--title", TITLE, "--cancel-label", ALLOW_ONCE_LABEL,
                "--radiolist", qt(step.text), *_step_two_rows(step)]  # fmt: skip

    async def show(self, prompt: Prompt) -> Verdict:
        return await run_two_steps(self, prompt, SECOND_LIMITS)

    async def first(self, prompt: Prompt, offered: bool) -> First:
        done = await run_dialog(orphan_proof(self.argv(prompt, offered)), gui_env())
        if done.returncode not in (0, 1, 2):  # 134: no display (SIGABRT), or another failure
            _failed(self.name, done)
            return First.ERROR
        return _first(done.returncode, done.first_line(), offered)

    async def second(self, step: SecondStep, seconds_left: int) -> str | None:
        done = await run_dialog(orphan_proof(self.second_argv(step)), gui_env())
        if done.returncode not in (0, 1, 2):
            _failed(self.name, done)  # the human allowed in step 1: Allow once
        return done.first_line() if done.returncode == 0 else None


def qt(text: str) -> str:
    """kdialog's text: forced rich text, fully escaped, no backslash left (R-1.3)."""
    body = html.escape(text, quote=True).replace("\\", "&#92;").replace("\n", "<br>")
    return f"<qt>{body}</qt>"


@dataclass(frozen=True, slots=True)
class Xdialog:
    binary: str
    name: str = "xdialog"
    fit: Fit = XDIALOG_FIT

    def argv(self, prompt: Prompt, offered: bool = False) -> list[str]:
        text = self._text(first_text(prompt), XDIALOG_LIMITS)
        common = [self.binary, "--title", TITLE]
        if prompt.withheld:
            return [*common, "--ok-label", "Deny", "--msgbox", text, "0", "0"]
        if offered:
            return [*common, "--stdout", "--radiolist", text, "0", "0", "3",
                    *_step_one_rows(offered)]  # fmt: skip
        return [*common, "--ok-label", ALLOW_ONCE_LABEL, "--cancel-label", "Deny",
                "--default-no", "--yesno", text, "0", "0"]  # fmt: skip

    def second_argv(self, step: SecondStep) -> list[str]:
        text = self._text(step.text, XDIALOG_SECOND)
        return [self.binary, "--title", TITLE, "--stdout", "--cancel-label", ALLOW_ONCE_LABEL,
                "--radiolist", text, "0", "0", str(len(step.choices)),
                *_step_two_rows(step)]  # fmt: skip

    @staticmethod
    def _text(text: str, limits: Limits) -> str:
        check_fits(text, limits)
        shown = text.replace("\\", FULLWIDTH_BACKSLASH) + XDIALOG_LEGEND
        if len(shown.encode()) > XDIALOG_TEXT_MAX:  # the check above makes this unreachable
            raise TextTooLarge(f"{len(shown.encode())} bytes for Xdialog")
        return shown

    async def show(self, prompt: Prompt) -> Verdict:
        return await run_two_steps(self, prompt, XDIALOG_SECOND)

    async def first(self, prompt: Prompt, offered: bool) -> First:
        done = await run_dialog(orphan_proof(self.argv(prompt, offered)), gui_env())
        if prompt.withheld:  # its only button is Deny
            return First.DENY if done.returncode in (0, 1) else First.ERROR
        if offered:
            if done.returncode not in (0, 1):
                return First.ERROR
            return _first(done.returncode, done.first_line(), offered)
        answer = _by_returncode(done.returncode)
        if answer is Answer.ERROR:
            return First.ERROR
        return First.ALLOW_ONCE if answer is Answer.ALLOW else First.DENY

    async def second(self, step: SecondStep, seconds_left: int) -> str | None:
        done = await run_dialog(orphan_proof(self.second_argv(step)), gui_env())
        return done.first_line() if done.returncode == 0 else None
