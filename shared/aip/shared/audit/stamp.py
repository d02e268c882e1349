"""When and who: the ``timestamp`` and ``user`` values of audit records (DESIGN §8).

Both processes stamp records: the proxy its own decisions (on the allow path, so ``rfc3339``
is kept cheap: one ``strftime`` per second), the approver the asks it answered, the dialog's
``dialog_shown_at`` and, for records that arrive without one, the ``user``.
"""

from __future__ import annotations

import os
import pwd
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

# (whole second, its formatted prefix), replaced as one tuple: threads never see a mix.
_second: tuple[int, str] = (-1, "")
_MILLIS: Final = tuple(f".{ms:03d}Z" for ms in range(1000))


def rfc3339(t: float | None = None) -> str:
    """UTC RFC 3339 with milliseconds and ``Z``: ``2026-03-03T16:44:56.580Z``. ``t`` is a
    wall-clock time (``time.time()``, not before 1970), now when None; the milliseconds are
    truncated from the microseconds ``datetime.fromtimestamp`` would round to."""
    global _second
    if t is None:
        t = time.time()
    whole = int(t)
    micros = round((t - whole) * 1_000_000)  # t - whole is exact: datetime's modf fraction
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    cached = _second
    if cached[0] != whole:
        cached = _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return cached[1] + _MILLIS[micros // 1000]


def user_name(uid: int | None = None) -> str:
    """``$AIP_USER``, else the login name of ``uid`` (ours when None), else ``uid-<uid>``
    (a uid without a passwd entry, as in many containers: never mistaken for a name)."""
    env = os.environ.get("AIP_USER")
    if env:
        return env
    uid = os.getuid() if uid is None else uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid-{uid}"
