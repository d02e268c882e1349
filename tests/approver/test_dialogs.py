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

from aip.approver.dialogs.base import Answer, Prompt, gui_env
from aip.approver.dialogs.choose import choose
from aip.approver.dialogs.exec_program import ExecProgram
from aip.approver.dialogs.gui import Kdialog, Xdialog, Zenity
from aip.approver.dialogs.native import OSA_SCRIPT, POWERSHELL_SCRIPT, Osascript, PowerShell
from aip.approver.dialogs.render import DialogFacts, dialog_text
from aip.approver.dialogs.terminal import Terminal
from aip.shared.errors import ConfigError
from aip.shared.outcomes import Outcome
from tests.support.approverproc import answer_program

PAYLOAD = '"& do shell script "touch /tmp/pwn" <b>x</b> & \\n $(id) `id` %PATH% \''


def _prompt(value: str = PAYLOAD, seconds: int = 30) -> Prompt:
    args = {"path": value}
    text = dialog_text(DialogFacts("write_file", "agent-1", "fs", "r", 1, seconds, 0), args)
    return Prompt(
        1, "agent-1", "fs", "write_file", {"path": json.dumps(value)}, text, "r", seconds, 0
    )


def test_zenity_command_line() -> None:
    prompt = _prompt()
    argv = Zenity("/usr/bin/zenity").argv(prompt)
    assert argv[:4] == ["/usr/bin/zenity", "--question", "--no-markup", "--default-cancel"]
    assert argv[argv.index("--title") + 1] == "Agent Identity Protocol"
    assert argv[argv.index("--ok-label") + 1] == "Allow"
    assert argv[argv.index("--cancel-label") + 1] == "Deny"
    assert argv[-2:] == ["--text", prompt.text]


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
    assert argv[-6:] == ["deny", "Deny", "on", "allow", "Allow", "off"]


def test_xdialog_text_is_capped_and_has_no_backslash() -> None:
    prompt = _prompt("x\\n" + "A" * 3000 + "TAIL-VISIBLE")
    argv = Xdialog("/usr/bin/Xdialog").argv(prompt)
    text = argv[argv.index("--yesno") + 1]
    assert "\\" not in text
    assert len(text.encode()) <= 1600
    assert "TAIL-VISIBLE" in text
    assert text.endswith("(\uff3c = backslash)")
    assert "--default-no" in argv


def test_osascript_script_is_constant_and_data_is_argv() -> None:
    prompt = _prompt()
    backend = Osascript()
    argv = backend.argv(prompt)
    assert argv == ["/usr/bin/osascript", "-", prompt.text, "30"]
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
    assert await backend.show(_prompt()) is Answer.ALLOW
    env = dict(line.split("=", 1) for line in env_out.read_text().splitlines() if "=" in line)
    assert env["PATH"] == "/usr/bin:/bin"
    assert env["AIP_TEST_X"] == "1"
    assert "ZENITY_OK" not in env
    assert "SECRET_TOKEN" not in env
    lines = stdin_out.read_text().splitlines()
    assert len(lines) == 1
    request = json.loads(lines[0])
    assert set(request) == {
        "v",
        "request_id",
        "agent_id",
        "server",
        "tool",
        "arguments",
        "text",
        "rule",
        "seconds_left",
        "queue_position",
    }
    assert request["text"].startswith("The agent wants to call:")


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
    assert await backend.show(_prompt()) is expected


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
    return path.exists()


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
        assert await task is Answer.DENY
        task = asyncio.ensure_future(backend.show(_prompt()))
        seen = b""
        async with asyncio.timeout(10):
            while b"anything else denies" not in seen:
                await asyncio.sleep(0.01)
                seen += os.read(master, 65536)
        os.write(master, b"allow\n")
        assert await task is Answer.ALLOW
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
