"""The remote trust store (issue 14.3): which CURVE keys may speak to the remote listener, as
which device, until when; and the open pairing windows. This module alone reads and writes
``trust.json`` (``aip.shared.remote.files``'s folder on the desktop).

Who writes: ``aipctl remote pair|revoke`` (through ctl/safe_files) and the approver when a
human confirms a pairing (through remote/keyfile). Every change is a read-modify-write under
an flock on ``trust.lock`` and lands in one rename, so readers see the old or the new file.

The listener asks ``device_for_key`` on every message (DESIGN §6): the file's identity
(inode, mtime, size) is compared first and the file is read again only when it changed, so
a revocation counts on the next message of an open connection.
"""

from __future__ import annotations

import contextlib
import fcntl
import hmac
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import orjson

from aip.shared.errors import ConfigError
from aip.shared.paths import ensure_private_dir
from aip.shared.remote.code import fingerprint, join_proof, new_secret
from aip.shared.remote.files import TRUST, read_private

DEFAULT_DAYS: Final = 30
MAX_DAYS: Final = 180  # as dreb: a pairing is renewed, never forever
MAX_ATTEMPTS: Final = 5
DAY_S: Final = 86400.0
Write = Callable[[Path, bytes, int], None]


@dataclass(frozen=True, slots=True)
class Device:
    name: str
    key: str  # Z85 public key
    fingerprint: str
    created: float
    expires: float


@dataclass(frozen=True, slots=True)
class Window:
    name: str
    secret: str
    expires: float
    days: int  # how long the pairing lasts once confirmed
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class Trust:
    devices: tuple[Device, ...] = ()
    windows: tuple[Window, ...] = ()


def _decode(raw: bytes) -> Trust:
    try:
        data = orjson.loads(raw)
        return Trust(
            tuple(Device(**d) for d in data["devices"]),
            tuple(Window(**w) for w in data["windows"]),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(f"trust store unreadable: {exc}") from None


def _encode(trust: Trust) -> bytes:
    data = {"v": 1, "devices": [asdict(d) for d in trust.devices]}
    data["windows"] = [asdict(w) for w in trust.windows]
    return orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)


class TrustStore:
    def __init__(self, folder: Path, write: Write, clock: Callable[[], float] = time.time) -> None:
        self.folder = folder
        self.path = folder / TRUST
        self._write = write
        self._clock = clock
        self._seen: tuple[int, int, int] | None = None
        self._trust = Trust()

    # -- reading (the listener: every message) -----------------------------------------

    def current(self) -> Trust:
        """The store as on disk now; a missing file is an empty store. An unreadable one
        trusts nobody (ConfigError is logged by the caller and counts as empty)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._seen, self._trust = None, Trust()
            return self._trust
        ident = (st.st_ino, st.st_mtime_ns, st.st_size)
        if ident != self._seen:
            self._trust = _decode(read_private(self.path))
            self._seen = ident
        return self._trust

    def device_for_key(self, key: str) -> Device | None:
        """The device ``key`` belongs to, if its pairing has not expired; else None."""
        now = self._clock()
        try:
            devices = self.current().devices
        except ConfigError:
            return None
        return next((d for d in devices if d.key == key and now < d.expires), None)

    def window_open(self) -> bool:
        now = self._clock()
        with contextlib.suppress(ConfigError):
            return any(now < w.expires for w in self.current().windows)
        return False

    # -- changing (aipctl and the pairing dialog) ---------------------------------------

    @contextlib.contextmanager
    def _change(self) -> Iterator[list[Trust]]:
        ensure_private_dir(self.folder)
        fd = os.open(self.folder / "trust.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            box = [self.current()]
            yield box
            now = self._clock()
            live = [w for w in box[0].windows if now < w.expires and w.attempts < MAX_ATTEMPTS]
            self._write(self.path, _encode(Trust(box[0].devices, tuple(live))), 0o600)
        finally:
            os.close(fd)

    def open_window(self, name: str, ttl_s: float, days: int = DEFAULT_DAYS) -> str:
        """A pairing window for ``name``; returns its one-time secret. Replaces an open
        window of that name; refuses a name that is already a paired device."""
        if not 0 < days <= MAX_DAYS:
            raise ConfigError(f"a pairing lasts 1 to {MAX_DAYS} days")
        secret = new_secret()
        with self._change() as box:
            trust = box[0]
            if any(d.name == name for d in trust.devices):
                raise ConfigError(f"{name!r} is already paired: revoke it first")
            window = Window(name, secret, self._clock() + ttl_s, days)
            others = tuple(w for w in trust.windows if w.name != name)
            box[0] = Trust(trust.devices, (*others, window))
        return secret

    def claim(self, key: str, proof: str) -> Window | None:
        """A join's claim: the open window whose secret ``proof`` was made with (now closed:
        single use), or None. A claim that fits no window costs every open window one of its
        MAX_ATTEMPTS (a window spent that way closes)."""
        now = self._clock()
        with self._change() as box:
            trust = box[0]
            live = [w for w in trust.windows if now < w.expires]
            found = None
            for w in live:  # every one compared: the time taken says nothing
                if hmac.compare_digest(join_proof(w.secret, key.encode()), proof):
                    found = w
            if found is None:
                spent = tuple(
                    Window(w.name, w.secret, w.expires, w.days, w.attempts + 1) for w in live
                )
                box[0] = Trust(trust.devices, spent)
                return None
            box[0] = Trust(trust.devices, tuple(w for w in live if w is not found))
        return found

    def confirm(self, name: str, key: str, days: int) -> Device:
        """The human allowed: ``key`` speaks as ``name`` for ``days``."""
        now = self._clock()
        device = Device(name, key, fingerprint(key.encode()), now, now + days * DAY_S)
        with self._change() as box:
            kept = tuple(d for d in box[0].devices if d.name != name and d.key != key)
            box[0] = Trust((*kept, device), box[0].windows)
        return device

    def revoke(self, name: str) -> bool:
        with self._change() as box:
            kept = tuple(d for d in box[0].devices if d.name != name)
            windows = tuple(w for w in box[0].windows if w.name != name)
            found = len(kept) != len(box[0].devices) or len(windows) != len(box[0].windows)
            box[0] = Trust(kept, windows)
        return found


def listing(trust: Trust, now: float) -> list[dict[str, Any]]:
    """``aipctl remote list --json``: devices and open windows, never a secret."""
    rows: list[dict[str, Any]] = [
        {
            "name": d.name,
            "state": "paired" if now < d.expires else "expired",
            "fingerprint": d.fingerprint,
            "created": d.created,
            "expires": d.expires,
        }
        for d in trust.devices
    ]
    rows += [
        {
            "name": w.name,
            "state": "waiting",
            "fingerprint": None,
            "created": None,
            "expires": w.expires,
        }
        for w in trust.windows
        if now < w.expires
    ]
    return rows
