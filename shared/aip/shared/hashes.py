"""SHA-256, BLAKE2b and a constant-time compare for code on aip-proxy's start path, without
importing ``hashlib`` or ``hmac`` there (issue 16: start-up).

aip-proxy keeps OpenSSL out (aip.proxy.lean.without_openssl: ``_hashlib`` is None in
``sys.modules``). Without it, ``import hashlib`` builds a constructor for each of its six
always-supported algorithms from CPython's own modules (md5, sha1, sha256, sha512, blake2,
sha3: ~1.3 ms of a start, measured with the rest of a start loaded) and ``hmac`` needs
hashlib; the proxy uses two of them. So in such a process these are CPython's own
constructors, imported directly: the very objects hashlib would hand out there. In every
other process (OpenSSL allowed: the approver, aipctl, tests) they are hashlib's.
``compare_digest`` is the one ``hmac`` re-exports on CPython without OpenSSL.
"""

from __future__ import annotations

import sys
from _operator import _compare_digest as compare_digest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from hashlib import blake2b, sha256
elif sys.modules.get("_hashlib", False) is None:  # OpenSSL kept out of this process
    try:
        from _sha2 import sha256  # CPython 3.12+
    except ImportError:
        try:
            from _sha256 import sha256  # CPython 3.11
        except ImportError:
            from hashlib import sha256
    try:
        from _blake2 import blake2b
    except ImportError:
        from hashlib import blake2b
else:
    from hashlib import blake2b, sha256

__all__ = ["blake2b", "compare_digest", "sha256"]
