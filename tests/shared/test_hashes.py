"""aip.shared.hashes: in aip-proxy's process (OpenSSL kept out) CPython's own SHA-256 and
BLAKE2b without hashlib's import; elsewhere hashlib's. The digests are the same either way."""

from __future__ import annotations

import hashlib
import hmac

from aip.shared import hashes
from tests.support.freshpy import python_c

# FIPS 180-2's "abc", and RFC 7693's BLAKE2b-512 "abc".
SHA256_ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
BLAKE2B_ABC = (
    "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d1"
    "7d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923"
)


def test_a_lean_process_hashes_without_hashlib_or_hmac() -> None:
    code = (
        "import sys; from aip.proxy import lean; lean.without_openssl();"
        "from aip.shared import hashes;"
        "print(hashes.sha256(b'abc').hexdigest(), hashes.blake2b(b'abc').hexdigest(),"
        " hashes.blake2b(b'abc', key=b'k', digest_size=32).hexdigest(),"
        " hashes.compare_digest(b'a', b'a'), hashes.compare_digest(b'a', b'b'),"
        " [m for m in ('hashlib', 'hmac', '_hashlib') if sys.modules.get(m) is not None])"
    )
    keyed = hashlib.blake2b(b"abc", key=b"k", digest_size=32).hexdigest()
    assert python_c(code).split(" ", 3) == [SHA256_ABC, BLAKE2B_ABC, keyed, "True False []"]


def test_elsewhere_they_are_hashlibs() -> None:
    """This process may load OpenSSL (as the approver and aipctl do): hashlib's constructors."""
    assert hashes.sha256 is hashlib.sha256
    assert hashes.blake2b is hashlib.blake2b
    assert hashes.sha256(b"abc").hexdigest() == SHA256_ABC


def test_hmac_takes_the_lean_constructor() -> None:
    """The capped-value MAC (aip.shared.audit.record) passes ``hashes.sha256`` to hmac: the
    same MAC in a lean process as hmac with hashlib's sha256 here."""
    code = (
        "from aip.proxy import lean; lean.without_openssl();"
        "from aip.shared.audit import record;"
        "print(record._mac(b'key', b'value'))"
    )
    assert python_c(code) == hmac.new(b"key", b"value", hashlib.sha256).hexdigest()
