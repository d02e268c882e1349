"""The macOS backend: osascript with constant scripts, data never part of the code.

osascript gets each script on stdin (``osascript -``) and the text as argv items
(security.md §1.5). ``display dialog`` has at most three buttons: step 1 is exactly
Deny · Allow once · Allow and remember… (Deny the default and the cancel button, so Escape
denies; the third only when offered); step 2 is a ``choose from list`` whose preselected
first row is "Allow once, remember nothing" and whose cancel button is "Allow once".
It has no scrolling view: a request longer than its ``fit`` is withheld (Deny only).
The PowerShell backend is in powershell.py.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final

from aip.approver.dialogs.base import Prompt, check_fits, run_dialog
from aip.approver.dialogs.remember_text import SecondStep, body_limits, first_text
from aip.approver.dialogs.render import TITLE, Fit, Limits
from aip.approver.dialogs.second_step import First, run_two_steps
from aip.approver.dialogs.verdict import Verdict

OSASCRIPT: Final = "/usr/bin/osascript"
# Old AppleScript documentation caps ``display dialog`` at 255 characters; newer macOS shows
# more but grows the alert with it: 1,000 characters (security.md ), not measured here.
OSASCRIPT_LIMITS: Final = Limits(chars=1000, lines=20)
OSASCRIPT_FIT: Final = Fit(body_limits(OSASCRIPT_LIMITS))
OSASCRIPT_SECOND: Final = Limits(chars=800, lines=14)  # above an 11-row list; not measured
# The ellipsis of "Allow and remember…" as character id 8230: the label the script compares
# does not depend on how osascript decodes the script it reads on stdin.
_REMEMBER: Final = '("Allow and remember" & (character id 8230))'
# "cancel button" turns Deny and Escape into error -128, which we answer with "deny".
OSA_SCRIPT: Final = f"""on run argv
  set msg to item 1 of argv
  set secs to (item 2 of argv) as integer
  set rememberLabel to {_REMEMBER}
  set choices to {{"Deny", "Allow once"}}
  if (item 3 of argv) is "deny-only" then set choices to {{"Deny"}}
  if (item 3 of argv) is "remember" then set choices to {{"Deny", "Allow once", rememberLabel}}
  try
    set r to display dialog msg with title "{TITLE}" buttons choices ¬
      default button "Deny" cancel button "Deny" with icon caution giving up after secs
  on error number -128
    return "deny"
  end try
  if gave up of r then return "timeout"
  if button returned of r is "Allow once" then return "allow"
  if button returned of r is rememberLabel then return "remember"
  return "deny"
end run
"""
# Step 2: the rows' labels come after the text in argv; the chosen label is printed back.
OSA_SECOND_SCRIPT: Final = f"""on run argv
  set msg to item 1 of argv
  set labels to items 2 thru -1 of argv
  set picked to choose from list labels with title "{TITLE}" with prompt msg ¬
    default items {{item 1 of labels}} OK button name "Remember" cancel button name "Allow once"
  if picked is false then return "cancel"
  return "choice " & (item 1 of picked)
end run
"""


@dataclass(frozen=True, slots=True)
class Osascript:
    binary: str = OSASCRIPT
    name: str = "osascript"
    fit: Fit = OSASCRIPT_FIT

    def argv(self, prompt: Prompt, offered: bool = False) -> list[str]:
        # "-" = script from stdin; the items after it are argv of the run handler.
        text = first_text(prompt)
        check_fits(text, OSASCRIPT_LIMITS)
        mode = "deny-only" if prompt.withheld else "remember" if offered else "ask"
        return [self.binary, "-", text, str(max(1, prompt.seconds_left)), mode]

    def second_argv(self, step: SecondStep) -> list[str]:
        check_fits(step.text, OSASCRIPT_SECOND)
        return [self.binary, "-", step.text, *(choice.label for choice in step.choices)]

    def env(self) -> dict[str, str]:
        keep = ("HOME", "LANG", "TMPDIR", "USER")
        env = {k: os.environ[k] for k in keep if os.environ.get(k)}
        env["PATH"] = "/usr/bin:/bin"
        return env

    async def show(self, prompt: Prompt) -> Verdict:
        return await run_two_steps(self, prompt, OSASCRIPT_SECOND)

    async def first(self, prompt: Prompt, offered: bool) -> First:
        argv = self.argv(prompt, offered)  # before the clock starts: it says the seconds
        done = await run_dialog(argv, self.env(), OSA_SCRIPT.encode())
        if done.returncode != 0:
            return First.ERROR
        return by_word(done.first_line(), offered)

    async def second(self, step: SecondStep, seconds_left: int) -> str | None:
        done = await run_dialog(self.second_argv(step), self.env(), OSA_SECOND_SCRIPT.encode())
        line = done.first_line()
        if done.returncode != 0 or not line.startswith("choice "):
            return None  # cancelled or failed: Allow once (step 1 allowed)
        label = line.removeprefix("choice ")
        return next((c.key for c in step.choices if c.label == label), None)


def by_word(word: str, offered: bool) -> First:
    """Step 1's printed word; "timeout" (we kill at the deadline first) or anything
    unexpected is a failure, never a human decision."""
    if word == "allow":
        return First.ALLOW_ONCE
    if word == "deny":
        return First.DENY
    if word == "remember" and offered:
        return First.REMEMBER
    return First.ERROR
