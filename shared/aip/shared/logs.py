"""Diagnostic logging for both processes: always stderr (or a file), never stdout.

``configure()`` is called once from each ``cli.main``; the format names the process role, its
pid (aip.shared.own_pid: a fork-server session names its launcher's) and a tag (the MCP
server name for a proxy) so logs of many proxies can be told apart.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from aip.shared.own_pid import own_pid

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final, TextIO

FORMAT: Final = (
    "%(asctime)s %(process_role)s[%(process)d] %(tag)s%(levelname)s %(name)s: %(message)s"
)


class _Context(logging.Filter):
    def __init__(self, role: str, tag: str) -> None:
        super().__init__()
        self._role = role
        self._tag = f"{tag}: " if tag else ""

    def filter(self, record: logging.LogRecord) -> bool:
        record.process_role = self._role
        record.process = own_pid()
        record.tag = self._tag
        return True


class _Formatter(logging.Formatter):
    """Formats a line, then passes it through the redactor set by ``set_redactor``."""

    redact: Callable[[str], str] | None = None

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        redact = self.redact
        if redact is None:
            return text
        try:
            return redact(text)
        except Exception:  # noqa: BLE001  (fail closed: a line that cannot be scanned is withheld)
            return f"{record.levelname} {record.name}: [log line withheld: DLP scan failed]"


def set_redactor(redact: Callable[[str], str] | None) -> None:
    """DLP for every later line of the ``aip`` handlers (the proxy sets its policy's display
    redactor: log lines quote ids, methods, tool names, details). None: lines as they are."""
    for handler in logging.getLogger("aip").handlers:
        if isinstance(handler.formatter, _Formatter):
            handler.formatter.redact = redact


def configure(
    process: str,
    *,
    tag: str = "",
    verbose: bool = False,
    stream: TextIO | None = None,
    path: str | None = None,
) -> logging.Handler:
    """Install one handler on the ``aip`` logger (stderr unless ``path``); returns it.

    ``verbose`` enables debug level (message traces); ``$AIP_LOG_LEVEL`` overrides the level.
    """
    if path is not None:
        handler: logging.Handler = logging.FileHandler(path, encoding="utf-8")
    else:
        handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(_Formatter(FORMAT))
    handler.addFilter(_Context(process, tag))
    logger = logging.getLogger("aip")
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.propagate = False
    level = os.environ.get("AIP_LOG_LEVEL", "").upper()
    if level in logging.getLevelNamesMapping():
        logger.setLevel(level)
    else:
        logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    return handler


def set_tag(tag: str) -> None:
    """Change the tag after start-up (e.g. once the server name is known)."""
    for handler in logging.getLogger("aip").handlers:
        for flt in handler.filters:
            if isinstance(flt, _Context):
                flt._tag = f"{tag}: " if tag else ""
