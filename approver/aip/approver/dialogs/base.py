"""What every dialog backend shares: the prompt, the answer, and running a dialog process.

A dialog process runs in its own session (process group) with an allowlisted environment;
when its ask is cancelled or reaches its deadline the whole group is killed. Only an exit
code of 0 plus the backend's own success token counts as Allow; everything else denies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from aip.approver.dialogs.render import Fit, Limits
from aip.approver.dialogs.spawn import FAST_PATH, spawn_and_wait
from aip.approver.dialogs.verdict import NOT_OFFERED, RememberOffer, Verdict

log = logging.getLogger(__name__)

SAFE_PATH: Final = "/usr/bin:/bin"
MAX_OUTPUT_BYTES: Final = 64 * 1024
MAX_STDERR_BYTES: Final = 8 * 1024
REAP_S: Final = 2.0
# What a GUI dialog needs to reach the desktop; nothing else is inherited (zenity reads exit
# codes from ZENITY_*/DIALOG_* variables; GTK_MODULES, LD_PRELOAD, QT_* load code).
GUI_ENV_KEYS: Final = (
    "DISPLAY",
    "WAYLAND_DISPLAY",
    "XAUTHORITY",
    "XDG_RUNTIME_DIR",
    "XDG_SESSION_TYPE",
    "DBUS_SESSION_BUS_ADDRESS",
    "HOME",
    "LANG",
)


@dataclass(frozen=True, slots=True)
class Prompt:
    """One ask as a backend sees it; ``text`` is the escaped dialog body, sized by the
    renderer for the backend's ``fit`` (render.Rendering): show all of it or nothing."""

    request_id: str | int
    agent_id: str
    server: str
    tool: str
    arguments: dict[str, str]  # every name -> display text (escaped, head + tail)
    text: str
    rule: str
    seconds_left: int
    queue_position: int  # asks waiting behind this one
    scroll: bool = False  # ``text`` goes into the backend's scrolling view
    withheld: str = ""  # why Allow is withheld: show only Deny (any answer is a deny)
    remember: RememberOffer = NOT_OFFERED  # the second step of "Allow and remember…"
    kind: str = "ask"  # "pair": a remote device asks to be paired (text says which, key)


class TextTooLarge(ValueError):
    """A backend got more text than its ``fit``: a renderer bug, shown as a dialog error."""


def check_fits(text: str, limits: Limits) -> None:
    """Backends never cut: a text over their limit is refused (the ask ends dialog_error)."""
    lines = text.split("\n")
    if not limits.holds(lines):
        raise TextTooLarge(f"{limits.size(text)} chars in {len(lines)} lines over {limits}")


class Backend(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def fit(self) -> Fit:
        """How much text this backend shows whole; the renderer never gives it more."""
        ...

    async def show(self, prompt: Prompt) -> Verdict:
        """Show the dialog until answered. Cancellation (deadline, cancel) closes it."""
        ...


def gui_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    source = os.environ if base is None else base
    env = {key: source[key] for key in GUI_ENV_KEYS if source.get(key)}
    env.setdefault("LANG", "C.UTF-8")
    env["PATH"] = SAFE_PATH
    return env


def binary_problem(path: Path) -> str | None:
    """A dialog binary must be owned by root or us and not group/world-writable."""
    try:
        st = path.stat()
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    if st.st_uid not in (0, os.getuid()):
        return f"{path} is owned by uid {st.st_uid}"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path} is group/world-writable"
    if not os.access(path, os.X_OK):
        return f"{path} is not executable"
    return None


@dataclass(frozen=True, slots=True)
class Finished:
    returncode: int
    stdout: bytes
    stderr: bytes = b""

    def first_line(self) -> str:
        return self.stdout.split(b"\n", 1)[0].decode("utf-8", "replace").strip()


async def run_dialog(
    argv: list[str],
    env: dict[str, str],
    stdin_data: bytes | None = None,
) -> Finished:
    """Run one dialog process to completion. If the caller is cancelled (deadline, cancel,
    shutdown) the process group is killed before this returns."""
    if FAST_PATH:
        rc, out, err = await spawn_and_wait(
            argv, env, stdin_data, MAX_OUTPUT_BYTES, MAX_STDERR_BYTES, REAP_S
        )
        return Finished(rc, out, err)
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin_data is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        start_new_session=True,  # own group: killpg reaches whatever it starts
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    helpers: list[asyncio.Future[Any]] = []
    try:
        if stdin_data is not None and proc.stdin is not None:
            # Written asynchronously: a program that never reads stdin must not block us.
            helpers.append(asyncio.ensure_future(_feed(proc.stdin, stdin_data)))
        err_reader = asyncio.ensure_future(_read_bounded(proc.stderr, MAX_STDERR_BYTES))
        helpers.append(err_reader)
        out = await _read_bounded(proc.stdout, MAX_OUTPUT_BYTES)
        err = await err_reader
        return Finished(await proc.wait(), out, err or b"")
    finally:
        # Always: the leader may be gone while helpers it started in its group live on.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        for helper in helpers:
            helper.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(proc.wait()), REAP_S)


async def _read_bounded(stream: asyncio.StreamReader, limit: int) -> bytes:
    """Read to EOF, keeping at most ``limit`` bytes (the rest is drained, not stored)."""
    kept = bytearray()
    while chunk := await stream.read(65536):
        if len(kept) < limit:
            kept += chunk[: limit - len(kept)]
    return bytes(kept)


async def _feed(stdin: asyncio.StreamWriter, data: bytes) -> None:
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stdin.write(data)
        await stdin.drain()
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stdin.close()
    return None
