"""The proxy's approval client to a remote (CURVE) approver, against the real listener on
loopback with this test playing the approver's server: a paired host's ask is answered; each
failure of the link denies at once with its own reason (DESIGN §10)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import zmq

from aip.approver.remote.keyfile import server_keypair
from aip.approver.remote.trust import DAY_S, TrustStore
from aip.proxy.approval.zmq_client import ZmqApprovalClient
from aip.shared.outcomes import Outcome
from aip.shared.protocol.codec import encode
from aip.shared.protocol.frames import decode_to_approver
from aip.shared.protocol.messages import Ask, Decision, Hello, Welcome
from aip.shared.remote.code import fingerprint
from aip.shared.remote.files import KeyPair, Pairing, new_keypair
from aip.shared.safe_write import replace_file
from tests.e2e.test_approval_client import Result, request
from tests.remote.remotekit import free_port, listening
from tests.support.approverproc import hello, new_session

FAST_S = 1.0  # "refused fast": well under the 60 s an unanswered ask would wait


def _paired(
    desktop: Path, port: int, *, days: float = 30, trusted: bool = True
) -> tuple[Pairing, KeyPair]:
    keys = new_keypair()
    server = server_keypair(desktop)
    if trusted:
        now = time.time() - (30 - days) * DAY_S  # days < 0: a pairing that already expired
        TrustStore(desktop, replace_file, lambda: now).confirm("devbox", keys.public.decode(), 30)
    pairing = Pairing(
        "devbox",
        f"tcp://127.0.0.1:{port}",
        server.public,
        fingerprint(keys.public),
        time.time() + DAY_S,
    )
    return pairing, keys


def _client(remote: tuple[Pairing, KeyPair]) -> ZmqApprovalClient:
    return ZmqApprovalClient(
        remote[0].endpoint, hello(new_session()), remote=remote, connect_wait_s=5.0
    )


async def _ask(c: ZmqApprovalClient) -> tuple[Outcome, float]:
    r = Result()
    t0 = time.monotonic()
    c.ask(request(), r)
    result = await asyncio.to_thread(r.wait, 10.0)
    return result.outcome, time.monotonic() - t0


async def test_a_paired_host_is_answered_and_a_revoked_one_is_cut_off(folder: Path) -> None:
    port = free_port()
    remote = _paired(folder, port)
    async with listening(folder, port) as (listener, seen):
        c = _client(remote)
        try:
            r = Result()
            c.ask(request(), r)
            route, body, origin = await asyncio.wait_for(seen.frames.get(), 5)
            first = decode_to_approver(body)
            assert isinstance(first, Hello)
            assert origin.device == "devbox"
            listener.send(
                route,
                encode(
                    Welcome(
                        session=first.session,
                        audit_path="",
                        proto=first.proto,
                        timeout_s=60.0,
                        max_ask_bytes=1 << 18,
                    )
                ),
            )
            _, body, _ = await asyncio.wait_for(seen.frames.get(), 5)
            ask = decode_to_approver(body)
            assert isinstance(ask, Ask)
            reply = Decision(
                session=ask.session,
                request_id=ask.request_id,
                nonce=ask.nonce,
                digest=ask.digest,
                outcome=Outcome.HUMAN_APPROVED,
            )
            listener.send(route, encode(reply))
            assert (await asyncio.to_thread(r.wait)).outcome is Outcome.HUMAN_APPROVED

            pending = Result()
            c.ask(request(2), pending)
            await asyncio.wait_for(seen.frames.get(), 5)  # the ask arrived; nobody answers it
            TrustStore(folder, replace_file).revoke("devbox")
            t0 = time.monotonic()
            assert (await asyncio.to_thread(pending.wait)).outcome is Outcome.REMOTE_LINK_LOST
            assert time.monotonic() - t0 < FAST_S
            # Meanwhile libzmq reconnects and the approver refuses the key at the handshake:
            # every ask is denied at once, first as link lost, then naming the refusal.
            deadline = time.monotonic() + 5
            seen_outcomes = set()
            while Outcome.REMOTE_KEY_REFUSED not in seen_outcomes:
                assert time.monotonic() < deadline, seen_outcomes
                outcome, took = await _ask(c)
                assert took < FAST_S
                seen_outcomes.add(outcome)
            assert seen_outcomes <= {Outcome.REMOTE_LINK_LOST, Outcome.REMOTE_KEY_REFUSED}
            assert seen.frames.empty()  # nothing from the revoked key reached the server

            # Paired again: the same client recovers (libzmq gave up after the refusal; the
            # client connects afresh on the next ask).
            TrustStore(folder, replace_file).confirm("devbox", remote[1].public.decode(), 30)
            again = Result()
            c.ask(request(3), again)
            route, body, _ = await asyncio.wait_for(seen.frames.get(), 5)
            rehello = decode_to_approver(body)
            assert isinstance(rehello, Hello)
            welcome = Welcome(
                session=rehello.session,
                audit_path="",
                proto=rehello.proto,
                timeout_s=60.0,
                max_ask_bytes=1 << 18,
            )
            listener.send(route, encode(welcome))
            _, body, _ = await asyncio.wait_for(seen.frames.get(), 5)
            ask = decode_to_approver(body)
            assert isinstance(ask, Ask)
            reply = Decision(
                session=ask.session,
                request_id=ask.request_id,
                nonce=ask.nonce,
                digest=ask.digest,
                outcome=Outcome.HUMAN_APPROVED,
            )
            listener.send(route, encode(reply))
            assert (await asyncio.to_thread(again.wait)).outcome is Outcome.HUMAN_APPROVED
        finally:
            c.close()


async def test_unpaired_expired_and_wrong_server_are_refused_fast(folder: Path) -> None:
    port = free_port()
    async with listening(folder, port):
        cases = [
            (_paired(folder, port, trusted=False), Outcome.REMOTE_KEY_REFUSED),
            (_paired(folder, port, days=-1), Outcome.REMOTE_KEY_REFUSED),
        ]
        pairing, keys = _paired(folder, port, trusted=False)
        wrong = Pairing(
            pairing.name,
            pairing.endpoint,
            zmq.curve_keypair()[0],
            pairing.fingerprint,
            pairing.expires,
        )
        cases.append(((wrong, keys), Outcome.REMOTE_SERVER_UNVERIFIED))
        stale = Pairing(
            pairing.name, pairing.endpoint, pairing.server_key, pairing.fingerprint, time.time() - 1
        )
        cases.append(((stale, keys), Outcome.REMOTE_KEY_REFUSED))  # expired here: not even tried
        for remote, expected in cases:
            c = _client(remote)
            try:
                outcome, took = await _ask(c)
                assert (outcome, took < FAST_S) == (expected, True), (remote[0], took)
            finally:
                c.close()


async def test_no_listener_at_all_is_link_lost_after_the_connect_wait(folder: Path) -> None:
    remote = _paired(folder, free_port())
    c = ZmqApprovalClient(
        remote[0].endpoint, hello(new_session()), remote=remote, connect_wait_s=0.2
    )
    try:
        outcome, took = await _ask(c)
        assert outcome is Outcome.REMOTE_LINK_LOST
        assert took < FAST_S
    finally:
        c.close()
