"""The Linux desktop backends' common parts, and zenity (security.md §1.2); kdialog and
Xdialog are in kdialog_xdialog.py.

Each gets the already escaped ASCII text, sized by the renderer for its ``fit``, and adds only
its own escaping; none cuts anything (a text over its limit is a dialog error). Deny is the
default everywhere, and Allow needs exit code 0 (plus ``allow`` on stdout for kdialog's radio
list). A withheld prompt gets a dialog whose only button is Deny.
"""

from __future__ import annotations

import asyncio
import html
import logging
import os
from dataclasses import dataclass
from typing import Final

from aip.approver.dialogs.base import (
    Finished,
    Prompt,
    check_fits,
    gui_env,
    run_dialog,
)
from aip.approver.dialogs.remember_text import (
    ALLOW_ONCE_LABEL,
    REMEMBER_BUTTON,
    SecondStep,
    body_limits,
    first_text,
)
from aip.approver.dialogs.render import TITLE, UNLIMITED, Fit, Limits
from aip.approver.dialogs.second_step import First, run_two_steps
from aip.approver.dialogs.verdict import Answer, Verdict

log = logging.getLogger(__name__)

SETPRIV: Final = "/usr/bin/setpriv"  # util-linux
# A GTK/Qt message dialog grows with its text: measured with zenity 3.44 under Xvfb
# (1024x768), 40 lines of narrow glyphs (120 px + 16.2 px a line) or 20 lines of the widest
# ("W", wrapped twice at --width 640) reach 752 px. 20 lines keep every line and the
# buttons on a 768 px screen whatever the glyphs.
MESSAGE_LIMITS: Final = Limits(chars=20 * 76, lines=20)
# The request gets all but the room of the note "Remembering is not offered: ...".
BODY_LIMITS: Final = body_limits(MESSAGE_LIMITS)
# Step 2 (zenity --list): its text above at most 11 rows; 16 lines + 11 rows stay on 768 px
# (120 px + 17 px a line + 24 px a row, measured under Xvfb).
SECOND_LIMITS: Final = Limits(chars=16 * 76, lines=16)
# zenity --text-info: the whole text, scrollable, from stdin (not argv: no 128 KiB limit,
# not visible in ps); Allow is enabled only once "I have read the whole request" is ticked
# (without --checkbox, Return in a text-info means OK).
ZENITY_FIT: Final = Fit(BODY_LIMITS, scroll=UNLIMITED)
READ_ALL_CHECKBOX: Final = "I have read the whole request"
DISPLAY_RETRY_PAUSES_S: Final = (0.1, 0.5, None)  # step 2 started at most 3 times


