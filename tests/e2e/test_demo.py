"""``scripts/demo`` shows a real ask: with no approver running, no display but a terminal, it
starts a private ``aip-approver --dialog auto`` whose prompt is answered on the demo's own
terminal (a pty here); with neither, asks are denied at once and the hint says what to do."""

from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.approverproc import Approver, answer_program, short_dir  # noqa: E402
from tests.support.fdwait import readable  # noqa: E402

pytestmark = pytest.mark.e2e

PROMPT = b"anything else denies: "
BANNER = b"Agent Identity Protocol"


def _env(runtime: Path) -> dict[str, str]:
    """No AIP_* settings, no display, and a private runtime dir: no approver is reachable."""
    env = {
        k: v
        for k, v in os.environ.items()
        if (not k.startswith("AIP_") or k == "AIP_FORK_SERVER")  # off: leave no server behind
        and k not in ("DISPLAY", "WAYLAND_DISPLAY")
    }
    env["XDG_RUNTIME_DIR"] = str(runtime)
    return env


class Terminal:
    """The demo on a pty: everything it (and its approver) prints, read with deadlines."""

    def __init__(self, env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "demo")],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
        )
        os.close(slave)
        self.seen = b""

    def read_until(self, needle: bytes, count: int, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while self.seen.count(needle) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"never saw {needle!r} x{count}:\n{self.text()}"
            if readable(self.master, left):
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # EIO: every writer closed the pty
                    chunk = b""
                assert chunk, f"demo closed its terminal; output:\n{self.text()}"
                self.seen += chunk

    def drain_until_exit(self, timeout_s: float = 30) -> int:
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"demo still running:\n{self.text()}"
            if readable(self.master, min(left, 0.2)):
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:
                    chunk = b""
                self.seen += chunk
                if chunk:
                    continue
            code = self.proc.poll()
            if code is not None:
                return code

    def text(self) -> str:
        plain = re.sub(rb"\x1b\[[0-9;]*m", b"", self.seen)  # the demo colours a terminal
        return plain.replace(b"\r\n", b"\n").decode(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)
        os.close(self.master)


def test_demo_asks_at_the_terminal_prompt() -> None:
    with short_dir() as runtime:
        term = Terminal(_env(runtime))
        try:
            # The demo's three asks: write elsewhere, climb out of /tmp/aip-demo, INSERT.
            for n, answer in enumerate((b"allow\n", b"d\n", b"allow\n"), start=1):
                term.read_until(PROMPT, n)
                os.write(term.master, answer)
            assert term.drain_until_exit() == 0, term.text()
        finally:
            term.close()
    out = term.text()
    print(out)  # shown when the test fails
    assert "started a private one; answer each ask at the prompt below" in out
    # The call is announced before the approver's prompt, never in the middle of it.
    first = out.index("write elsewhere (asks a human): write_file(")
    assert first < out.index(BANNER.decode()) < out.index("path: /etc/config.yaml")
    after = out[first:]
    assert "[allow]" in after
    assert "ALLOWED -> wrote 11 bytes to /etc/config.yaml" in after
    assert "BLOCKED -32002 Human approval denied [denied_by_user]" in after
    assert "ALLOWED -> INSERT 0 1 (id 4)" in after
    assert '"reason": "human approved"' in after  # the private approver's central log
    assert "asks were denied at once" not in out


def test_demo_without_display_or_terminal_denies_asks_at_once() -> None:
    with short_dir() as runtime:
        done = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "demo")],
            capture_output=True,
            text=True,
            timeout=120,
            env=_env(runtime),
            stdin=subprocess.DEVNULL,
            check=False,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "BLOCKED -32002 Human approval unavailable [approver_unavailable]" in out
    assert "try scripts/demo --answer allow" in out
    assert "private" not in out


def test_demo_uses_a_running_approver() -> None:
    with short_dir() as folder:
        prog = answer_program(folder, "allow")
        with Approver(folder, f"exec:{prog}").wait_ready() as approver:
            env = {**_env(folder), "AIP_APPROVER_ENDPOINT": approver.endpoint}
            done = subprocess.run(
                [sys.executable, str(ROOT / "scripts" / "demo")],
                capture_output=True,
                text=True,
                timeout=120,
                env=env,
                stdin=subprocess.DEVNULL,
                check=False,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            human = [r for r in approver.decisions() if r["reason"] == "human approved"]
    out = done.stdout
    assert "asks go to your running aip-approver" in out
    assert "ALLOWED -> INSERT 0 1 (id 4)" in out
    assert len(human) == 3  # the demo's three asks reached that approver
