"""The Windows backend: PowerShell with one constant ``-EncodedCommand`` for both steps.

The data goes as JSON on stdin, never into the script or argv (security.md §1.6). Step 1
is our own WinForms form, Deny (Return, Escape, the default) · Allow once · Allow and
remember… (the third only when offered); step 2 (``"step": "second"``) is the same form with
a list whose first row, "Allow once, remember nothing", is selected, and whose cancel button
is "Allow once". No scrolling view: a request longer than its ``fit`` is withheld (Deny only).
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from typing import Final

import orjson

from aip.approver.dialogs.base import Prompt, check_fits, run_dialog
from aip.approver.dialogs.native import by_word
from aip.approver.dialogs.remember_text import (
    ALLOW_ONCE_LABEL,
    REMEMBER_BUTTON,
    SecondStep,
    body_limits,
    first_text,
)
from aip.approver.dialogs.render import TITLE, Fit, Limits
from aip.approver.dialogs.second_step import First, run_two_steps
from aip.approver.dialogs.verdict import Verdict

# Our own WinForms form: a Consolas 9 label up to 720 px wide (76 columns fit) grows about
# 14 px a line; 30 lines stay on a 768 px screen. Not measured here (no Windows).
POWERSHELL_LIMITS: Final = Limits(chars=30 * 76, lines=30)
POWERSHELL_FIT: Final = Fit(body_limits(POWERSHELL_LIMITS))
POWERSHELL_SECOND: Final = Limits(chars=16 * 76, lines=16)  # above an 11-row list

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
function New-Button([string]$text, $result, [int]$x) {{
  $b = New-Object System.Windows.Forms.Button
  $b.Text = $text
  $b.UseMnemonic = $false
  $b.AutoSize = $true
  $b.DialogResult = $result
  $b.Location = New-Object System.Drawing.Point($x, $y)
  $form.Controls.Add($b)
  return $b
}}
$second = [string]$req.step -eq 'second'
if ($second) {{
  $list = New-Object System.Windows.Forms.ListBox
  $list.Location = New-Object System.Drawing.Point(12, $y)
  $list.Width = 600
  foreach ($c in @($req.choices)) {{ [void]$list.Items.Add([string]$c.label) }}
  $list.Height = $list.ItemHeight * $list.Items.Count + 8
  $list.SelectedIndex = 0
  $form.Controls.Add($list)
  $y = $y + $list.Height + 12
  $ok = New-Button 'Remember' ([System.Windows.Forms.DialogResult]::OK) 12
  $once = New-Button '{ALLOW_ONCE_LABEL}' ([System.Windows.Forms.DialogResult]::Cancel) 160
  $form.AcceptButton = $ok
  $form.CancelButton = $once
  $form.ActiveControl = $list
}} else {{
  $deny = New-Button 'Deny' ([System.Windows.Forms.DialogResult]::No) 12
  $allow = New-Button '{ALLOW_ONCE_LABEL}' ([System.Windows.Forms.DialogResult]::Yes) 120
  if ([bool]$req.withheld) {{ $allow.Enabled = $false; $allow.Visible = $false }}
  elseif ([bool]$req.remember) {{
    $keep = New-Button '{REMEMBER_BUTTON}' ([System.Windows.Forms.DialogResult]::Retry) 240
  }}
  $form.AcceptButton = $deny
  $form.CancelButton = $deny
  $form.ActiveControl = $deny
}}
$timer = New-Object System.Windows.Forms.Timer
$timer.Interval = [Math]::Max(1, [int]$req.seconds) * 1000
$timer.Add_Tick({{
  $form.DialogResult = [System.Windows.Forms.DialogResult]::Abort
  $form.Close()
}})
$timer.Start()
$result = $form.ShowDialog()
if ($result -eq [System.Windows.Forms.DialogResult]::Abort) {{ 'timeout' }}
elseif ($second) {{
  if ($result -eq [System.Windows.Forms.DialogResult]::OK -and $list.SelectedIndex -ge 0) {{
    'choice ' + [string]@($req.choices)[$list.SelectedIndex].key
  }} else {{ 'cancel' }}
}}
elseif ($result -eq [System.Windows.Forms.DialogResult]::Yes) {{ 'allow' }}
elseif ($result -eq [System.Windows.Forms.DialogResult]::Retry) {{ 'remember' }}
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
class PowerShell:
    binary: str
    name: str = "powershell"
    fit: Fit = POWERSHELL_FIT

    def argv(self) -> list[str]:
        """Identical for every request and both steps: the data goes on stdin."""
        return [self.binary, "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass",
                "-EncodedCommand", encoded_command()]  # fmt: skip

    def stdin(self, prompt: Prompt, offered: bool = False) -> bytes:
        text = first_text(prompt)
        check_fits(text, POWERSHELL_LIMITS)
        seconds = max(1, prompt.seconds_left)
        request = {"step": "first", "text": text, "seconds": seconds, "withheld": prompt.withheld,
                   "remember": offered and not prompt.withheld}  # fmt: skip
        return orjson.dumps(request)

    def second_stdin(self, step: SecondStep, seconds_left: int) -> bytes:
        check_fits(step.text, POWERSHELL_SECOND)
        rows = [{"key": c.key, "label": c.label} for c in step.choices]
        return orjson.dumps(
            {"step": "second", "text": step.text, "seconds": seconds_left, "choices": rows}
        )

    def env(self) -> dict[str, str]:
        keep = ("SystemRoot", "windir", "TEMP", "TMP", "USERPROFILE", "APPDATA", "LOCALAPPDATA")
        env = {k: os.environ[k] for k in keep if os.environ.get(k)}
        env["PATH"] = env.get("SystemRoot", "C:\\Windows") + "\\System32"
        return env

    async def show(self, prompt: Prompt) -> Verdict:
        return await run_two_steps(self, prompt, POWERSHELL_SECOND)

    async def first(self, prompt: Prompt, offered: bool) -> First:
        done = await run_dialog(self.argv(), self.env(), self.stdin(prompt, offered))
        if done.returncode != 0:
            return First.ERROR
        return by_word(done.first_line(), offered)

    async def second(self, step: SecondStep, seconds_left: int) -> str | None:
        done = await run_dialog(self.argv(), self.env(), self.second_stdin(step, seconds_left))
        line = done.first_line()
        if done.returncode != 0 or not line.startswith("choice "):
            return None  # cancelled or failed: Allow once (step 1 allowed)
        return line.removeprefix("choice ")
