"""``auto`` without a display but on a terminal: the approver asks on its own TTY (like
polkit's text agent). A real approver process on a pty; the test types the answers."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import time

import pytest

from aip.shared.outcomes import Outcome
from tests.support.approverproc import READY, Dealer, short_dir, wait_for
from tests.support.fdwait import readable

pytestmark = pytest.mark.e2e


def _read_until(fd: int, needle: bytes, timeout_s: float = 10) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout_s
    while needle not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"never saw {needle!r} in {seen[-500:]!r}"
        if readable(fd, left):
            seen += os.read(fd, 65536)
    return seen


def test_auto_uses_the_terminal_without_a_display() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    with short_dir() as folder:
        env["AIP_AUDIT_LOG"] = str(folder / "audit.jsonl")
        endpoint = f"ipc://{folder}/run/approver.sock"
        master, slave = pty.openpty()
        log_path = folder / "approver.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "aip.approver", "--endpoint", endpoint, "--timeout", "20"],
                stdin=slave,
                stdout=slave,
                stderr=log,
                env=env,
                start_new_session=True,
            )
        os.close(slave)
        try:
            wait_for(lambda: READY in log_path.read_text(), 10, "readiness")
            assert "backend=terminal" in log_path.read_text()
            with Dealer(endpoint) as d:
                d.hello(agent_id="agent-ssh")
                d.ask(1, path="/etc/hosts")
                shown = _read_until(master, b"anything else denies: ")
                assert b"Tool: write_file" in shown
                assert b"path: /etc/hosts" in shown
                os.write(master, b"allow\n")
                assert d.decision().outcome is Outcome.HUMAN_APPROVED
                d.ask(2)
                _read_until(master, b"anything else denies: ")
                os.write(master, b"y\n")
                assert d.decision().outcome is Outcome.DENIED_BY_USER
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
            os.close(master)
