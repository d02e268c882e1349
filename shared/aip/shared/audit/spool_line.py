"""The spool's line format: one audit record per line, authenticated with the session's key.

``<mac> <record>\\n``: ``record`` is the orjson bytes the proxy made, ``mac`` the hex
HMAC-SHA256 under the session key (32 random bytes made with the session, held in the proxy's
memory and given to the approver in ``hello``) over a domain tag, the session, the record's
``rseq`` and the exact record bytes. The approver ingests a spool line only if it opens here
with the key it learnt for that session: a line altered, forged, or moved from another
session's spool does not (DESIGN §8).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any, Final

import orjson

MAC_CHARS: Final = 64
_TAG: Final = b"aip-spool-line-1\n"
_MAC: Final = re.compile(rb"[0-9a-f]{64}")


class LineKey:
    """The session key with its HMAC state over the tag and session computed once (a line
    then costs one copy and the hash of its own bytes)."""

    def __init__(self, key: bytes, session: str) -> None:
        self.session = session
        self._base = hmac.new(key, b"%s%s\n" % (_TAG, session.encode("ascii")), hashlib.sha256)

    def mac(self, rseq: int, body: bytes) -> bytes:
        h = self._base.copy()
        h.update(b"%d\n" % rseq)
        h.update(body)
        return h.hexdigest().encode("ascii")

    def sign(self, rseq: int, body: bytes) -> bytes:
        """The spool line (newline included) of one record; ``body`` without its newline."""
        return b"%s %s\n" % (self.mac(rseq, body), body)

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
        if not hmac.compare_digest(mac, self.mac(rseq, body)):
            return None, "MAC mismatch"
        return record, ""
