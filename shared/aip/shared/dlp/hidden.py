"""How much of a value DLP hid: the characters its ``[REDACTED:rule]`` markers replaced.

The dialog says it next to the markers (issue 11, finding 4): a marker that stands for 40
characters where a private key would be hundreds long is a reason to deny.
"""

from __future__ import annotations

import re

import orjson

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

_MARKER: Final = re.compile(r"\[REDACTED:[A-Za-z0-9_.-]{1,64}\]")


def hidden_chars(original: Any, shown: Any) -> int:
    """Characters of ``original`` (its strings and keys; other leaves as JSON) missing from
    ``shown``, markers aside: what the markers the redaction added stand for. A marker the
    agent wrote itself is in both and counts on neither side."""
    return max(0, _visible(original) - _visible(shown))


def _visible(value: Any) -> int:
    total = 0
    stack = [value]  # iterative: a deeply nested value must not raise RecursionError here
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item) - sum(len(m) for m in _MARKER.findall(item))
        elif isinstance(item, dict):
            stack.extend(str(k) for k in item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        else:
            total += len(orjson.dumps(item))
    return total
