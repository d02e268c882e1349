"""Spawn and stop the MCP server's whole process tree (STYLE §4.5), with blocking calls.

The server runs in its own session (process group). Stop order: close stdin, grace, SIGTERM to
the group, grace, SIGKILL to the group and to every descendant found with psutil, including
those that left the group with setsid (on Linux the proxy is a child subreaper, so such
orphans are re-parented to it and stay findable).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence

from aip.proxy.sandbox.stdout_pipe import StdoutFifo
from aip.shared import logs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any, Final

log = logs.get(__name__)

STDIN_CLOSE_GRACE_S: Final = 2.0  # MCP lifecycle: close stdin and let the server exit
TERM_GRACE_S: Final = 2.0  # then SIGTERM the process group; then SIGKILL
REAP_TIMEOUT_S: Final = 2.0
_PR_SET_CHILD_SUBREAPER: Final = 36


def become_subreaper() -> None:
    """Linux: orphans of our descendants are re-parented to us, not to init, so a grandchild
    that escaped with setsid after its parent died can still be found and killed."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes  # lazy: only needed once, at start-up

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        log.debug("prctl(PR_SET_CHILD_SUBREAPER) unavailable")


def exit_status(returncode: int) -> int:
    """The proxy's exit code for the child's: 128+N when a signal N ended it."""
    return 128 - returncode if returncode < 0 else returncode


class Child:
    """The MCP server process; ``exited`` is set from a waiter thread when it ends."""

    def __init__(
        self,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        on_exit: Callable[[], None] | None = None,
        stderr: int | None = None,
        wrappers: int = 0,
        fifo: StdoutFifo | None = None,
    ) -> None:
        """``stderr``: None inherits ours; ``subprocess.PIPE`` for the DLP stderr filter.
        ``wrappers``: how many levels at the top of the tree are the sandbox's own processes
        (bwrap and its init in the PID namespace), spared by SIGTERM: killing them would end
        the server at once, without the grace SIGTERM promises.
        ``fifo``: the server opens its stdout by name (a sandbox wrapper would hold a pipe)."""
        # bufsize=0: raw pipes; the relay threads do their own (1 MiB) buffering.
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL if fifo is not None else subprocess.PIPE,
            stderr=stderr,
            bufsize=0,
            env=env,
            start_new_session=True,  # own process group, so killpg reaches grandchildren
        )
        self.pid = self.proc.pid  # also the group id; never getpgid() a reaped pid
        self._wrappers = wrappers
        self.exited = threading.Event()
        self._on_exit = on_exit
        self._fifo = fifo
        if fifo is not None:
            fifo.start()
        self._waiter = threading.Thread(target=self._wait, name="child-waiter", daemon=True)
        self._waiter.start()
        self._stdout = (
            os.fdopen(fifo.reader(), "rb", buffering=0) if fifo is not None else self.proc.stdout
        )

    @property
    def stdin(self) -> IO[bytes]:
        assert self.proc.stdin is not None
        return self.proc.stdin

    @property
    def stdout(self) -> IO[bytes]:
        assert self._stdout is not None
        return self._stdout

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def _wait(self) -> None:
        self.proc.wait()
        if self._fifo is not None:
            self._fifo.release()
        log.info("MCP server pid=%d exited with %s", self.pid, self.proc.returncode)
        self.exited.set()
        if self._on_exit is not None:
            self._on_exit()

    def stop(self, stdin_grace_s: float, term_grace_s: float, close_stdin: Any = None) -> int:
        """Stop the tree in the MCP lifecycle order; returns the server's returncode.

        ``close_stdin`` closes the server's stdin (the relay owns the writer and its lock).
        """
        family = self.descendants()  # snapshot before any signal: orphans lose their parent link
        if close_stdin is not None:
            close_stdin()
        if not self.exited.wait(stdin_grace_s):
            log.info("MCP server pid=%d still running after stdin close; SIGTERM", self.pid)
            self._terminate()
            if not self.exited.wait(term_grace_s):
                log.warning("MCP server pid=%d ignored SIGTERM; sending SIGKILL", self.pid)
        self.kill_tree(family)
        self.exited.wait(REAP_TIMEOUT_S)
        rc = self.proc.returncode
        return rc if rc is not None else -signal.SIGKILL

    def kill_tree(self, family: list[Any] | None = None) -> None:
        """SIGKILL the group, then every known descendant (psutil re-checks identity)."""
        import psutil  # lazy: keeps start-up light

        self._killpg(signal.SIGKILL)
        procs = list(family or []) + self.descendants()
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.kill()
        if procs:
            psutil.wait_procs(procs, timeout=REAP_TIMEOUT_S)
        self._reap_orphans()

    def descendants(self) -> list[Any]:
        """Our descendants other than ourselves: the server's tree and, as subreaper, any
        orphans of it that were re-parented to the proxy."""
        import psutil

        found: dict[int, Any] = {}
        with contextlib.suppress(psutil.Error):
            for p in psutil.Process(self.pid).children(recursive=True):
                found[p.pid] = p
        with contextlib.suppress(psutil.Error):
            for p in psutil.Process().children(recursive=True):
                if p.pid != self.pid:
                    found[p.pid] = p
        return list(found.values())

    def _terminate(self) -> None:
        """SIGTERM to the server's tree: its process group, or under a sandbox wrapper every
        process below the wrapper's levels."""
        if not self._wrappers:
            self._killpg(signal.SIGTERM)
            return
        import psutil

        with contextlib.suppress(psutil.Error):
            level = [psutil.Process(self.pid)]
            for _ in range(self._wrappers):
                level = [c for p in level for c in _children(p)]
            for top in level:
                for p in [top, *_children(top, recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        p.terminate()

    def _killpg(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def _reap_orphans(self) -> None:
        # As subreaper we inherit killed orphans as zombies; collect them (not our server,
        # whose status the waiter thread owns).
        import psutil

        with contextlib.suppress(psutil.Error):
            for p in psutil.Process().children():
                if p.pid != self.pid:
                    with contextlib.suppress(ChildProcessError, OSError):
                        os.waitpid(p.pid, os.WNOHANG)


def _children(proc: Any, recursive: bool = False) -> list[Any]:
    import psutil

    try:
        return list(proc.children(recursive=recursive))
    except psutil.Error:
        return []
