"""The pairing code (one wire format), fingerprints and the join proof."""

from __future__ import annotations

import pytest
import zmq

from aip.shared.remote.code import (
    ALPHABET,
    CodeError,
    check_name,
    fingerprint,
    join_proof,
    make_code,
    new_secret,
    parse_code,
    split_endpoint,
)


def test_a_code_round_trips_and_pins_the_server_key() -> None:
    public, _ = zmq.curve_keypair()
    code = make_code("tcp://10.77.0.1:7450", public, new_secret())
    text = code.text()
    assert text.startswith("aip1:10.77.0.1:7450:")
    assert parse_code(f"  {text}\n") == code
    assert parse_code(text).server_key == public
    assert code.endpoint == "tcp://10.77.0.1:7450"
    assert all(c in ALPHABET for c in code.secret)
    assert len(code.secret) == 8


def test_ipv6_hosts_and_names() -> None:
    public, _ = zmq.curve_keypair()
    code = make_code("tcp://[fd00::1]:7450", public, "BCDFGHJK")
    assert parse_code(code.text()).host == "[fd00::1]"
    assert check_name("devbox-2") == "devbox-2"
    for bad in ("", "Devbox", "-x", "a" * 33, "dev box", "dév"):
        with pytest.raises(CodeError):
            check_name(bad)


@pytest.mark.parametrize(
    "text",
    [
        "aip2:h:1:" + "0" * 64 + ":BCDFGHJK",
        "aip1:h:1:" + "0" * 63 + ":BCDFGHJK",
        "aip1:h:0:" + "0" * 64 + ":BCDFGHJK",
        "aip1:h:1:" + "0" * 64 + ":BCDFGHJA",  # a vowel is not in the alphabet
        "aip1:h;rm:1:" + "0" * 64 + ":BCDFGHJK",
        "aip1:" + "0" * 64 + ":BCDFGHJK",
        "",
    ],
)
def test_bad_codes_say_what_is_wrong(text: str) -> None:
    with pytest.raises(CodeError):
        parse_code(text)


def test_wildcards_and_other_transports_make_no_code() -> None:
    public, _ = zmq.curve_keypair()
    for endpoint in ("tcp://0.0.0.0:7450", "tcp://*:7450", "ipc:///tmp/x", "tcp://h:99999"):
        with pytest.raises(CodeError):
            make_code(endpoint, public, "BCDFGHJK")
    assert split_endpoint("tcp://*:7450") == ("*", 7450)


def test_fingerprint_and_proof() -> None:
    a, _ = zmq.curve_keypair()
    b, _ = zmq.curve_keypair()
    fp = fingerprint(a)
    assert len(fp) == 19
    assert fp.count("-") == 3
    assert fp == fingerprint(a) != fingerprint(b)
    assert join_proof("BCDFGHJK", a) != join_proof("BCDFGHJL", a) != join_proof("BCDFGHJL", b)
    assert len(join_proof("BCDFGHJK", a)) == 64
