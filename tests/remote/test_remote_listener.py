"""The CURVE listener on loopback, with the real ``aipctl remote pair|join|revoke``: pairing
through the dialog, the origin of what a paired key sends, and the refusals the research
measured as pitfalls (unknown key, revoked key on an open connection, authenticator death)."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from pathlib import Path

import zmq

from aip.shared.remote.code import parse_code
from aip.shared.remote.files import load_keypair, load_pairing
from tests.remote.remotekit import curve_dealer, free_port, listening, wait_event
from tests.support.aipctl import AIPCTL, aipctl, quiet_env


def _envs(folder: Path) -> tuple[dict[str, str], dict[str, str]]:
    desk, far = folder / "desk", folder / "far"
    return quiet_env(XDG_CONFIG_HOME=str(desk)), quiet_env(XDG_CONFIG_HOME=str(far))


async def _join(code: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        AIPCTL,
        "remote",
        "join",
        code,
        "--timeout",
        "20",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _pair(folder: Path, port: int, name: str = "devbox") -> str:
    desk_env, _ = _envs(folder)
    done = await asyncio.to_thread(aipctl, "remote", "pair", name, "--ttl", "2m", env=desk_env)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


async def test_pairing_then_a_paired_key_speaks_with_its_origin(folder: Path) -> None:
    port = free_port()
    desk_env, far_env = _envs(folder)
    desktop = folder / "desk" / "aip" / "remote"
    async with listening(desktop, port) as (listener, seen):
        code = await _pair(folder, port)
        parsed = parse_code(code)
        assert parsed.endpoint == f"tcp://127.0.0.1:{port}"
        rc, out, err = await _join(code, far_env)
        assert rc == 0, err
        far = folder / "far" / "aip" / "remote"
        keys = load_keypair(far / "client.key")
        pairing = load_pairing(far / "pairing.json")
        for path in (far / "client.key", far / "pairing.json"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(far.stat().st_mode) == 0o700
        assert pairing.name == "devbox"
        assert pairing.server_key == parsed.server_key
        (prompt,) = seen.prompts
        assert prompt.kind == "pair"
        assert pairing.fingerprint in prompt.text
        assert f"fingerprint: {pairing.fingerprint}" in out  # join prints what the dialog shows
        listed = aipctl("remote", "list", "--json", env=desk_env)
        assert '"state": "paired"' in listed.stdout
        assert pairing.fingerprint in listed.stdout

        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        sock, monitor = curve_dealer(
            ctx, parsed.endpoint, parsed.server_key, (keys.public, keys.secret)
        )
        try:
            sock.send(b"hello")
            route, body, origin = await asyncio.wait_for(seen.frames.get(), 5)
            assert body == b"hello"
            assert (origin.transport, origin.device) == ("curve", "devbox")
            assert origin.key_fingerprint == pairing.fingerprint
            assert origin.address == "127.0.0.1"
            listener.send(route, b"welcome")
            assert await asyncio.to_thread(sock.poll, 5000)
            assert sock.recv() == b"welcome"

            # Revoked: the open connection is shut at once, and nothing more is delivered.
            assert aipctl("remote", "revoke", "devbox", env=desk_env).returncode == 0
            await wait_event(monitor, zmq.EVENT_DISCONNECTED)
            assert route in seen.gone
            sock.send(b"after revoke")
            await wait_event(monitor, zmq.EVENT_HANDSHAKE_FAILED_AUTH)
            assert seen.frames.empty()
        finally:
            sock.disable_monitor()
            monitor.close()
            sock.close()
            ctx.term()


async def test_unknown_key_and_wrong_code_are_refused_fast(folder: Path) -> None:
    port = free_port()
    _, far_env = _envs(folder)
    desktop = folder / "desk" / "aip" / "remote"
    async with listening(desktop, port) as (_listener, seen):
        server = load_keypair(desktop / "server.key")
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        stranger = zmq.curve_keypair()
        sock, monitor = curve_dealer(ctx, f"tcp://127.0.0.1:{port}", server.public, stranger)
        try:
            sock.send(b"ask")
            event = await wait_event(monitor, zmq.EVENT_HANDSHAKE_FAILED_AUTH, 2.0)
            assert event["value"] == 400
        finally:
            sock.disable_monitor()
            monitor.close()
            sock.close()
            ctx.term()
        # A code whose secret is wrong fits no window: refused, no dialog.
        code = await _pair(folder, port)
        wrong = code[:-1] + ("B" if code[-1] != "B" else "C")
        rc, _out, err = await _join(wrong, far_env)
        assert rc == 1
        assert "no_window" in err
        # A code pinning another server key: the handshake never completes.
        other = zmq.curve_keypair()[0]
        bad_key = parse_code(code).__class__(
            parse_code(code).host, port, other, parse_code(code).secret
        )
        rc, _out, err = await _join(bad_key.text(), far_env)
        assert rc == 1
        assert "did not prove" in err
        assert seen.prompts == []
        assert seen.frames.empty()


async def test_a_dead_authenticator_closes_the_listener(folder: Path) -> None:
    """Without ZAP, CURVE admits any key (measured): the listener must not outlive it."""
    port = free_port()
    desktop = folder / "desk" / "aip" / "remote"
    async with listening(desktop, port, watch_s=0.05) as (listener, seen):
        assert seen.task is not None
        listener._gate.stop()
        await asyncio.wait_for(asyncio.shield(seen.task), 5)
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, "the listener still accepts"


def test_join_without_an_approver_leaves_a_private_key(folder: Path) -> None:
    _, far_env = _envs(folder)
    code = "aip1:127.0.0.1:" + str(free_port()) + ":" + "ab" * 32 + ":BCDFGHJK"
    old = os.umask(0o022)
    try:
        done = aipctl("remote", "join", code, "--timeout", "0.5", env=far_env)
    finally:
        os.umask(old)
    assert done.returncode == 1
    assert "no answer" in done.stderr
    key = folder / "far" / "aip" / "remote" / "client.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert not (key.parent / "pairing.json").exists()
