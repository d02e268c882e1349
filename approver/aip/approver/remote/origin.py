"""Where a remote message came from, as the audit log and dialogs name it (issue 14.4):
``{"transport": "curve", "device", "key_fingerprint", "address"}``. Built by the listener
from what CURVE authenticated (the key, mapped to its device by the trust store) and the
connection's peer address, never from anything the proxy says about itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Origin:
    transport: str
    device: str
    key_fingerprint: str
    address: str

    def to_json(self) -> dict[str, Any]:
        return {
            "transport": self.transport,
            "device": self.device,
            "key_fingerprint": self.key_fingerprint,
            "address": self.address,
        }
