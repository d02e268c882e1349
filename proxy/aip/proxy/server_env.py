"""The environment the MCP server starts with: exactly the one the proxy was given.

CPython's locale coercion (PEP 538) sets ``LC_CTYPE=C.UTF-8`` in the interpreter's own
environment when it starts under the C or POSIX locale, and every child inherits it: a server
started through the proxy would see another locale than started directly (issue 12). The
coercion happens before any of our code runs, so ``os.environ`` cannot tell; the kernel's copy
of the environment the process was exec'd with (``/proc/self/environ``, which ``setenv`` never
rewrites) can. Only ``LC_CTYPE``, the one variable coercion touches, is put back; a platform
without that file keeps the inherited environment as it is.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from aip.shared import logs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

log = logs.get(__name__)

COERCED: Final = "LC_CTYPE"
_EXEC_ENVIRON: Final = "/proc/self/environ"


# A session forked from the fork server was not exec'd with its launcher's environment: the
# launcher's /proc/self/environ, handed over (aip.proxy.forkserver.session), stands in for ours.
_adopted: bytes | None = None


def adopt_exec_environment(raw: bytes) -> None:
    global _adopted
    _adopted = raw


def exec_environment(path: str = _EXEC_ENVIRON) -> dict[bytes, bytes] | None:
    """The environment this process was exec'd with, or None where it cannot be read."""
    if _adopted is not None and path == _EXEC_ENVIRON:
        raw = _adopted
    else:
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError:
            return None
    env: dict[bytes, bytes] = {}
    for entry in raw.split(b"\0"):
        name, sep, value = entry.partition(b"=")
        if sep:
            env.setdefault(name, value)  # the first of duplicates is what getenv() returns
    return env


def server_environment(
    environ: Mapping[str, str] | None = None, original: Mapping[bytes, bytes] | None = None
) -> dict[str, str]:
    """``environ`` (default: ours) with ``LC_CTYPE`` as the proxy received it."""
    env = dict(os.environ if environ is None else environ)
    if original is None:
        original = exec_environment()
        if original is None:
            return env
    given = original.get(COERCED.encode())
    if given is None:
        if env.pop(COERCED, None) is not None:
            log.debug("not passing the interpreter's locale coercion (%s) to the server", COERCED)
    else:
        env[COERCED] = os.fsdecode(given)
    return env
