"""The Linux desktop backends: zenity, kdialog and Xdialog (security.md §1.2-§1.4).

Each gets the already escaped ASCII text and adds only its own escaping; Deny is the default
everywhere, and Allow needs exit code 0 (plus ``allow`` on stdout for kdialog's radio list).
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from typing import Final

from aip.approver.dialogs.base import Answer, Prompt, gui_env, run_dialog
from aip.approver.dialogs.render import TITLE

SETPRIV: Final = "/usr/bin/setpriv"  # util-linux
XDIALOG_TEXT_MAX: Final = 1500  # Xdialog silently cuts its label at 2048 bytes
FULLWIDTH_BACKSLASH: Final = "\uff3c"  # Xdialog turns the two chars \n into a newline


@dataclass(frozen=True, slots=True)
class Zenity:
    binary: str
    name: str = "zenity"

    def argv(self, prompt: Prompt) -> list[str]:
        # --no-markup: the text is not Pango markup and its escapes are not processed;
        # --default-cancel: Return (or a synthetic key press) means Deny.
        return [
            self.binary,
            "--question",
            "--no-markup",
            "--default-cancel",
            "--title",
            TITLE,
            "--ok-label",
            "Allow",
            "--cancel-label",
            "Deny",
            "--width",
            "640",
            "--text",
            prompt.text,
        ]

    async def show(self, prompt: Prompt) -> Answer:
        done = await run_dialog(orphan_proof(self.argv(prompt)), gui_env())
        if b"cannot open display" in done.stderr:  # rc 1 here would look like a Deny
            return Answer.ERROR
        return _by_returncode(done.returncode)


@dataclass(frozen=True, slots=True)
class Kdialog:
    binary: str
    name: str = "kdialog"

    def argv(self, prompt: Prompt) -> list[str]:
        # Rich text forced with <qt> and fully escaped, so Qt never guesses; no backslash
        # reaches kdialog's own escape parser. kdialog has no "default No", hence a radio
        # list with Deny preselected.
        body = html.escape(prompt.text, quote=True).replace("\\", "&#92;").replace("\n", "<br>")
        return [
            self.binary,
            "--title",
            TITLE,
            "--radiolist",
            f"<qt>{body}</qt>",
            "deny",
            "Deny",
            "on",
            "allow",
            "Allow",
            "off",
        ]

    async def show(self, prompt: Prompt) -> Answer:
        done = await run_dialog(orphan_proof(self.argv(prompt)), gui_env())
        if done.returncode == 0 and done.first_line() == "allow":
            return Answer.ALLOW
        return Answer.DENY if done.returncode in (0, 1, 2) else Answer.ERROR


@dataclass(frozen=True, slots=True)
class Xdialog:
    binary: str
    name: str = "xdialog"

    def argv(self, prompt: Prompt) -> list[str]:
        text = prompt.text.replace("\\", FULLWIDTH_BACKSLASH)
        if len(text.encode()) > XDIALOG_TEXT_MAX:
            text = text.encode()[: XDIALOG_TEXT_MAX - 40].decode("utf-8", "ignore")
            text += "\n...[text cut]"
        text += f"\n({FULLWIDTH_BACKSLASH} = backslash)"
        return [
            self.binary,
            "--title",
            TITLE,
            "--ok-label",
            "Allow",
            "--cancel-label",
            "Deny",
            "--default-no",
            "--yesno",
            text,
            "0",
            "0",
        ]

    async def show(self, prompt: Prompt) -> Answer:
        done = await run_dialog(orphan_proof(self.argv(prompt)), gui_env())
        return _by_returncode(done.returncode)


def orphan_proof(argv: list[str]) -> list[str]:
    """Run a dialog so that it dies with the approver (Linux parent-death signal, kept
    across exec): a killed approver must not leave a question on screen that nobody hears."""
    if os.path.exists(SETPRIV):
        return [SETPRIV, "--pdeathsig", "KILL", "--", *argv]
    return argv


def _by_returncode(returncode: int) -> Answer:
    # 0 = Allow; 1 = Deny, Escape or window closed; anything else (no display, a signal,
    # zenity's own --timeout 5) is a failure, never reported as a human decision.
    if returncode == 0:
        return Answer.ALLOW
    return Answer.DENY if returncode == 1 else Answer.ERROR
