"""Diagnostic logging for every aip process: always stderr (or a file), never stdout.

``configure()`` is called once from each ``cli.main``; the format names the process role, its
pid (aip.shared.own_pid: a fork-server session names its launcher's) and a tag (the MCP
server name for a proxy) so logs of many proxies can be told apart.

The proxy's and the shared modules log through ``get(name)``, a ``Logger`` with the part of
``logging.Logger``'s interface they use. In aip-proxy and its fork server (``direct=True``)
the lines are formatted and written here, without the ``logging`` package: importing it (with
traceback and textwrap, which only it needs there) was ~6-8 ms of every proxy's start-up
(issue 16), for the two lines a start writes. Everywhere else (the approver, aipctl, tests
before any ``configure``) a ``Logger`` hands each call to ``logging.getLogger(name)``, so the
approver's handler, ``caplog`` and ``logging``'s last resort see it as before. Both ways give
the same line, byte for byte (tests/shared/test_logs.py holds them side by side).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable

from aip.shared.log_line import line, redacted

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final, TextIO

DEBUG: Final = 10
INFO: Final = 20
WARNING: Final = 30
ERROR: Final = 40
CRITICAL: Final = 50
# ``logging``'s names (getLevelNamesMapping); NOTSET on the "aip" logger defers to the root's
# WARNING, as logging's getEffectiveLevel would.
LEVELS: Final = {
    "CRITICAL": CRITICAL,
    "FATAL": CRITICAL,
    "ERROR": ERROR,
    "WARN": WARNING,
    "WARNING": WARNING,
    "INFO": INFO,
    "DEBUG": DEBUG,
    "NOTSET": WARNING,
}
_NAMES: Final = {
    DEBUG: "DEBUG",
    INFO: "INFO",
    WARNING: "WARNING",
    ERROR: "ERROR",
    CRITICAL: "CRITICAL",
}


class _Sink:
    """Where ``direct`` lines go: one stream, one level, the context of ``FORMAT``."""

    def __init__(self, stream: TextIO, role: str, tag: str, level: int, owned: bool) -> None:
        self.stream = stream
        self.role = role
        self.tag = tag
        self.level = level
        self.owned = owned  # a file we opened (closed by ``reset``)
        self.redact: Callable[[str], str] | None = None
        self.lock = threading.RLock()  # as logging's handlers: a signal handler may log mid-line

    def emit(self, name: str, level: int, msg: object, args: tuple[Any, ...], exc: bool) -> None:
        created = time.time()
        levelname = _NAMES.get(level, f"Level {level}")
        try:
            values: object = args
            if len(args) == 1 and isinstance(args[0], dict) and args[0]:
                values = args[0]  # logging's one-mapping form: "%(key)s"
            message = str(msg) % values if args else str(msg)
            trace = _exception_text() if exc else ""
            text = line(created, self.role, self.tag, levelname, name, message, trace)
            text = redacted(text, levelname, name, self.redact)
            with self.lock:
                self.stream.write(text + "\n")
                self.stream.flush()
        except Exception:  # noqa: BLE001  (a log line never breaks the relay, as logging's)
            _report_failure(name)


def _exception_text() -> str:
    import traceback  # only when there is an exception to show

    info = sys.exc_info()
    if info[0] is None:
        return "NoneType: None"  # what logging prints for exception() outside an except
    return "".join(traceback.format_exception(*info)).rstrip("\n")


def _report_failure(name: str) -> None:
    import contextlib

    with contextlib.suppress(Exception):  # stderr itself is gone: nothing left to tell
        sys.stderr.write(f"--- Logging error in {name} ---\n")


_sink: _Sink | None = None


class Logger:
    """``logging.Logger``'s calls as aip's modules make them; see the module's doc."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def isEnabledFor(self, level: int) -> bool:
        sink = _sink
        if sink is not None:
            return level >= sink.level
        import logging

        return logging.getLogger(self.name).isEnabledFor(level)

    def log(self, level: int, msg: object, *args: Any, exc_info: bool = False) -> None:
        sink = _sink
        if sink is not None:
            if level >= sink.level:
                sink.emit(self.name, level, msg, args, exc_info)
            return
        import logging

        logging.getLogger(self.name).log(level, msg, *args, exc_info=exc_info, stacklevel=3)

    def debug(self, msg: object, *args: Any, exc_info: bool = False) -> None:
        self.log(DEBUG, msg, *args, exc_info=exc_info)

    def info(self, msg: object, *args: Any, exc_info: bool = False) -> None:
        self.log(INFO, msg, *args, exc_info=exc_info)

    def warning(self, msg: object, *args: Any, exc_info: bool = False) -> None:
        self.log(WARNING, msg, *args, exc_info=exc_info)

    def error(self, msg: object, *args: Any, exc_info: bool = False) -> None:
        self.log(ERROR, msg, *args, exc_info=exc_info)

    def exception(self, msg: object, *args: Any, exc_info: bool = True) -> None:
        self.log(ERROR, msg, *args, exc_info=exc_info)


