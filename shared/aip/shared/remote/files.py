"""The remote-approval files and their formats (issue 14.3); one folder on each side,
``$XDG_CONFIG_HOME/aip/remote`` (0700, ours, no symlink):

- ``client.key``  (remote host) this host's CURVE key pair, written by ``aipctl remote join``;
- ``pairing.json`` (remote host) where the approver is and which key it must prove; proxies
  on this host use it when no endpoint is given (DESIGN §6);
- ``server.key`` (desktop) the remote listener's key pair, made once by the approver;
- ``trust.json`` (desktop) owned by ``aip.approver.remote.trust``.

Key files are ``{"public": Z85, "secret": Z85}`` with mode 0600, written by whoever owns them
with O_EXCL (pyzmq's create_certificates writes 0644: never used). Reading refuses a file or
folder another user could have written or read: a secret key that leaked is no identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

import orjson

from aip.shared.errors import ConfigError
from aip.shared.paths import NotPrivateError, dir_problem, read_private_file
from aip.shared.startup_paths import config_home

CLIENT_KEY: Final = "client.key"
PAIRING: Final = "pairing.json"
SERVER_KEY: Final = "server.key"
TRUST: Final = "trust.json"
FILE_VERSION: Final = 1
MAX_FILE_BYTES: Final = 65536  # keys and pairing files are far smaller; the trust list too


def remote_dir() -> Path:
    return config_home() / "aip" / "remote"


@dataclass(frozen=True, slots=True)
class KeyPair:
    public: bytes  # Z85, 40 bytes
    secret: bytes

    def encode(self) -> bytes:
        return orjson.dumps({"public": self.public.decode(), "secret": self.secret.decode()})


@dataclass(frozen=True, slots=True)
class Pairing:
    """What ``join`` learnt: the device name, the approver's endpoint and pinned key."""

    name: str
    endpoint: str
    server_key: bytes
    fingerprint: str  # of this host's own key, as the desktop's dialog showed it
    expires: float

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "v": FILE_VERSION,
                "name": self.name,
                "endpoint": self.endpoint,
                "server_key": self.server_key.decode(),
                "fingerprint": self.fingerprint,
                "expires": self.expires,
            },
            option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE,
        )


def read_private(path: Path) -> bytes:
    """The bytes of a 0600 file of ours in a 0700 folder of ours; ConfigError otherwise."""
    problem = dir_problem(path.parent)
    if problem is not None:
        raise ConfigError(f"remote folder not private: {problem}")
    try:
        data, _ = read_private_file(path, MAX_FILE_BYTES)
    except NotPrivateError:
        raise ConfigError(f"{path}: must be a regular file of ours with mode 0600") from None
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: over {MAX_FILE_BYTES} bytes, not a file aip wrote")
    return data


def _fields(path: Path) -> dict[str, object]:
    try:
        data = orjson.loads(read_private(path))
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a JSON object")
    return data


def _text(data: dict[str, object], key: str, path: Path) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{path}: {key!r} missing or not text")
    return value


def load_keypair(path: Path) -> KeyPair:
    data = _fields(path)
    public, secret = _text(data, "public", path), _text(data, "secret", path)
    if len(public) != 40 or len(secret) != 40:
        raise ConfigError(f"{path}: keys are 40-character Z85 text")
    return KeyPair(public.encode(), secret.encode())


def load_pairing(path: Path) -> Pairing:
    data = _fields(path)
    if data.get("v") != FILE_VERSION:
        raise ConfigError(f"{path}: unsupported version {data.get('v')!r}")
    expires = data.get("expires")
    if type(expires) not in (int, float):
        raise ConfigError(f"{path}: 'expires' is not a number")
    server_key = _text(data, "server_key", path)
    if len(server_key) != 40:
        raise ConfigError(f"{path}: server_key is 40-character Z85 text")
    return Pairing(
        name=_text(data, "name", path),
        endpoint=_text(data, "endpoint", path),
        server_key=server_key.encode(),
        fingerprint=_text(data, "fingerprint", path),
        expires=float(expires),  # type: ignore[arg-type]
    )


def new_keypair() -> KeyPair:
    import zmq  # lazily: the proxy's start-up stays light

    public, secret = zmq.curve_keypair()
    return KeyPair(public, secret)
