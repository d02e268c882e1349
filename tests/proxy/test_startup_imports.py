"""Start-up stays light (issue 2: <= 200 ms added, RSS <= 35 MB): the relay's modules do not
pull in asyncio, pyzmq or psutil; those load only when needed (asks, shutdown). Issue 16 (start-up
<= 100 ms added): nor the approver protocol's messages (~12 ms of dataclasses), which come with
the approval client, after the agent's ``initialize``."""

from __future__ import annotations

import subprocess
import sys


def test_relay_modules_do_not_import_heavy_packages() -> None:
    code = (
        "import sys, aip.proxy.cli, aip.proxy.runner;"
        "import aip.proxy.relay.upstream, aip.proxy.relay.downstream;"
        "import aip.shared.policy.load, aip.shared.policy.engine;"
        "heavy = ('asyncio', 'zmq', 'psutil', 'mcp', 'aip.shared.protocol.messages');"
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == ""
