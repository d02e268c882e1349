"""The trust store: windows, single-use claims, attempts, expiry, revocation, file modes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import zmq

from aip.approver.remote.keyfile import server_keypair
from aip.approver.remote.trust import DAY_S, MAX_ATTEMPTS, TrustStore, listing
from aip.shared.errors import ConfigError
from aip.shared.remote.code import join_proof
from aip.shared.remote.files import load_keypair
from aip.shared.safe_write import replace_file


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _store(folder: Path, clock: Clock) -> TrustStore:
    return TrustStore(folder / "remote", replace_file, clock)


def test_pair_claim_confirm_expire_revoke(folder: Path) -> None:
    clock = Clock()
    store = _store(folder, clock)
    key = zmq.curve_keypair()[0].decode()
    secret = store.open_window("devbox", ttl_s=600, days=2)
    assert store.window_open()
    assert store.device_for_key(key) is None
    window = store.claim(key, join_proof(secret, key.encode()))
    assert window is not None
    assert window.name == "devbox"
    assert window.days == 2
    assert not store.window_open()  # single use
    assert store.claim(key, join_proof(secret, key.encode())) is None
    device = store.confirm("devbox", key, window.days)
    assert store.device_for_key(key) == device
    row = listing(store.current(), clock.now)[0]
    assert row["name"] == "devbox"
    assert row["state"] == "paired"
    assert "secret" not in str(row)
    clock.now += 2 * DAY_S  # expired: refused like an unknown key
    assert store.device_for_key(key) is None
    assert listing(store.current(), clock.now)[0]["state"] == "expired"
    assert store.revoke("devbox")
    assert not store.revoke("devbox")
    mode = stat.S_IMODE((folder / "remote" / "trust.json").stat().st_mode)
    assert mode == 0o600
    assert stat.S_IMODE((folder / "remote").stat().st_mode) == 0o700


def test_wrong_proofs_spend_the_window(folder: Path) -> None:
    clock = Clock()
    store = _store(folder, clock)
    key = zmq.curve_keypair()[0].decode()
    secret = store.open_window("ci", ttl_s=600)
    for _ in range(MAX_ATTEMPTS):
        assert store.claim(key, "0" * 64) is None
    assert not store.window_open()
    assert store.claim(key, join_proof(secret, key.encode())) is None


def test_windows_expire_and_names_stay_unique(folder: Path) -> None:
    clock = Clock()
    store = _store(folder, clock)
    key = zmq.curve_keypair()[0].decode()
    secret = store.open_window("a", ttl_s=60)
    clock.now += 61
    assert store.claim(key, join_proof(secret, key.encode())) is None
    store.confirm("a", key, 30)
    with pytest.raises(ConfigError, match="already paired"):
        store.open_window("a", ttl_s=60)
    with pytest.raises(ConfigError):
        store.open_window("b", ttl_s=60, days=181)


def test_a_store_others_could_write_trusts_nobody(folder: Path) -> None:
    store = _store(folder, Clock())
    key = zmq.curve_keypair()[0].decode()
    store.confirm("a", key, 30)
    assert store.device_for_key(key) is not None
    os.chmod(store.path, 0o644)
    os.utime(store.path, ns=(1, 1))  # a changed file is read again
    assert store.device_for_key(key) is None


def test_server_key_is_made_once_0600(folder: Path) -> None:
    old = os.umask(0o022)  # the umask create_certificates would leave its 0644 under
    try:
        first = server_keypair(folder / "remote")
    finally:
        os.umask(old)
    assert server_keypair(folder / "remote") == first
    path = folder / "remote" / "server.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_keypair(path) == first


def test_a_pairing_file_over_64_kib_is_refused_not_cut(tmp_path: Path) -> None:
    """aip writes these files far smaller; one over the cap is named, never read in part (the
    reader took its first 64 KiB before and then failed on JSON that was cut)."""
    from aip.shared.remote.files import MAX_FILE_BYTES, read_private

    folder = tmp_path / "remote"
    folder.mkdir(mode=0o700)
    big = folder / "pairing.json"
    replace_file(big, b" " * MAX_FILE_BYTES + b"{}", 0o600)
    with pytest.raises(ConfigError, match=f"over {MAX_FILE_BYTES} bytes"):
        read_private(big)
    replace_file(big, b"{}", 0o600)
    assert read_private(big) == b"{}"
