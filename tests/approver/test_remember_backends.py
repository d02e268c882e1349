"""The two steps on kdialog, Xdialog, osascript and PowerShell (none can run here): each is
run through a stand-in program that records its command line and stdin and answers as the
real one does; the assertions are on what the real program would be given."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aip.approver.dialogs.base import Prompt
from aip.approver.dialogs.gui import Zenity
from aip.approver.dialogs.kdialog_xdialog import KDIALOG_FIT, XDIALOG_FIT, Kdialog, Xdialog
from aip.approver.dialogs.native import OSA_SCRIPT, OSA_SECOND_SCRIPT, OSASCRIPT_FIT, Osascript
from aip.approver.dialogs.powershell import POWERSHELL_FIT, POWERSHELL_SCRIPT, PowerShell
from aip.approver.dialogs.render import DialogFacts, Fit, render
from aip.approver.dialogs.verdict import (
    ALLOW_ONCE,
    DENY,
    ERROR,
    Answer,
    Example,
    Remember,
    RememberOffer,
    Scope,
    Verdict,
)

OFFER = RememberOffer(
    offered=True,
    like={"path": r"/home/u/docs/[^/]+\.txt"},
    examples={"path": Example("/home/u/docs/a.txt", "/home/u/.ssh/id_rsa")},
)
EXACT_15 = Verdict(Answer.ALLOW, Remember(Scope.EXACT, 900))
LIKE_1H = Verdict(Answer.ALLOW, Remember(Scope.LIKE, 3600))
DENY_15 = Verdict(Answer.DENY, Remember(Scope.EXACT, 900))
EXACT_LABEL = "Allow this exact call for 15 minutes"


def _prompt(fit: Fit, offer: RememberOffer = OFFER) -> Prompt:
    args = {"path": "/home/u/docs/a.txt", "note": '<b>x</b> & \\n "q"'}
    shown = render(DialogFacts("write_file", "agent-1", "fs", "r", 1, 30, 0), args, fit)
    return Prompt(1, "agent-1", "fs", "write_file", dict(args), shown.text, "r", 30, 0,
                  scroll=shown.scroll, withheld=shown.withheld, remember=offer)  # fmt: skip


def _stand_in(tmp_path: Path, *answers: str) -> Path:
    """Call N records argvN and stdinN, then runs ``answers[N]`` (shell)."""
    cases = "".join(f"  {n}) {answer} ;;\n" for n, answer in enumerate(answers))
    fake = tmp_path / "dialog"
    fake.write_text(
        "#!/bin/sh\n"
        f"n=$(/bin/ls {tmp_path} | /bin/grep -c '^argv'); "  # PowerShell's PATH is Windows'

        f'printf "%s\\0" "$@" > {tmp_path}/argv$n; /bin/cat > {tmp_path}/stdin$n\n'
        f'case $n in\n{cases}  *) exit 9 ;;\nesac\n'
    )  # fmt: skip
    fake.chmod(0o755)
    return fake


def _argv(tmp_path: Path, n: int) -> list[str]:
    return (tmp_path / f"argv{n}").read_text().split("\0")[:-1]


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        (("echo remember", "echo like-3600"), LIKE_1H),
        (("echo remember", "exit 1"), ALLOW_ONCE),  # step 2 cancelled
        (("echo allow",), ALLOW_ONCE),
        (("echo deny",), DENY),  # Return: Deny is preselected
        (("exit 2",), DENY),  # Escape
        (("exit 134",), ERROR),  # no display: SIGABRT
    ],
)
async def test_kdialog(tmp_path: Path, answers: tuple[str, ...], expected: Verdict) -> None:
    fake = _stand_in(tmp_path, *answers)
    assert await Kdialog(str(fake)).show(_prompt(KDIALOG_FIT)) == expected
    step1 = _argv(tmp_path, 0)
    assert step1[step1.index("--radiolist") + 2 :] == [
        "deny", "Deny", "on", "allow", "Allow once", "off", "remember", "Allow and remember\u2026",
        "off"]  # fmt: skip
    if len(answers) > 1:
        step2 = _argv(tmp_path, 1)
        text = step2[step2.index("--radiolist") + 1]
        assert text.startswith("<qt>")
        assert "\\" not in text
        assert "/home/u/docs/[^/]+&#92;.txt" in text  # the pattern, escaped for Qt only
        rows = step2[step2.index("--radiolist") + 2 :]
        assert rows[:6] == ["once", "Allow once, remember nothing", "on", "exact-900",
                            EXACT_LABEL, "off"]  # fmt: skip
        assert rows.count("on") == 1
        assert step2[step2.index("--cancel-label") + 1] == "Allow once"


async def test_kdialog_not_offered_is_deny_or_allow_once(tmp_path: Path) -> None:
    fake = _stand_in(tmp_path, "echo remember")  # a row it was never shown
    offer = RememberOffer(offered=False, why_not="a DLP hit")
    assert await Kdialog(str(fake)).show(_prompt(KDIALOG_FIT, offer)) == DENY
    step1 = _argv(tmp_path, 0)
    assert "remember" not in step1
    assert "Remembering is not offered: a DLP hit." in step1[step1.index("--radiolist") + 1]


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        (("echo remember", "echo deny-900"), DENY_15),
        (("echo remember", "exit 1"), ALLOW_ONCE),
        (("echo deny",), DENY),
        (("exit 1",), DENY),
        (("exit 255",), ERROR),
    ],
)
async def test_xdialog(tmp_path: Path, answers: tuple[str, ...], expected: Verdict) -> None:
    fake = _stand_in(tmp_path, *answers)
    assert await Xdialog(str(fake)).show(_prompt(XDIALOG_FIT)) == expected
    step1 = _argv(tmp_path, 0)
    assert "--stdout" in step1
    assert step1[-9:] == ["deny", "Deny", "on", "allow", "Allow once", "off", "remember",
                          "Allow and remember\u2026", "off"]  # fmt: skip
    if len(answers) > 1:
        step2 = "\0".join(_argv(tmp_path, 1))
        assert "\\" not in step2
        assert "/home/u/docs/[^/]+\uff3c.txt" in step2  # Xdialog's lookalike, with its legend
        assert "(\uff3c = backslash)" in step2


async def test_xdialog_not_offered_keeps_yesno_with_deny_default(tmp_path: Path) -> None:
    fake = _stand_in(tmp_path, "exit 0")
    offer = RememberOffer(offered=False, why_not="a DLP hit")
    assert await Xdialog(str(fake)).show(_prompt(XDIALOG_FIT, offer)) == ALLOW_ONCE
    step1 = _argv(tmp_path, 0)
    assert "--default-no" in step1
    assert step1[step1.index("--ok-label") + 1] == "Allow once"


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        (("echo remember", f"echo 'choice {EXACT_LABEL}'"), EXACT_15),
        (("echo remember", "echo cancel"), ALLOW_ONCE),
        (("echo remember", "echo 'choice Allow forever'"), ALLOW_ONCE),  # not a row
        (("echo allow",), ALLOW_ONCE),
        (("echo deny",), DENY),
        (("echo timeout",), ERROR),
    ],
)
async def test_osascript(tmp_path: Path, answers: tuple[str, ...], expected: Verdict) -> None:
    fake = _stand_in(tmp_path, *answers)
    prompt = _prompt(OSASCRIPT_FIT)
    assert await Osascript(str(fake)).show(prompt) == expected
    assert _argv(tmp_path, 0) == ["-", prompt.text, "30", "remember"]
    assert (tmp_path / "stdin0").read_text() == OSA_SCRIPT  # the script is a constant
    if len(answers) > 1:
        step2 = _argv(tmp_path, 1)
        assert (tmp_path / "stdin1").read_text() == OSA_SECOND_SCRIPT
        assert step2[0] == "-"
        assert "  path: /home/u/docs/[^/]+\\.txt" in step2[1]  # verbatim: data only in argv
        assert step2[2:4] == ["Allow once, remember nothing", EXACT_LABEL]


def test_osascript_scripts_keep_the_three_button_limit() -> None:
    assert 'buttons choices ¬\n      default button "Deny" cancel button "Deny"' in OSA_SCRIPT
    assert '{"Deny", "Allow once", rememberLabel}' in OSA_SCRIPT
    assert "character id 8230" in OSA_SCRIPT
    assert "\u2026" not in OSA_SCRIPT  # compared to the button as character id 8230
    assert "default items {item 1 of labels}" in OSA_SECOND_SCRIPT
    assert 'cancel button name "Allow once"' in OSA_SECOND_SCRIPT


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        (("echo remember", "echo 'choice deny-900'"), DENY_15),
        (("echo remember", "echo cancel"), ALLOW_ONCE),
        (("echo remember", "exit 1"), ALLOW_ONCE),
        (("echo allow",), ALLOW_ONCE),
        (("echo deny",), DENY),
        (("exit 1",), ERROR),
    ],
)
async def test_powershell(tmp_path: Path, answers: tuple[str, ...], expected: Verdict) -> None:
    fake = _stand_in(tmp_path, *answers)
    prompt = _prompt(POWERSHELL_FIT)
    assert await PowerShell(str(fake)).show(prompt) == expected
    first = json.loads((tmp_path / "stdin0").read_text())
    assert first == {"step": "first", "text": prompt.text, "seconds": 30, "withheld": "",
                     "remember": True}  # fmt: skip
    if len(answers) > 1:
        assert _argv(tmp_path, 1) == _argv(tmp_path, 0)  # one constant command line
        second = json.loads((tmp_path / "stdin1").read_text())
        assert second["step"] == "second"
        assert second["choices"][0] == {"key": "once", "label": "Allow once, remember nothing"}
        assert "  path: /home/u/docs/[^/]+\\.txt" in second["text"]


def test_powershell_script_defaults() -> None:
    assert "$form.AcceptButton = $deny" in POWERSHELL_SCRIPT
    assert "$form.CancelButton = $deny" in POWERSHELL_SCRIPT
    assert "$list.SelectedIndex = 0" in POWERSHELL_SCRIPT
    assert "$form.CancelButton = $once" in POWERSHELL_SCRIPT
    assert "[System.Windows.Forms.DialogResult]::Retry) { 'remember' }" in POWERSHELL_SCRIPT


async def test_a_withheld_prompt_is_deny_only_and_offers_nothing(tmp_path: Path) -> None:
    big = Fit(KDIALOG_FIT.dialog)
    args = {"content": "A" * 5000}
    shown = render(DialogFacts("write_file", "agent-1", "fs", "r", 1, 30, 0), args, big)
    prompt = Prompt(1, "agent-1", "fs", "write_file", args, shown.text, "r", 30, 0,
                    withheld=shown.withheld, remember=OFFER)  # fmt: skip
    assert prompt.withheld
    for backend in (Zenity, Kdialog, Xdialog):  # their one button, "Deny", exits 0
        folder = tmp_path / backend.__name__
        folder.mkdir()
        fake = _stand_in(folder, "exit 0")
        assert await backend(str(fake)).show(prompt) == DENY
        assert "remember" not in " ".join(_argv(folder, 0)).lower()
