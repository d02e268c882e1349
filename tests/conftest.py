"""Suite-wide test setup: the repository root on sys.path (``tests.*`` helpers) and the
audit-schema plugin that validates every audit log the suite writes (tests/audit_schema_check)."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.approverproc import short_dir  # noqa: E402

pytest_plugins = ("tests.audit_schema_check",)

# CI runs every property test on a fixed seed (HYPOTHESIS_PROFILE=ci, set by .ci/run): what
# passed on a developer's machine with that seed passes in CI, so a landing never hangs on
# the luck of the draw. Local runs keep exploring new examples; a failure they find is
# printed with its reproduce blob and becomes a regression example.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("HYPOTHESIS_PROFILE"):
    settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])

# Proxies spool audit records they cannot hand over beside the default audit log; keep every
# process the suite starts away from the real ~/.local/state (tests that need their own
# location set AIP_AUDIT_LOG or XDG_STATE_HOME themselves).
if "AIP_TEST_KEEP_STATE" not in os.environ:
    os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="aip-test-state-")
    atexit.register(shutil.rmtree, os.environ["XDG_STATE_HOME"], ignore_errors=True)

# The per-user fork server (aip.proxy.forkserver) is off for the suite's proxies unless a test
# turns it on for its own runtime folder (tests/support/forkkit): a proxy must not leave a
# server behind. AIP_TEST_FORK_SERVER=1 runs every proxy of the suite through one instead
# (scripts/check runs the proxy's process-level tests that way too): one server per worker,
# in a runtime folder of its own, stopped at the end. It serves no process with capabilities,
# so as root the proxies run without any (tests.support.proxyproc.proxy_command), and then
# without bwrap, which cannot start for root without CAP_SYS_ADMIN (--sandbox off).
if os.environ.get("AIP_TEST_FORK_SERVER") == "1":
    _RUN = tempfile.mkdtemp(prefix="aip-fs-", dir="/tmp")  # short: sun_path
    os.environ.update(
        {"XDG_RUNTIME_DIR": _RUN, "AIP_FORK_SERVER": "on", "AIP_FORK_SERVER_IDLE_S": "60"}
    )
    if os.geteuid() == 0:
        os.environ["AIP_SANDBOX"] = "off"

    def _stop_fork_servers() -> None:
        from tests.support.forkkit import stop_servers

        stop_servers(Path(_RUN))
        shutil.rmtree(_RUN, ignore_errors=True)

    atexit.register(_stop_fork_servers)
else:
    os.environ["AIP_FORK_SERVER"] = "off"


@pytest.fixture
def folder() -> Iterator[Path]:
    """A private folder with a short path: ipc socket paths must fit sun_path (~103 bytes)."""
    with short_dir() as path:
        yield path
