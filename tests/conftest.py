"""Suite-wide test setup: the repository root on sys.path (``tests.*`` helpers) and the
audit-schema plugin that validates every audit log the suite writes (tests/audit_schema_check)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

pytest_plugins = ("tests.audit_schema_check",)
