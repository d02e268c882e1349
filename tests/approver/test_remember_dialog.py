"""The two-step dialog of issue 13: what each step says and offers, zenity run through a
stand-in program that records its command lines, the terminal on a pty, and the deadline
that covers both steps. The real zenity under Xvfb: tests/e2e/test_approval_gui.py."""

from __future__ import annotations

import asyncio
import dataclasses
import html
import os
import pty
from pathlib import Path

import psutil
import pytest

from aip.approver.dialogs.base import Prompt, check_fits
from aip.approver.dialogs.gui import MESSAGE_LIMITS, SECOND_LIMITS, ZENITY_FIT, Zenity, pango_text
from aip.approver.dialogs.kdialog_xdialog import XDIALOG_FIT, XDIALOG_LIMITS
from aip.approver.dialogs.remember_text import (
    REMEMBER_BUTTON,
    SCROLL_WHY_NOT,
    choices,
    first_text,
    offer_for,
    second_step,
    show_pattern,
)
from aip.approver.dialogs.render import UNLIMITED, WHOLE, DialogFacts, Fit, Limits, render
from aip.approver.dialogs.terminal import Terminal
from aip.approver.dialogs.verdict import (
    ALLOW_ONCE,
    DENY,
    Answer,
    Example,
    Remember,
    RememberOffer,
    Scope,
    Verdict,
)

PATTERN = r"/home/u/docs/[^/]+\.txt"
OFFER = RememberOffer(
    offered=True,
    like={"path": PATTERN},
    examples={"path": Example("/home/u/docs/a.txt", "/home/u/.ssh/id_rsa")},
)
EXACT_15 = Verdict(Answer.ALLOW, Remember(Scope.EXACT, 900))
DENY_15 = Verdict(Answer.DENY, Remember(Scope.EXACT, 900))


def _prompt(
    offer: RememberOffer = OFFER, fit: Fit = WHOLE, seconds: int = 30, **args: str
) -> Prompt:
    args = args or {"path": "/home/u/docs/a.txt"}
    shown = render(DialogFacts("write_file", "agent-1", "fs", "r", 1, seconds, 0), args, fit)
    return Prompt(1, "agent-1", "fs", "write_file", dict(args), shown.text, "r", seconds, 0,
                  scroll=shown.scroll, withheld=shown.withheld, remember=offer)  # fmt: skip


def test_choices_start_with_allow_once_and_deny_is_timed_only() -> None:
    rows = choices((Scope.EXACT, Scope.LIKE))
    assert rows[0].verdict == ALLOW_ONCE
    assert [r.key for r in rows] == [
        "once", "exact-900", "exact-3600", "exact-session", "like-900", "like-3600",
        "like-session", "deny-900", "deny-3600", "deny-like-900", "deny-like-3600"]  # fmt: skip
    assert rows[1].label == "Allow this exact call for 15 minutes"
    assert rows[6].verdict == Verdict(Answer.ALLOW, Remember(Scope.LIKE, None))
    assert rows[8].verdict == Verdict(Answer.DENY, Remember(Scope.EXACT, 3600))
    assert rows[-1].verdict == Verdict(Answer.DENY, Remember(Scope.LIKE, 3600))
    assert rows[-1].label == "Deny calls like this, don't ask again for 1 hour"
    assert [r.key for r in choices((Scope.EXACT,))][-2:] == ["deny-900", "deny-3600"]
    assert not any(r.key.startswith("like") for r in choices((Scope.EXACT,)))


def test_step_one_says_why_remembering_is_not_offered() -> None:
    prompt = _prompt(RememberOffer(offered=False, why_not="the value holds a shell operator ;"))
    text = first_text(prompt)
    assert text.startswith(prompt.text)
    assert text.endswith("\n\nRemembering is not offered: the value holds a shell operator ;.")
    assert first_text(_prompt()) == _prompt().text  # offered: the button says it
    hostile = _prompt(RememberOffer(offered=False, why_not="a\\n<b>\u202e" + "x" * 500))
    note = first_text(hostile)[len(hostile.text) :]
    assert "\\" not in note
    assert "\u202e" not in note
    assert len(note.split("\n")) <= 4  # blank + at most two lines: the reserve


