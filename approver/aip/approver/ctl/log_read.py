"""Reading the central audit log for ``aipctl``: every record of a set of files, streamed,
and the ``--since`` windows its readers share.

A line that is not a JSON object (a foreign or torn line) is reported by file and line and
skipped: one bad line never hides the records after it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson


def parse_since(text: str, now: datetime | None = None) -> datetime:
    m = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if m:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
        return (now or datetime.now(UTC)) - timedelta(**{unit: int(m.group(1))})
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def records(
    files: Sequence[Path],
    unreadable: list[str],
    keep: Callable[[bytes], bool] | None = None,
) -> Iterator[tuple[bytes, dict[str, Any]]]:
    """Every record of ``files``; a line that is not a JSON object is named in ``unreadable``
    (file:line) and skipped, so one foreign line never hides the records after it. ``keep``
    (a cheap test on the raw line) skips lines before they are parsed: a reader of a million
    records that needs a tenth of them parses a tenth."""
    for path in files:
        with path.open("rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                if not raw.endswith(b"\n"):
                    unreadable.append(f"{path}:{lineno} (torn last line)")
                    break
                if keep is not None and not keep(raw):
                    continue
                try:
                    record = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    record = None
                if isinstance(record, dict):
                    yield raw[:-1], record
                else:
                    unreadable.append(f"{path}:{lineno}")
