"""Suite-wide test setup: the repository root on sys.path (``tests.*`` helpers) and the
audit-schema plugin that validates every audit log the suite writes (tests/audit_schema_check)."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

pytest_plugins = ("tests.audit_schema_check",)

# Proxies spool audit records they cannot hand over beside the default audit log; keep every
# process the suite starts away from the real ~/.local/state (tests that need their own
# location set AIP_AUDIT_LOG or XDG_STATE_HOME themselves).
if "AIP_TEST_KEEP_STATE" not in os.environ:
    os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="aip-test-state-")
    atexit.register(shutil.rmtree, os.environ["XDG_STATE_HOME"], ignore_errors=True)