def test_withheld_and_scrolling_prompts_offer_nothing() -> None:
    withheld = _prompt(fit=Fit(Limits(400, 20)), content="A" * 5000)
    assert withheld.withheld
    assert not offer_for(withheld).offered
    assert first_text(withheld) == withheld.text
    scrolled = _prompt(fit=ZENITY_FIT, content="A" * 5000)
    assert scrolled.scroll
    assert offer_for(scrolled) == RememberOffer(offered=False, why_not=SCROLL_WHY_NOT)
    assert first_text(scrolled).startswith("Remembering is not offered: this request is shown")


def test_step_two_shows_each_pattern_verbatim_with_its_examples() -> None:
    step = second_step(_prompt(), 42, SECOND_LIMITS)
    lines = step.text.split("\n")
    assert f"  path: {PATTERN}" in lines
    assert "      matches: /home/u/docs/a.txt" in lines
    assert "      does not match: /home/u/.ssh/id_rsa" in lines
    assert "auto-deny in 42 s." in step.text
    assert step.verdict("like-3600") == Verdict(Answer.ALLOW, Remember(Scope.LIKE, 3600))
    assert step.verdict(None) == ALLOW_ONCE
    assert step.verdict("forever") == ALLOW_ONCE
    assert show_pattern("a\u202eb\n") == '"a\\u202eb\\n" (JSON-escaped)'
    assert show_pattern(" x") == '" x" (JSON-escaped)'  # edge spaces would be invisible


def test_patterns_that_do_not_fit_whole_are_not_offered() -> None:
    offer = dataclasses.replace(OFFER, like={"path": "/x/" + "a" * 2000})
    step = second_step(_prompt(offer), 30, SECOND_LIMITS)
    assert "a" * 100 not in step.text
    assert "Calls like this: not offered" in step.text
    assert not any(c.key.startswith("like") for c in step.choices)
    whole = second_step(_prompt(offer), 30, UNLIMITED).text  # a terminal shows it whole
    assert "a" * 2000 in whole.replace("\n    ", "")
    exact_only = dataclasses.replace(OFFER, exact_only=True)
    assert not any(
        c.key.startswith("like") for c in second_step(_prompt(exact_only), 30, UNLIMITED).choices
    )


def test_pango_text_survives_g_strcompress_and_markup() -> None:
    raw = 'p: <b>x</b> a\\nb & "q"'
    escaped = pango_text(raw)
    assert "<" not in escaped
    assert escaped.replace("\\\\", "\\") == html.escape(raw, quote=True)


def _stand_in(tmp_path: Path, first: str, second: str) -> Path:
    """A zenity that records each call's argv and answers step 1 / step 2 as told."""
    fake = tmp_path / "zenity"
    fake.write_text(
        "#!/bin/sh\n"
        f'n=$(ls {tmp_path} | grep -c argv); printf "%s\\n" "$@" > {tmp_path}/argv$n\n'
        f'case " $* " in *" --list "*) {second} ;; *) {first} ;; esac\n'
    )
    fake.chmod(0o755)
    return fake


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        (f"echo '{REMEMBER_BUTTON}'; exit 1", "echo exact-900", EXACT_15),
        (f"echo '{REMEMBER_BUTTON}'; exit 1", "echo deny-900", DENY_15),
        (f"echo '{REMEMBER_BUTTON}'; exit 1", "exit 1", ALLOW_ONCE),  # cancel: Allow once
        (f"echo '{REMEMBER_BUTTON}'; exit 1", "echo; exit 0", ALLOW_ONCE),  # nothing chosen
        ("exit 0", "echo exact-900", ALLOW_ONCE),
        ("exit 1", "echo exact-900", DENY),
    ],
)  # fmt: skip
async def test_zenity_two_steps(tmp_path: Path, first: str, second: str, expected: Verdict) -> None:
    fake = _stand_in(tmp_path, first, second)
    assert await Zenity(str(fake)).show(_prompt(fit=ZENITY_FIT)) == expected
    step1 = (tmp_path / "argv0").read_text().splitlines()
    assert step1[:3] == ["--question", "--no-markup", "--default-cancel"]
    assert step1[step1.index("--extra-button") + 1] == REMEMBER_BUTTON
    assert step1[step1.index("--ok-label") + 1] == "Allow once"
    if (tmp_path / "argv1").exists():
        step2 = (tmp_path / "argv1").read_text()
        assert "--no-markup" not in step2  # not a --list option: the text is escaped
        assert "/home/u/docs/[^/]+\\\\.txt" in step2  # backslash doubled for g_strcompress
        assert "Allow this exact call for 15 minutes" in step2


