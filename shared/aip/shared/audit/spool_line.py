"""The spool's line format: one audit record per line, authenticated with the session's key.

``<mac> <record>\\n``: ``record`` is the orjson bytes the proxy made, ``mac`` 64 hex chars over
a domain tag, the session, the record's ``rseq`` and the exact record bytes, under the session
key (32 random bytes made with the session, held in the proxy's memory and given to the
approver in ``hello``). The approver ingests a spool line only if it opens here with the key
it learnt for that session: a line altered, forged, or moved from another session's spool
does not (DESIGN §8).

Two MACs, either one accepted wherever a line is checked: HMAC-SHA256 (tag
``aip-spool-line-1``), and keyed BLAKE2b-256 (tag ``aip-spool-line-2``, RFC 7693's keyed
mode, made to be a MAC). A proxy signs with BLAKE2b only once an approver welcomed it with a
``proto`` that says it checks both (aip.shared.protocol.messages.SPOOL_MAC2_PROTO): an older
approver would take such a line for a forgery if it ever ingested that spool. Why: the proxy
hashes without OpenSSL (aip.proxy.lean), where the HMAC costs 3.3 us per line and BLAKE2b
1.4, on the relay's path before every forward (issue 16), and again for each line read back.
"""

from __future__ import annotations

import re

import orjson

from aip.shared.hashes import blake2b, compare_digest, sha256

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

MAC_CHARS: Final = 64
_TAG: Final = b"aip-spool-line-1\n"
_TAG2: Final = b"aip-spool-line-2\n"
_BLAKE2_KEY_MAX: Final = 64
_MAC: Final = re.compile(rb"[0-9a-f]{64}")
_BLOCK: Final = 64  # SHA-256's block size
_IPAD: Final = bytes(c ^ 0x36 for c in range(256))  # translate tables: key byte XOR pad
_OPAD: Final = bytes(c ^ 0x5C for c in range(256))


class LineKey:
    """The session key with its HMAC state over the tag and session computed once (a line
    then costs two hash copies and the hash of its own bytes).

    HMAC-SHA256 (RFC 2104) spelled out on ``hashlib`` states: H(K^opad || H(K^ipad || m)),
    the inner state primed with the tag and session. The same digest as
    ``hmac.new(key, tag + session + rseq + body, sha256)`` (tests/shared/audit/test_spool_line.py
    checks it), without the Python wrapper ``hmac.HMAC`` puts around each copy, update and
    digest (2.0 -> 1.4 µs per line); ``hmac.digest`` one-shot is slower still (it pays the key
    schedule on every line). The BLAKE2b state is primed once the same way."""

    def __init__(self, key: bytes, session: str) -> None:
        self.session = session
        tagged = b"%s\n" % session.encode("ascii")
        # BLAKE2b takes a key of up to 64 bytes (a session key has 32); a longer one is
        # hashed first, as HMAC does with a key over its block.
        short = key if len(key) <= _BLAKE2_KEY_MAX else sha256(key).digest()
        self._b2 = blake2b(_TAG2 + tagged, key=short, digest_size=MAC_CHARS // 2)
        if len(key) > _BLOCK:
            key = sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        self._inner = sha256(key.translate(_IPAD))
        self._inner.update(_TAG + tagged)
        self._outer = sha256(key.translate(_OPAD))
        self.sign_mac2 = False  # sign with BLAKE2b (see the module's doc); either is accepted

    def mac(self, rseq: int, body: bytes) -> bytes:
        """The line's HMAC-SHA256 (``aip-spool-line-1``), hex."""
        inner = self._inner.copy()
        inner.update(b"%d\n" % rseq)
        inner.update(body)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest().encode("ascii")

    def mac2(self, rseq: int, body: bytes) -> bytes:
        """The line's keyed BLAKE2b-256 (``aip-spool-line-2``), hex."""
        state = self._b2.copy()
        state.update(b"%d\n" % rseq)
        state.update(body)
        return state.hexdigest().encode("ascii")

    def sign(self, rseq: int, body: bytes) -> bytes:
        """The spool line (newline included) of one record; ``body`` without its newline."""
        mac = self.mac2(rseq, body) if self.sign_mac2 else self.mac(rseq, body)
        return b"%s %s\n" % (mac, body)

    def _authentic(self, mac: bytes, rseq: int, body: bytes) -> bool:
        """``mac`` is either MAC of the line: the one we sign with is tried first."""
        first, other = (self.mac2, self.mac) if self.sign_mac2 else (self.mac, self.mac2)
        return compare_digest(mac, first(rseq, body)) or compare_digest(mac, other(rseq, body))

    def holds(self, line: bytes, rseq: int) -> bool:
        """``line`` (without its newline) is an authentic line of this session for ``rseq``:
        its MAC binds session, rseq and the record's bytes, so no parse of the record is
        needed when the rseq it must hold is known (a spool compaction's tail)."""
        mac, gap, body = line[:MAC_CHARS], line[MAC_CHARS : MAC_CHARS + 1], line[MAC_CHARS + 1 :]
        return gap == b" " and bool(body) and self._authentic(mac, rseq, body)

    def opened_as(self, line: bytes, rseq: int) -> dict[str, Any] | None:
        """``open``'s record when ``holds(line, rseq)``, else None: the MAC first, then one
        parse (an authentic line is a record of ours, so ``open``'s other checks hold)."""
        if not self.holds(line, rseq):
            return None
        record = orjson.loads(line[MAC_CHARS + 1 :])
        if not isinstance(record, dict) or record.get("rseq") != rseq:
            return None
        return record if record.get("session") == self.session else None

    def open(self, line: bytes) -> tuple[dict[str, Any] | None, str]:
        """(the record, "") when ``line`` (without its newline) is authentic and of this
        session, else (None, why not)."""
        mac, body = line[:MAC_CHARS], line[MAC_CHARS + 1 :]
        if len(line) <= MAC_CHARS + 1 or line[MAC_CHARS : MAC_CHARS + 1] != b" ":
            return None, "no MAC"
        if not _MAC.fullmatch(mac):
            return None, "no MAC"
        try:
            record = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None, "not JSON"
        if not isinstance(record, dict):
            return None, "not an object"
        rseq = record.get("rseq")
        if type(rseq) is not int or rseq < 0:
            return None, "no valid rseq"
        if record.get("session") != self.session:
            return None, "record of another session"
        if not self._authentic(mac, rseq, body):
            return None, "MAC mismatch"
        return record, ""
