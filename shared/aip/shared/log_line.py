"""One log line of aip, as both ways of aip.shared.logs write it (directly, or through the
``logging`` handler of aip.shared.log_handler): the format, the context, the redaction."""

from __future__ import annotations

import time
from collections.abc import Callable

from aip.shared.own_pid import own_pid

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

FORMAT: Final = (
    "%(asctime)s %(process_role)s[%(process)d] %(tag)s%(levelname)s %(name)s: %(message)s"
)


def line(
    created: float, role: str, tag: str, level: str, name: str, message: str, exc: str = ""
) -> str:
    """One log entry as ``FORMAT`` with logging's default time format spells it (``tag`` with
    its ": "); ``exc`` is the formatted exception, on the lines after it."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created))
    msecs = int((created - int(created)) * 1000)
    text = f"{stamp},{msecs:03d} {role}[{own_pid()}] {tag}{level} {name}: {message}"
    return f"{text}\n{exc}" if exc else text


def redacted(text: str, level: str, name: str, redact: Callable[[str], str] | None) -> str:
    """``text`` through the redactor; a line that cannot be scanned is withheld (fail closed)."""
    if redact is None:
        return text
    try:
        return redact(text)
    except Exception:  # noqa: BLE001
        return f"{level} {name}: [log line withheld: DLP scan failed]"
