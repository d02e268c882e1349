"""The macOS and Windows backends: constant scripts, data never part of the code.

osascript gets the script on stdin (``osascript -``) and the text as an argv item;
PowerShell gets a constant ``-EncodedCommand`` and the text as JSON on stdin
(security.md §1.5, §1.6). Deny is the default button; Allow needs rc 0 and ``allow`` out.
Neither has a scrolling view: a request longer than their ``fit`` is withheld (Deny only).
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from typing import Final

import orjson

from aip.approver.dialogs.base import Prompt, check_fits, run_dialog
from aip.approver.dialogs.render import TITLE, Fit, Limits
from aip.approver.dialogs.verdict import Answer, Verdict

OSASCRIPT: Final = "/usr/bin/osascript"
# Old AppleScript documentation caps ``display dialog`` at 255 characters; newer macOS shows
# more but grows the alert with it: 1,000 characters (security.md ), not measured here.
OSASCRIPT_FIT: Final = Fit(Limits(chars=1000, lines=20))
# Our own WinForms form: a Consolas 9 label up to 720 px wide (76 columns fit) grows about
# 14 px a line; 30 lines stay on a 768 px screen. Not measured here (no Windows).
POWERSHELL_FIT: Final = Fit(Limits(chars=30 * 76, lines=30))
# "cancel button" turns Deny and Escape into error -128, which we answer with "deny".
OSA_SCRIPT: Final = f"""on run argv
  set msg to item 1 of argv
  set secs to (item 2 of argv) as integer
  set choices to {{"Deny", "Allow"}}
  if (item 3 of argv) is "deny-only" then set choices to {{"Deny"}}
  try
    set r to display dialog msg with title "{TITLE}" buttons choices ¬
      default button "Deny" cancel button "Deny" with icon caution giving up after secs
  on error number -128
    return "deny"
  end try
  if gave up of r then return "timeout"
  if button returned of r is "Allow" then return "allow"
  return "deny"
end run
"""

POWERSHELL_SCRIPT: Final = f"""$ErrorActionPreference = 'Stop'
$req = [Console]::In.ReadToEnd() | ConvertFrom-Json
Add-Type -AssemblyName System.Windows.Forms
Add-Type -AssemblyName System.Drawing
$form = New-Object System.Windows.Forms.Form
$form.Text = '{TITLE}'
$form.TopMost = $true
$form.AutoSize = $true
$form.AutoSizeMode = 'GrowAndShrink'
$form.StartPosition = 'CenterScreen'
$form.FormBorderStyle = 'FixedDialog'
$form.MinimizeBox = $false
$form.MaximizeBox = $false
$label = New-Object System.Windows.Forms.Label
$label.UseMnemonic = $false
$label.AutoSize = $true
$label.MaximumSize = New-Object System.Drawing.Size(720, 0)
$label.Font = New-Object System.Drawing.Font('Consolas', 9)
$label.Text = [string]$req.text
$label.Location = New-Object System.Drawing.Point(12, 12)
$form.Controls.Add($label)
$y = $label.PreferredSize.Height + 24
$deny = New-Object System.Windows.Forms.Button
$deny.Text = 'Deny'
$deny.DialogResult = [System.Windows.Forms.DialogResult]::No
$deny.Location = New-Object System.Drawing.Point(12, $y)
$allow = New-Object System.Windows.Forms.Button
$allow.Text = 'Allow'
$allow.DialogResult = [System.Windows.Forms.DialogResult]::Yes
$allow.Location = New-Object System.Drawing.Point(120, $y)
if ([bool]$req.withheld) {{ $allow.Enabled = $false; $allow.Visible = $false }}
$form.Controls.Add($deny)
$form.Controls.Add($allow)
$form.AcceptButton = $deny
$form.CancelButton = $deny
$form.ActiveControl = $deny
$timer = New-Object System.Windows.Forms.Timer
$timer.Interval = [Math]::Max(1, [int]$req.seconds) * 1000
$timer.Add_Tick({{
  $form.DialogResult = [System.Windows.Forms.DialogResult]::Abort
  $form.Close()
}})
$timer.Start()
$result = $form.ShowDialog()
if ($result -eq [System.Windows.Forms.DialogResult]::Yes) {{ 'allow' }}
elseif ($result -eq [System.Windows.Forms.DialogResult]::Abort) {{ 'timeout' }}
else {{ 'deny' }}
"""


def powershell_path(system_root: str | None = None) -> str:
    root = system_root or os.environ.get("SystemRoot")  # noqa: SIM112 - Windows spells it so
    root = root or "C:\\Windows"
    return root + "\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"


def encoded_command(script: str = POWERSHELL_SCRIPT) -> str:
    """``-EncodedCommand`` takes base64 of UTF-16LE; the script is a constant."""
    return base64.b64encode(script.encode("utf-16-le")).decode("ascii")


@dataclass(frozen=True, slots=True)
class Osascript:
    binary: str = OSASCRIPT
    name: str = "osascript"
    fit: Fit = OSASCRIPT_FIT

    def argv(self, prompt: Prompt) -> list[str]:
        # "-" = script from stdin; the items after it are argv of the run handler.
        check_fits(prompt.text, self.fit.dialog)
        buttons = "deny-only" if prompt.withheld else "ask"
        return [self.binary, "-", prompt.text, str(max(1, prompt.seconds_left)), buttons]

    def env(self) -> dict[str, str]:
        keep = ("HOME", "LANG", "TMPDIR", "USER")
        env = {k: os.environ[k] for k in keep if os.environ.get(k)}
        env["PATH"] = "/usr/bin:/bin"
        return env

    async def show(self, prompt: Prompt) -> Verdict:
        done = await run_dialog(self.argv(prompt), self.env(), OSA_SCRIPT.encode())
        if done.returncode != 0:
            return Verdict(Answer.ERROR)
        return Verdict(_by_word(done.first_line()))


@dataclass(frozen=True, slots=True)
class PowerShell:
    binary: str
    name: str = "powershell"
    fit: Fit = POWERSHELL_FIT

    def argv(self) -> list[str]:
        """Identical for every request: the data goes on stdin."""
        return [
            self.binary,
            "-NoProfile",
            "-NonInteractive",
            "-ExecutionPolicy",
            "Bypass",
            "-EncodedCommand",
            encoded_command(),
        ]

    def stdin(self, prompt: Prompt) -> bytes:
        check_fits(prompt.text, self.fit.dialog)
        seconds = max(1, prompt.seconds_left)
        return orjson.dumps({"text": prompt.text, "seconds": seconds, "withheld": prompt.withheld})

    def env(self) -> dict[str, str]:
        keep = ("SystemRoot", "windir", "TEMP", "TMP", "USERPROFILE", "APPDATA", "LOCALAPPDATA")
        env = {k: os.environ[k] for k in keep if os.environ.get(k)}
        env["PATH"] = env.get("SystemRoot", "C:\\Windows") + "\\System32"
        return env

    async def show(self, prompt: Prompt) -> Verdict:
        done = await run_dialog(self.argv(), self.env(), self.stdin(prompt))
        if done.returncode != 0:
            return Verdict(Answer.ERROR)
        return Verdict(_by_word(done.first_line()))


def _by_word(word: str) -> Answer:
    if word == "allow":
        return Answer.ALLOW
    if word == "deny":
        return Answer.DENY
    return Answer.ERROR  # "timeout" (we kill at the deadline first) or anything unexpected
