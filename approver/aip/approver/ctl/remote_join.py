"""``aipctl remote join CODE`` on a remote host: make this host's key pair, ask the desktop's
approver (CURVE to the server key the code pins) and, once the human there allowed, keep the
pairing so proxies on this host use it (issue 14.3).

The key pair is written here, 0600 in a 0700 folder, through ctl/safe_files (pyzmq's
create_certificates writes 0644). The fingerprint is printed before asking, for the human to
compare with the desktop's dialog.
"""

from __future__ import annotations

import argparse
import os
import socket
import time
from typing import Any, Final

import zmq
from zmq.utils.monitor import parse_monitor_message

from aip.approver.ctl import console, safe_files
from aip.shared.errors import ConfigError
from aip.shared.paths import ensure_private_dir
from aip.shared.protocol.codec import ProtocolError, encode
from aip.shared.protocol.pairing import PairReply, PairRequest, decode_pair_reply
from aip.shared.remote.code import CodeError, fingerprint, join_proof, parse_code
from aip.shared.remote.files import (
    CLIENT_KEY,
    PAIRING,
    KeyPair,
    Pairing,
    load_keypair,
    new_keypair,
    remote_dir,
)

WAIT_S: Final = 180.0  # the human on the desktop reads the dialog and compares
HANDSHAKE_TRIES: Final = 3  # failed CURVE handshakes before we say the key is not theirs


def register_join(actions: Any) -> None:
    join = actions.add_parser("join", help="(on the remote host) pair with a desktop's code")
    join.add_argument("code", help="the last line `aipctl remote pair` printed")
    join.add_argument("--timeout", type=float, default=WAIT_S, metavar="S")
    join.set_defaults(func=run_join)


def own_keypair() -> KeyPair:
    """This host's key pair: the one made before, else a new one (0600, 0700 folder)."""
    folder = ensure_private_dir(remote_dir())
    path = folder / CLIENT_KEY
    if os.path.lexists(path):
        return load_keypair(path)
    pair = new_keypair()
    safe_files.atomic_replace(path, pair.encode(), 0o600)
    return pair


def run_join(args: argparse.Namespace) -> int:
    try:
        code = parse_code(args.code)
        keys = own_keypair()
    except (CodeError, ConfigError) as exc:
        console.err(f"aipctl remote join: {exc}")
        return 1
    mine = fingerprint(keys.public)
    console.out(f"this host's key fingerprint: {mine}")
    console.out(f"asking the approver at {code.endpoint}; confirm there if the fingerprint matches")
    request = PairRequest(
        host=socket.gethostname()[:64],
        key=keys.public.decode(),
        proof=join_proof(code.secret, keys.public),
    )
    reply, why = ask(code.endpoint, code.server_key, keys, encode(request), args.timeout)
    if reply is None or not reply.paired:
        console.err(f"aipctl remote join: not paired: {why if reply is None else reply.reason}")
        return 1
    pairing = Pairing(reply.name, code.endpoint, code.server_key, mine, reply.expires)
    safe_files.atomic_replace(remote_dir() / PAIRING, pairing.encode(), 0o600)
    until = time.strftime("%Y-%m-%d", time.localtime(reply.expires))
    console.out(f"paired as {reply.name!r} until {until}; proxies here now ask that approver")
    return 0


def ask(
    endpoint: str, server_key: bytes, keys: KeyPair, frame: bytes, timeout_s: float
) -> tuple[PairReply | None, str]:
    """One pair round trip: (reply, "") or (None, why)."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = (
        server_key,
        keys.public,
        keys.secret,
    )
    monitor = sock.get_monitor_socket(
        zmq.EVENT_HANDSHAKE_FAILED_AUTH
        | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
        | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    )
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    poller.register(monitor, zmq.POLLIN)
    failures = 0
    try:
        sock.connect(endpoint)
        sock.send(frame)  # queued until the handshake succeeds
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            ready = dict(poller.poll(int(left * 1000) + 1))
            if monitor in ready:
                event = parse_monitor_message(monitor.recv_multipart())
                if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                    return None, "the approver refused this key (no open pairing window)"
                failures += 1
                if failures >= HANDSHAKE_TRIES:
                    return None, "the approver did not prove the key in the code (wrong code?)"
            if sock in ready:
                try:
                    return decode_pair_reply(sock.recv()), ""
                except ProtocolError as exc:
                    return None, f"malformed reply: {exc}"
        return None, f"no answer within {timeout_s:g} s"
    finally:
        sock.disable_monitor()
        monitor.close(linger=0)
        sock.close(linger=0)
        ctx.term()
