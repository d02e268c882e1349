"""The approval client's socket to a *remote* approver (DESIGN §10): a CURVE DEALER over TCP
to the endpoint and server key this host's pairing pinned (``aipctl remote join``).

Differences from the local ``Dealer``, each a decision:

- no directory or peer-uid check (TCP has none): the server proves the pinned key in the
  CURVE handshake, so every frame that arrives comes from the approver we paired with;
- each way the link fails names its own outcome, for the asks it denies: a handshake the
  approver refused (our key is unpaired, revoked or expired) -> ``remote_key_refused``; a
  handshake that failed otherwise (the peer cannot prove the pinned key) ->
  ``remote_server_unverified``; a drop or heartbeat timeout -> ``remote_link_lost``;
- a pairing past its expiry is not even tried;
- libzmq does not reconnect after a ZAP refusal (measured, 4.3.5): the socket is closed and
  the next ask connects afresh, so a host paired again recovers without a restart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Final

import zmq

from aip.proxy.approval.dealer import Dealer, parse_monitor_message
from aip.shared.outcomes import Outcome
from aip.shared.remote.files import KeyPair, Pairing

log = logging.getLogger(__name__)

_EVENTS: Final = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_DISCONNECTED
    | zmq.EVENT_CONNECT_RETRIED
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
)


class CurveDealer(Dealer):
    monitor_events = _EVENTS

    def __init__(
        self,
        pairing: Pairing,
        keys: KeyPair,
        heartbeat: tuple[int, int],
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(pairing.endpoint, heartbeat)
        self._pairing, self._keys, self._wall_clock = pairing, keys, wall_clock
        self.down = Outcome.REMOTE_LINK_LOST

    def connect(self) -> Outcome | None:
        if self.sock is not None:
            return None
        if self._wall_clock() >= self._pairing.expires:
            log.error("the pairing with %s has expired: pair again", self.endpoint)
            return Outcome.REMOTE_KEY_REFUSED
        self._open()
        return None

    def _secure(self, sock: zmq.Socket[bytes]) -> None:
        sock.curve_serverkey = self._pairing.server_key
        sock.curve_publickey, sock.curve_secretkey = self._keys.public, self._keys.secret

    def link_events(self) -> Iterator[bool | None]:
        while self.monitor is not None:
            try:
                event = parse_monitor_message(self.monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            kind = event["event"]
            if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.down = Outcome.REMOTE_LINK_LOST
                yield True
            elif kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                log.error("the remote approver refused this host's key (revoked or expired?)")
                self.down = Outcome.REMOTE_KEY_REFUSED
                self._drop()  # libzmq never retries after a ZAP refusal (measured): we will
                yield False
            elif kind == zmq.EVENT_CONNECT_RETRIED:
                yield None  # refused: nobody listens there
            elif kind != zmq.EVENT_DISCONNECTED:
                log.error("the peer at %s did not prove the paired approver key", self.endpoint)
                self.down = Outcome.REMOTE_SERVER_UNVERIFIED
                yield False
            else:
                yield False

    def _drop(self) -> None:
        """Close the socket: the next ask connects afresh, so a host paired again (or whose
        clock was wrong) recovers without restarting its proxies."""
        for sock in (self.sock, self.monitor):
            if sock is not None:
                self._poller.unregister(sock)
                sock.close(linger=0)
        self.sock = self.monitor = None

    def recheck(self) -> Outcome | None:
        return None  # the handshake proved the pinned key: nothing on disk to look at

    def from_peer(self, frame: zmq.Frame) -> bool:
        return True  # CURVE: only the pinned server can have sent it