def get(name: str) -> Logger:
    """The logger for module ``name`` (``log = logs.get(__name__)``)."""
    return Logger(name)


def level_for(verbose: bool) -> int:
    """The "aip" level: ``$AIP_LOG_LEVEL`` (a logging level name) if set, else DEBUG or INFO."""
    named = os.environ.get("AIP_LOG_LEVEL", "").upper()
    return LEVELS.get(named, DEBUG if verbose else INFO)


def configure(
    process: str,
    *,
    tag: str = "",
    verbose: bool = False,
    stream: TextIO | None = None,
    path: str | None = None,
    direct: bool = False,
) -> None:
    """Send the "aip" loggers' lines to stderr (or ``stream``, or the file ``path``).

    ``direct``: written by this module (aip-proxy, its fork server); otherwise one handler on
    logging's "aip" logger (``aip.shared.log_handler``), which ``Logger`` calls go through.
    ``verbose`` enables debug level (message traces); ``$AIP_LOG_LEVEL`` overrides the level.
    """
    global _sink
    reset()
    level = level_for(verbose)
    if not direct:
        from aip.shared.log_handler import install

        install(process, _tagged(tag), level, stream, path)
        return
    owned = path is not None
    if path is not None:
        stream = open(path, "a", encoding="utf-8")  # noqa: SIM115  (closed by reset)
    _sink = _Sink(stream if stream is not None else sys.stderr, process, _tagged(tag), level, owned)


def reset() -> None:
    """No lines from here on until the next ``configure`` (a forked session drops the fork
    server's log before it configures its own)."""
    global _sink
    sink, _sink = _sink, None
    if sink is not None and sink.owned:
        sink.stream.close()
    if "logging" in sys.modules:
        from aip.shared.log_handler import uninstall

        uninstall()


def set_redactor(redact: Callable[[str], str] | None) -> None:
    """DLP for every later line (the proxy sets its policy's display redactor: log lines quote
    ids, methods, tool names, details). None: lines as they are."""
    if _sink is not None:
        _sink.redact = redact
    if "logging" in sys.modules:
        from aip.shared.log_handler import set_redactor as on_handlers

        on_handlers(redact)


def set_tag(tag: str) -> None:
    """Change the tag after start-up (e.g. once the server name is known)."""
    if _sink is not None:
        _sink.tag = _tagged(tag)
    if "logging" in sys.modules:
        from aip.shared.log_handler import set_tag as on_handlers

        on_handlers(_tagged(tag))


def flush() -> None:
    """Before the process ends: every line written (``logging.shutdown`` if it is loaded)."""
    sink = _sink
    if sink is not None:
        with sink.lock:
            sink.stream.flush()
    if "logging" in sys.modules:
        import logging

        logging.shutdown()


def _tagged(tag: str) -> str:
    return f"{tag}: " if tag else ""
