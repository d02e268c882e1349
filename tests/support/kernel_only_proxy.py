"""``aip-proxy`` with the string check of protected paths switched off: what is left is the
kernel layer (the sandbox), so a test can show that it alone refuses an attack. Only tests
start this; the installed proxy has no such switch.
"""

from __future__ import annotations

import sys
from typing import Any

from aip.proxy.cli import main
from aip.shared.policy.protected import ProtectedRoots


def _never(self: ProtectedRoots, *args: Any, **kwargs: Any) -> None:
    return None


if __name__ == "__main__":
    if not callable(getattr(ProtectedRoots, "hit", None)):
        raise SystemExit("kernel_only_proxy: ProtectedRoots.hit is gone; update this seam")
    ProtectedRoots.hit = _never  # type: ignore[method-assign]
    sys.exit(main(sys.argv[1:]))
