"""Xvfb for the GUI tests, and xdotool / ImageMagick ``import`` against it.

``xvfb()`` starts a 1024x768 server and yields its DISPLAY once Xvfb says it is ready (it
writes its display number on -displayfd); ``window()`` waits for a dialog window by title.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.support.systools import required_tool

TITLE = "Agent Identity Protocol"
TOOLS = ("Xvfb", "zenity", "xdotool", "import")
SCREEN = (1024, 768)


@contextlib.contextmanager
def xvfb() -> Iterator[str]:
    for tool in TOOLS:
        required_tool(tool)
    read_fd, write_fd = os.pipe()
    size = f"{SCREEN[0]}x{SCREEN[1]}x24"
    with open(os.devnull, "wb") as devnull:
        server = subprocess.Popen(
            # -noreset: an X server resets when its last client leaves, and a client that
            # connects during the reset fails ("cannot open display"). Each xdotool run is a
            # client that leaves: back to back under load 11 % of connects failed (33 of
            # 300), none with -noreset. That was the GUI tests' zenity flake.
            [
                "Xvfb",
                "-displayfd",
                str(write_fd),
                "-noreset",
                "-screen",
                "0",
                size,
                "-nolisten",
                "tcp",
            ],
            pass_fds=(write_fd,),
            stdout=devnull,
            stderr=devnull,
            start_new_session=True,
        )
    os.close(write_fd)
    try:
        with os.fdopen(read_fd, "rb") as pipe:  # Xvfb writes the display number when ready
            number = pipe.readline().strip().decode()
        assert number, "Xvfb did not start"
        yield f":{number}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(5)


def xdo(display: str, *args: str) -> str:
    out = subprocess.run(
        ["xdotool", *args],
        env={**os.environ, "DISPLAY": display},
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return out.stdout


def wait_display(display: str, timeout_s: float = 10.0) -> None:
    """Until an X client can connect to ``display`` (xdotool answers its geometry)."""
    deadline = time.monotonic() + timeout_s
    while not xdo(display, "getdisplaygeometry").strip():
        if time.monotonic() > deadline:  # each xdotool run is itself the wait
            raise AssertionError(f"no X client can connect to {display}")


def window(
    display: str,
    timeout_s: float = 15,
    other_than: int = 0,
    ended: Callable[[], bool] | None = None,
) -> dict[str, int]:
    """A dialog window's id and geometry once it is mapped (not ``other_than``).

    ``ended``: True once the dialog is over without a window (zenity could not open the
    display: the ask already has its answer), so a caller's retry starts at once instead of
    after the whole ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        over = ended is not None and ended()  # before the search: a last look follows
        ids = [int(i) for i in xdo(display, "search", "--onlyvisible", "--name", TITLE).split()]
        ids = [i for i in ids if i != other_than]
        if ids:
            geo = xdo(display, "getwindowgeometry", "--shell", str(ids[0]))
            fields = dict(line.split("=", 1) for line in geo.splitlines() if "=" in line)
            if int(fields.get("WIDTH", "1")) > 1:
                return {k: int(v) for k, v in fields.items()}
        if over:
            raise AssertionError("the zenity dialog ended without a window")
        time.sleep(0.05)
    raise AssertionError("the zenity dialog never appeared")


def gone(display: str, window_id: int, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while str(window_id) in xdo(display, "search", "--onlyvisible", "--name", TITLE).split():
        assert time.monotonic() < deadline, "the dialog stayed on screen"
        time.sleep(0.05)


def screenshot(display: str, path: Path, crop: dict[str, int] | None = None) -> Path:
    """The whole screen, or only ``crop`` (a window's geometry with a 12 px margin)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["import", "-window", "root"]
    if crop is not None:
        x, y = max(0, crop["X"] - 12), max(0, crop["Y"] - 12)
        cmd += ["-crop", f"{crop['WIDTH'] + 24}x{crop['HEIGHT'] + 24}+{x}+{y}", "+repage"]
    subprocess.run(
        [*cmd, str(path)],
        env={**os.environ, "DISPLAY": display},
        check=True,
        timeout=20,
        capture_output=True,
    )
    return path
