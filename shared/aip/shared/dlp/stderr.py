"""Line-buffered redaction of an MCP server's stderr (``spec.dlp.filter_stderr``).

Write boundaries do not matter: bytes are held until a newline (with a length cap), so a secret
split across two writes is redacted whole. Works on raw bytes, plus their shadow view.
"""

from __future__ import annotations

from collections import Counter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

    from aip.shared.dlp.redactor import Redactor

STDERR_MAX_LINE_BYTES: Final = 64 * 1024
STDERR_CUT_WINDOW_BYTES: Final = 4096  # look this far back for whitespace to cut a long line


class StderrFilter:
    """Redacts a child's stderr line by line, whatever the write boundaries.

    Bytes are held until a newline, so a secret split across two writes is still seen whole.
    A line longer than ``max_line_bytes`` is flushed in parts, cut after the last whitespace
    in the final ``STDERR_CUT_WINDOW_BYTES`` if there is one (secrets hold no whitespace; a
    secret straddling a forced cut in a whitespace-free run can be split). The lines of a
    private key block (BEGIN line to END line) are dropped after the BEGIN line's marker.
    """

    def __init__(self, redactor: Redactor, *, max_line_bytes: int = STDERR_MAX_LINE_BYTES) -> None:
        self._redactor = redactor
        self._max = max(1, max_line_bytes)
        self._buf = bytearray()
        self._in_key = False
        self._key_lines = 0
        self._guard_keys = "private-key" in redactor.rule_names
        self.counts: Counter[str] = Counter()

    def feed(self, data: bytes) -> bytes:
        self._buf += data
        out: list[bytes] = []
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                break
            line = bytes(self._buf[: nl + 1])
            del self._buf[: nl + 1]
            out.append(self._line(line))
        while len(self._buf) > self._max:
            lo = max(1, self._max - STDERR_CUT_WINDOW_BYTES)
            window = self._buf[lo : self._max]
            cut = max(window.rfind(b" "), window.rfind(b"\t"))
            end = lo + cut + 1 if cut >= 0 else self._max
            part = bytes(self._buf[:end])
            del self._buf[:end]
            out.append(self._line(part))
        return b"".join(out)

    def close(self) -> bytes:
        """Flush what is left (a last line without a newline)."""
        rest = bytes(self._buf)
        self._buf.clear()
        return self._line(rest) if rest else b""

    def _line(self, line: bytes) -> bytes:
        if self._in_key:
            self._key_lines += 1
            if _KEY_END in line.upper() or self._key_lines > _MAX_KEY_LINES:
                self._in_key = False
            return b""
        red, counts = self._redactor.redact_bytes(line)
        self.counts.update(counts)
        if self._guard_keys and counts.get("private-key") and _opens_key(line):
            self._in_key, self._key_lines = True, 0
            if not red.endswith(b"\n"):
                red += b"\n"
        return red


_KEY_BEGIN: Final = b"-----BEGIN"
_KEY_END: Final = b"-----END"
_MAX_KEY_LINES: Final = 200  # a 16384-bit RSA key is ~190 lines of 64


def _opens_key(line: bytes) -> bool:
    upper = line.upper()
    begin = upper.rfind(_KEY_BEGIN)
    return begin >= 0 and b"PRIVATE KEY" in upper[begin:] and _KEY_END not in upper[begin:]
