"""CURVE authentication of the remote listener, in the order the research measured as safe on
this pyzmq/libzmq (research/grants-remote.md §2.3):

1. the ZAP authenticator thread starts first;
2. the socket gets ``ZAP_ENFORCE_DOMAIN=1`` and its own ``zap_domain`` (without both, libzmq
   accepts *any* client key when no ZAP handler answers, e.g. after ``auth.stop()``);
3. keys are checked by a callback provider for that domain (never ``CURVE_ALLOW_ANY``, which
   is global to every domain);
4. only then ``bind``.

Failing any step refuses to serve remote at all. The caller watches ``alive()`` and closes the
listener when the authenticator thread dies.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

import zmq
from zmq.auth.thread import ThreadAuthenticator

from aip.shared.errors import ConfigError
from aip.shared.remote.files import KeyPair

log = logging.getLogger(__name__)

DOMAIN: Final = "aip-remote"


class _Provider:
    """ZAP asks this, on the authenticator's thread, for every handshake."""

    def __init__(self, admit: Callable[[str], bool]) -> None:
        self._admit = admit

    def callback(self, domain: str, key: bytes) -> bool:
        if domain != DOMAIN:
            return False
        try:
            return self._admit(key.decode("ascii"))
        except Exception:  # a failing check admits nobody
            log.exception("remote key check failed; refusing the handshake")
            return False


class CurveGate:
    """The authenticator plus the ROUTER it guards. ``admit(z85_key)`` runs on the ZAP thread:
    True for a paired, unexpired key, or any key while a pairing window is open (such a key
    may then only send ``pair``: the listener checks every message again)."""

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], admit: Callable[[str], bool]) -> None:
        self._ctx = ctx
        self._auth = ThreadAuthenticator(ctx, log=logging.getLogger("aip.approver.zap"))
        self._admit = admit

    def open(self, endpoint: str, keys: KeyPair, max_frame: int) -> zmq.Socket[bytes]:
        self._auth.start()
        self._auth.configure_curve_callback(DOMAIN, _Provider(self._admit))
        sock = self._ctx.socket(zmq.ROUTER)
        try:
            sock.linger = 0
            sock.maxmsgsize = max_frame
            sock.curve_server = True
            sock.curve_publickey, sock.curve_secretkey = keys.public, keys.secret
            try:
                sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
            except (zmq.ZMQError, AttributeError) as exc:  # a libzmq without it: fail open
                raise ConfigError(f"this libzmq cannot enforce the ZAP domain: {exc}") from None
            if sock.getsockopt(zmq.ZAP_ENFORCE_DOMAIN) != 1:
                raise ConfigError("this libzmq did not keep ZAP_ENFORCE_DOMAIN")
            sock.zap_domain = DOMAIN.encode()
            sock.bind(endpoint)
        except (zmq.ZMQError, ConfigError) as exc:
            sock.close(linger=0)
            self.stop()
            raise ConfigError(f"remote listener {endpoint}: {exc}") from None
        return sock

    def alive(self) -> bool:
        return self._auth.is_alive()

    def stop(self) -> None:
        self._auth.stop()