async def test_zenity_not_offered_has_no_third_button(tmp_path: Path) -> None:
    fake = _stand_in(tmp_path, f"echo '{REMEMBER_BUTTON}'; exit 1", "echo exact-900")
    offer = RememberOffer(offered=False, why_not="a DLP hit")
    assert await Zenity(str(fake)).show(_prompt(offer, fit=ZENITY_FIT)) == DENY
    argv = (tmp_path / "argv0").read_text()
    assert "--extra-button" not in argv
    assert "Remembering is not offered: a DLP hit." in argv
    assert not (tmp_path / "argv1").exists()


async def test_the_deadline_kills_the_second_dialog(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    second = f"echo $$ > {pid_file}.tmp; mv {pid_file}.tmp {pid_file}; exec sleep 60"
    fake = _stand_in(tmp_path, f"echo '{REMEMBER_BUTTON}'; exit 1", second)
    task = asyncio.ensure_future(Zenity(str(fake)).show(_prompt(fit=ZENITY_FIT, seconds=7)))
    async with asyncio.timeout(10):
        while not pid_file.exists():  # noqa: ASYNC110 - another process writes it
            await asyncio.sleep(0.01)
    pid = int(pid_file.read_text())
    assert "auto-deny in " in (tmp_path / "argv1").read_text()
    task.cancel()  # what the scheduler's asyncio.timeout_at does at the deadline
    await asyncio.wait([task])
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


async def _until(master: int, needle: bytes) -> bytes:
    seen = b""
    async with asyncio.timeout(10):
        while needle not in seen:
            await asyncio.sleep(0.01)
            seen += os.read(master, 65536)
    return seen


@pytest.mark.parametrize(
    ("typed", "expected"),
    [(b"2\n", EXACT_15), (b"\n", ALLOW_ONCE), (b"99\n", ALLOW_ONCE), (b"8\n", DENY_15)],
)  # fmt: skip
async def test_terminal_two_steps(typed: bytes, expected: Verdict) -> None:
    master, slave = pty.openpty()
    out = os.fdopen(os.dup(slave), "w")
    try:
        task = asyncio.ensure_future(Terminal(stdin_fd=slave, out=out).show(_prompt()))
        assert b'"remember"' in await _until(master, b"anything else denies: ")
        os.write(master, b"remember\n")
        seen = await _until(master, b"anything else allows once: ")
        assert b"  1) Allow once, remember nothing" in seen
        assert f"  path: {PATTERN}".encode() in seen
        assert b"(auto-deny in " in seen
        os.write(master, typed)
        assert await task == expected
    finally:
        out.close()
        os.close(master)
        os.close(slave)


async def test_a_second_step_that_cannot_open_the_display_is_started_again(
    tmp_path: Path,
) -> None:
    flaky = (
        f"if [ -e {tmp_path}/tried ]; then echo exact-900; else touch {tmp_path}/tried; "
        "echo 'Gtk-WARNING: cannot open display: :9' >&2; exit 1; fi"
    )
    fake = _stand_in(tmp_path, f"echo '{REMEMBER_BUTTON}'; exit 1", flaky)
    assert await Zenity(str(fake)).show(_prompt(fit=ZENITY_FIT)) == EXACT_15
    always = "echo 'Gtk-WARNING: cannot open display: :9' >&2; exit 1"
    (tmp_path / "tried").unlink()
    fake = _stand_in(tmp_path, f"echo '{REMEMBER_BUTTON}'; exit 1", always)
    assert await Zenity(str(fake)).show(_prompt(fit=ZENITY_FIT)) == ALLOW_ONCE  # step 1 allowed


@pytest.mark.parametrize("size", [0, 40, 99, 100, 101, 500, 100_000])
def test_the_note_always_fits_the_room_kept_for_it(size: int) -> None:
    """A request at the body's limit plus the longest note still fits every dialog."""
    why = ("w" * 7 + " ") * (size // 8) + "\\" * (size % 8)
    for limits, fit in ((MESSAGE_LIMITS, ZENITY_FIT), (XDIALOG_LIMITS, XDIALOG_FIT)):
        body = "\n".join(["x" * 70] * (fit.dialog.lines - 1) + ["y"])
        body = body[: fit.dialog.chars]
        assert fit.dialog.holds(body.split("\n"))
        prompt = dataclasses.replace(
            _prompt(), text=body, remember=RememberOffer(offered=False, why_not=why or "x")
        )
        check_fits(first_text(prompt), limits)
