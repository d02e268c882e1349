"""Canonical digests of JSON values: what a remembered decision binds (docs/grants.md).

Apart from the approver protocol's ``GrantFacts`` (aip.shared.protocol.facts), which carries
them: the proxy digests its server's command line and every tools/list entry it relays, long
before (and often without) any ask, so its start need not load the protocol.
"""

from __future__ import annotations

import orjson

from aip.shared.hashes import sha256

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def canonical_digest(value: Any) -> str:
    """sha256 hex of orjson with sorted keys: the same for the same JSON whatever its key
    order or spacing (the bytes a policy pattern matches non-strings against). A value orjson
    cannot encode (too deep, a lone surrogate) gets a random digest: it equals nothing, so no
    exact grant ever matches it."""
    try:
        data = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONEncodeError, TypeError, RecursionError):
        import secrets  # rare: not imported for it at start-up

        return secrets.token_hex(32)
    return sha256(data).hexdigest()
