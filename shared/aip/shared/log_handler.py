"""The ``logging`` side of aip.shared.logs: one handler on logging's "aip" logger, for the
processes that keep the ``logging`` package (the approver, aipctl). Its lines are the ones
aip.shared.logs writes directly in aip-proxy: the same ``FORMAT``, context and redaction.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from aip.shared.log_line import FORMAT, redacted
from aip.shared.own_pid import own_pid

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO


class _Context(logging.Filter):
    def __init__(self, role: str, tag: str) -> None:
        super().__init__()
        self.role = role
        self.tag = tag

    def filter(self, record: logging.LogRecord) -> bool:
        record.process_role = self.role
        record.process = own_pid()
        record.tag = self.tag
        return True


class _Formatter(logging.Formatter):
    """Formats a line, then passes it through the redactor set by ``set_redactor``."""

    redact: Callable[[str], str] | None = None

    def format(self, record: logging.LogRecord) -> str:
        return redacted(super().format(record), record.levelname, record.name, self.redact)


def install(role: str, tag: str, level: int, stream: TextIO | None, path: str | None) -> None:
    """The one handler of the "aip" logger (stderr unless ``stream`` or ``path``); ``tag``
    with its ": " (as aip.shared.logs keeps it)."""
    if path is not None:
        handler: logging.Handler = logging.FileHandler(path, encoding="utf-8")
    else:
        handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(_Formatter(FORMAT))
    handler.addFilter(_Context(role, tag))
    logger = logging.getLogger("aip")  # without handlers: configure ran logs.reset first
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(level)


def uninstall() -> None:
    logger = logging.getLogger("aip")
    for old in list(logger.handlers):
        logger.removeHandler(old)
        old.close()


def set_redactor(redact: Callable[[str], str] | None) -> None:
    for handler in logging.getLogger("aip").handlers:
        if isinstance(handler.formatter, _Formatter):
            handler.formatter.redact = redact


def set_tag(tag: str) -> None:
    """``tag`` with its ": " (as aip.shared.logs keeps it)."""
    for handler in logging.getLogger("aip").handlers:
        for flt in handler.filters:
            if isinstance(flt, _Context):
                flt.tag = tag