@dataclass(frozen=True, slots=True)
class Zenity:
    binary: str
    name: str = "zenity"
    fit: Fit = ZENITY_FIT

    def argv(self, prompt: Prompt, offered: bool = False) -> list[str]:
        """Step 1. ``offered``: a third button, "Allow and remember…" (rc 1 + its label)."""
        title = ["--title", TITLE]
        text = first_text(prompt)
        if prompt.withheld:
            check_fits(text, MESSAGE_LIMITS)
            return [self.binary, "--warning", "--no-markup", *title, "--ok-label", "Deny",
                    "--width", "640", "--text", text]  # fmt: skip
        if prompt.scroll:
            # The text comes on stdin; Allow stays insensitive until the box is ticked (an
            # extra button would not be: remember_text.offer_for offers nothing here).
            return [self.binary, "--text-info", *title, "--font", "monospace 9", "--width",
                    "680", "--height", "560", "--ok-label", ALLOW_ONCE_LABEL, "--cancel-label",
                    "Deny", "--checkbox", READ_ALL_CHECKBOX]  # fmt: skip
        check_fits(text, MESSAGE_LIMITS)
        extra = ["--extra-button", REMEMBER_BUTTON] if offered else []
        # --no-markup: the text is not Pango markup and its escapes are not processed;
        # --default-cancel: Return (or a synthetic key press) means Deny.
        return [self.binary, "--question", "--no-markup", "--default-cancel", *title,
                "--ok-label", ALLOW_ONCE_LABEL, "--cancel-label", "Deny", *extra, "--width",
                "640", "--text", text]  # fmt: skip

    def second_argv(self, step: SecondStep) -> list[str]:
        """Step 2: a plain list (Return acts only on a chosen row; none is preselected).
        A list's --text is Pango markup after g_strcompress (verified, zenity 3.44), and
        --no-markup does not apply to it: escaped for both. Rows are our constants."""
        check_fits(step.text, SECOND_LIMITS)
        height = 120 + 17 * (step.text.count("\n") + 1) + 24 * len(step.choices)
        rows = [item for choice in step.choices for item in (choice.key, choice.label)]
        return [self.binary, "--list", "--title", TITLE, "--width", "680", "--height",
                str(min(height, 740)), "--ok-label", "Remember", "--cancel-label",
                ALLOW_ONCE_LABEL, "--text", pango_text(step.text), "--column", "key",
                "--column", "Choose what to remember (Cancel: allow once)", "--hide-column",
                "1", "--print-column", "1", *rows]  # fmt: skip

    async def show(self, prompt: Prompt) -> Verdict:
        return await run_two_steps(self, prompt, SECOND_LIMITS)

    async def first(self, prompt: Prompt, offered: bool) -> First:
        stdin = first_text(prompt).encode() if prompt.scroll and not prompt.withheld else None
        done = await run_dialog(orphan_proof(self.argv(prompt, offered)), gui_env(), stdin)
        if b"cannot open display" in done.stderr:  # rc 1 here would look like a Deny
            _failed(self.name, done)
            return First.ERROR
        if done.returncode == 1 and offered and done.first_line() == REMEMBER_BUTTON:
            return First.REMEMBER
        if prompt.withheld and done.returncode == 0:
            return First.DENY  # its only button is Deny
        answer = _by_returncode(done.returncode)
        if answer is Answer.ERROR:
            _failed(self.name, done)
            return First.ERROR
        return First.ALLOW_ONCE if answer is Answer.ALLOW else First.DENY

    async def second(self, step: SecondStep, seconds_left: int) -> str | None:
        # Measured under Xvfb: a zenity started just as the first one exits sometimes fails
        # to open the display (rc 1, "cannot open display"), more often under load; nothing
        # was shown, so it is started again after a short pause (the ask's deadline still
        # bounds all of it). Any other end without a choice is Allow once (step 1 allowed).
        for pause in DISPLAY_RETRY_PAUSES_S:
            done = await run_dialog(orphan_proof(self.second_argv(step)), gui_env())
            if done.returncode == 0:
                return done.first_line()
            if done.returncode != 1 or b"cannot open display" in done.stderr:
                _failed(self.name, done)
            if b"cannot open display" not in done.stderr or pause is None:
                break
            await asyncio.sleep(pause)
        return None


def pango_text(text: str) -> str:
    """Plain text for a label that zenity passes through g_strcompress, then Pango markup."""
    return html.escape(text, quote=True).replace("\\", "\\\\")


def orphan_proof(argv: list[str]) -> list[str]:
    """Run a dialog so that it dies with the approver (Linux parent-death signal, kept
    across exec): a killed approver must not leave a question on screen that nobody hears."""
    if os.path.exists(SETPRIV):
        return [SETPRIV, "--pdeathsig", "KILL", "--", *argv]
    return argv


def _failed(name: str, done: Finished) -> None:
    """Say why a dialog failed (its stderr holds GTK's messages, never our text)."""
    why = done.stderr[-300:].decode("ascii", "replace").strip().replace("\n", " | ")
    log.warning("%s failed with exit code %d: %s", name, done.returncode, why)


def _by_returncode(returncode: int) -> Answer:
    # 0 = Allow; 1 = Deny, Escape or window closed; anything else (no display, a signal,
    # zenity's own --timeout 5) is a failure, never reported as a human decision.
    if returncode == 0:
        return Answer.ALLOW
    return Answer.DENY if returncode == 1 else Answer.ERROR
