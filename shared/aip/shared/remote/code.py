"""The pairing code (issue 14.3): the one wire format a human carries from the desktop to a
remote host, plus the key fingerprint both sides print and the proof a join sends.

``aip1:<host>:<port>:<server public key, 64 hex>:<secret, 8 of BCDFGHJKLMNPQRSTVWXZ>``

- The server key is pinned by the code: ``join`` connects with CURVE to exactly that key, so
  whoever answers without the matching secret key cannot complete the handshake.
- Hex, not Z85, for the key: Z85 uses ``:`` and other shell characters.
- The secret is RFC 8628's user-code alphabet (no vowels: no words; about 34.6 bits). It is
  single-use and the approver allows few attempts, so a guess has about 2^-32 odds.
- ``host`` may hold colons (IPv6 in brackets); the other fields never do, so the code is read
  from the right.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Final

import zmq.utils.z85

from aip.shared.errors import AipError

PREFIX: Final = "aip1"
ALPHABET: Final = "BCDFGHJKLMNPQRSTVWXZ"
SECRET_LEN: Final = 8
_HOST: Final = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253})$")
_KEY_HEX: Final = re.compile(r"^[0-9a-f]{64}$")
_SECRET: Final = re.compile(rf"^[{ALPHABET}]{{{SECRET_LEN}}}$")


class CodeError(ValueError, AipError):
    """Text that is not a pairing code of this version."""


@dataclass(frozen=True, slots=True)
class PairingCode:
    host: str
    port: int
    server_key: bytes  # Z85 public key (40 bytes), as zmq's curve options take it
    secret: str

    @property
    def endpoint(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    def text(self) -> str:
        raw = zmq.utils.z85.decode(self.server_key).hex()
        return f"{PREFIX}:{self.host}:{self.port}:{raw}:{self.secret}"


def new_secret() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(SECRET_LEN))


def make_code(endpoint: str, server_key: bytes, secret: str) -> PairingCode:
    """The code for a listener at ``tcp://HOST:PORT`` (a wildcard host cannot be reached)."""
    host, port = split_endpoint(endpoint)
    if host in ("*", "0.0.0.0", "[::]"):  # noqa: S104 - refusing wildcards, not binding
        raise CodeError(f"{endpoint}: name the address remote hosts reach, not a wildcard")
    return PairingCode(host, port, server_key, secret)


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """``tcp://HOST:PORT`` -> (HOST, PORT); CodeError for anything else."""
    if not endpoint.startswith("tcp://"):
        raise CodeError(f"{endpoint!r}: a remote listener is tcp://HOST:PORT")
    host, _, port = endpoint[len("tcp://") :].rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536 or not (host == "*" or _HOST.match(host)):
        raise CodeError(f"{endpoint!r}: a remote listener is tcp://HOST:PORT")
    return host, int(port)


def parse_code(text: str) -> PairingCode:
    """The code in ``text`` (surrounding blanks ignored); CodeError says what is wrong."""
    text = text.strip()
    if not text.startswith(PREFIX + ":"):
        raise CodeError(f"not a pairing code: it starts with {PREFIX}:")
    parts = text[len(PREFIX) + 1 :].rsplit(":", 3)
    if len(parts) != 4:
        raise CodeError("a pairing code has five fields separated by ':'")
    host, port, key_hex, secret = parts
    if not _HOST.match(host):
        raise CodeError(f"pairing code: bad host {host!r}")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise CodeError(f"pairing code: bad port {port!r}")
    if not _KEY_HEX.match(key_hex):
        raise CodeError("pairing code: the server key is 64 lower-case hex digits")
    if not _SECRET.match(secret):
        raise CodeError(f"pairing code: the secret is {SECRET_LEN} of {ALPHABET}")
    return PairingCode(host, int(port), zmq.utils.z85.encode(bytes.fromhex(key_hex)), secret)


def fingerprint(public_key: bytes) -> str:
    """What a human compares: SHA-256 of the raw 32-byte key, first 8 bytes, 4 hex groups."""
    digest = hashlib.sha256(zmq.utils.z85.decode(public_key)).hexdigest()[:16].upper()
    return "-".join(digest[i : i + 4] for i in range(0, 16, 4))


def join_proof(secret: str, client_key: bytes) -> str:
    """HMAC-SHA256(secret, client public key): the joiner holds the code, and the key it
    asks for is the one it connected with (the listener compares it with User-Id)."""
    return hmac.new(secret.encode("ascii"), client_key, hashlib.sha256).hexdigest()


_NAME: Final = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")


def check_name(name: str) -> str:
    """A device name: what dialogs and the audit show as the origin, so plain and short."""
    if not _NAME.match(name):
        raise CodeError(f"device name {name!r}: 1-32 of a-z 0-9 . _ - (starting alnum)")
    return name
