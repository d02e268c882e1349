"""The real GUI path: zenity under Xvfb, answered with xdotool (click Allow, click Deny,
press Return = Deny). ``ZENITY_*`` variables in the approver's environment change nothing.
A screenshot of the dialog is saved to test-artifacts/ (git-ignored)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from aip.shared.outcomes import Outcome
from tests.support.approverproc import Approver, Dealer, short_dir
from tests.support.xdisplay import TITLE, screenshot, wait_display, window, xdo, xvfb

pytestmark = [pytest.mark.gui, pytest.mark.e2e]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    with xvfb() as name:
        yield name


def _screenshot(display: str, name: str) -> Path:
    return screenshot(display, ARTIFACTS / name)


@pytest.fixture
def approver(display: str) -> Iterator[Approver]:
    env = {**os.environ, "DISPLAY": display}
    # Each of these would turn Deny/Escape/close into "OK" if zenity inherited it.
    env.update(
        ZENITY_OK="7",
        ZENITY_CANCEL="0",
        ZENITY_ESC="0",
        DIALOG_CANCEL="0",
        DIALOG_ESC="0",
        ZENITY_TIMEOUT="0",
    )
    env.pop("WAYLAND_DISPLAY", None)
    with short_dir() as folder, Approver(folder, "zenity", timeout_s=20, env=env) as proc:
        yield proc.wait_ready()


def _ask(approver: Approver, display: str, **arguments: object) -> tuple[Dealer, dict[str, int]]:
    # Retries: zenity failed to open the display now and then (its Gtk said "cannot open
    # display"; the ask ends dialog_error and the slot is free again), twice in a row in CI:
    # Xvfb was resetting after its last client left (xdisplay.xvfb now runs it -noreset).
    # Kept as a guard: before a retry the display must take an X client; what the test
    # asserts about the dialog is unchanged, and a dialog that never appears three times
    # still fails.
    for attempt, wait_s in enumerate((15.0, 25.0, 25.0)):
        d = Dealer(approver.endpoint)
        try:
            d.hello(agent_id="agent-abc123", server="filesystem")
            d.ask(1, **arguments)
            return d, window(display, wait_s, ended=d.pending)
        except AssertionError:
            d.close()  # a dialog that never appeared must not leave its socket to the GC
            if attempt == 2:
                raise
            wait_display(display)
        except BaseException:
            d.close()
            raise
    raise AssertionError("unreachable")


@pytest.mark.parametrize("press", ["allow", "deny", "return"])
def test_zenity_dialog_answers(approver: Approver, display: str, press: str) -> None:
    args = (
        {"path": "/etc/config.yaml"}
        if press != "deny"
        else {
            "path": '<span foreground="green">/tmp/ok</span><span size="1">/home/u/.ssh/k</span>',
            "name": "invoice\u202efdp.sh\u200b\nline",
            "content": "A" * 100_000 + "; curl x|sh",
            "tool": "write\x1b[2J_file\u202e\n<b>ok</b>",  # the tool name itself
        }
    )
    d, win = _ask(approver, display, **args)
    try:
        shot = _screenshot(display, f"zenity-{press}.png")
        assert shot.stat().st_size > 0
        x, y, w, h = win["X"], win["Y"], win["WIDTH"], win["HEIGHT"]
        assert min(x, y) >= 0, "dialog off screen"
        assert x + w <= 1024, "buttons off screen"
        assert y + h <= 768, "buttons off screen"
        if press == "return":
            xdo(display, "windowfocus", "--sync", str(win["WINDOW"]))
            xdo(display, "key", "Return")
        else:
            # GTK puts Deny left of Allow at the bottom right of the dialog.
            bx = x + w - 50 if press == "allow" else x + w - 140
            xdo(display, "mousemove", "--sync", str(bx), str(y + h - 25), "click", "1")
        got = d.decision(15)
        expected = Outcome.HUMAN_APPROVED if press == "allow" else Outcome.DENIED_BY_USER
        assert got.outcome is expected
        assert got.human_decision is not None
    finally:
        d.close()


def test_a_killed_approver_takes_its_dialog_with_it(display: str) -> None:
    env = {**os.environ, "DISPLAY": display}
    with short_dir() as folder, Approver(folder, "zenity", timeout_s=20, env=env) as approver:
        approver.wait_ready()
        d, _ = _ask(approver, display)
        try:
            approver.proc.kill()  # SIGKILL: no chance to close the dialog itself
            deadline = time.monotonic() + 5
            while xdo(display, "search", "--onlyvisible", "--name", TITLE).split():
                assert time.monotonic() < deadline, "the orphaned dialog stayed on screen"
                time.sleep(0.05)
        finally:
            d.close()


@pytest.mark.parametrize("keys", ["return-then-escape", "tick-then-return"])
def test_a_long_request_scrolls_whole_and_allow_needs_the_box(
    approver: Approver, display: str, keys: str
) -> None:
    """Over 20 lines zenity shows the whole request in a scrolling text view fed on stdin
    (never argv); Return alone does not allow (without the box it would: measured), Allow
    needs "I have read the whole request" ticked."""
    decoys = {f"decoy{i:02}": "harmless" for i in range(12)}
    d, win = _ask(approver, display, **decoys, path="/home/u/.bashrc", content="A" * 20_000 + ";sh")
    try:
        x, y, w, h = win["X"], win["Y"], win["WIDTH"], win["HEIGHT"]
        assert min(x, y) >= 0
        assert x + w <= 1024
        assert y + h <= 768
        dialogs = [
            proc.cmdline()
            for proc in psutil.Process(approver.proc.pid).children(recursive=True)
            if "--text-info" in proc.cmdline()
        ]
        assert len(dialogs) == 1
        assert not any(";sh" in arg or "decoy" in arg for arg in dialogs[0])
        _screenshot(display, f"zenity-long-{keys}.png")
        xdo(display, "windowfocus", "--sync", str(win["WINDOW"]))
        if keys == "return-then-escape":
            xdo(display, "key", "Return", "Escape")
            expected = Outcome.DENIED_BY_USER
        else:
            xdo(display, "key", "Tab", "space", "Return")
            expected = Outcome.HUMAN_APPROVED
        assert d.decision(15).outcome is expected
    finally:
        d.close()
