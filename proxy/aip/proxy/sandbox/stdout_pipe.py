"""The server's stdout under bubblewrap: a named pipe that only the server's tree holds.

bwrap's own two processes (the monitor and the PID namespace's init) keep every descriptor
they inherit, so an ordinary pipe handed down as stdout stays open in them after the server
closes it: the proxy would never see the EOF that says "this server is gone" (issue 11.8).
Instead the server's first process opens a FIFO by name, inside the sandbox, after bwrap has
started it; bwrap never holds the write end. A short ``sh`` stanza does that open and then
execs the server, so the process tree and its levels are unchanged.

The FIFO lives in a fresh 0700 folder and is unlinked as soon as both ends are open. Another
process of the same user could open that name for writing in those few milliseconds; such a
process can already ptrace the proxy, so this adds nothing it could not do (docs/security.md).
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading

from aip.proxy.sandbox.host import private_temp_dir, which

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

# ``$0`` is the FIFO; a failed redirection makes ``exec`` end the shell with status 2.
_OPEN_AND_EXEC: Final = 'exec 1>"$0" && exec "$@"'


class StdoutFifo:
    def __init__(self) -> None:
        self._folder = private_temp_dir("aip-stdout-")  # mode 0700
        self.path = os.path.join(self._folder, "server-stdout")
        os.mkfifo(self.path, 0o600)
        self._fd: int | None = None
        self._opener = threading.Thread(target=self._open, name="stdout-fifo", daemon=True)

    def launcher(self) -> list[str]:
        """Put this between the sandbox prefix and the server's command."""
        return [which("sh") or "/bin/sh", "-c", _OPEN_AND_EXEC, self.path]

    def start(self) -> None:
        """Begin waiting for the server's end (call right after spawning it)."""
        self._opener.start()

    def _open(self) -> None:
        # Blocks until a writer opens the FIFO: the server, or ``release`` when it never will.
        self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)

    def release(self) -> None:
        """The server exited: if it never opened its end, open and close one ourselves, so the
        waiting reader gets its descriptor and then EOF. Called from the child waiter."""
        while self._opener.is_alive():
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: the reader is not in open() yet
                    raise
                self._opener.join(0.005)
                continue
            os.close(fd)
            self._opener.join()

    def reader(self) -> int:
        """The read end, once the server (or ``release``) opened the other one."""
        self._opener.join()
        assert self._fd is not None
        self.cleanup()
        return self._fd

    def cleanup(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.rmdir(self._folder)
