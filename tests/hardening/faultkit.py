"""Helpers for the fault-injection tests: an approver started under a file-size limit, and a
blocking ``ask`` over the real approval client. Every wait has a deadline."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from aip.proxy.approval.api import AskRequest, AskResult
from aip.proxy.approval.zmq_client import ZmqApprovalClient
from tests.support.approverproc import Approver, hello, new_session

# Tests that ask many times in a row are not testing the approval-fatigue budget.
UNLIMITED_ASKS = ("--ask-rate", "100000", "--ask-burst", "100000")


class LimitedApprover(Approver):
    """``Approver`` whose process runs with RLIMIT_FSIZE = ``fsize`` bytes and SIGXFSZ
    ignored (DESIGN §9: root-proof "disk full": write() fails with EFBIG)."""

    def __init__(self, folder: Path, dialog: str, *, fsize: int, timeout_s: float = 5.0) -> None:
        self.folder = folder
        self.endpoint = f"ipc://{folder}/run/approver.sock"
        self.log_path = folder / f"approver-{time.monotonic_ns()}.log"
        self.audit_path = folder / "audit.jsonl"
        env = {**os.environ, "AIP_AUDIT_LOG": str(self.audit_path)}
        argv = [sys.executable, "-m", "aip.approver", "--endpoint", self.endpoint]
        argv += ["--dialog", dialog, "--timeout", str(timeout_s), *UNLIMITED_ASKS]

        def limit() -> None:  # runs in the child between fork and exec
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, hard))

        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=env,
                start_new_session=True,
                preexec_fn=limit,  # the test process has no threads that could hold a lock
            )


def client(endpoint: str) -> ZmqApprovalClient:
    return ZmqApprovalClient(endpoint, hello(new_session()))


def ask(c: ZmqApprovalClient, request_id: str | int, timeout_s: float = 10.0) -> AskResult:
    """One ask through the real client; the result, or AssertionError at the deadline."""
    done = threading.Event()
    results: list[AskResult] = []

    def on_done(result: AskResult) -> None:
        results.append(result)
        done.set()

    request = AskRequest(
        request_id=request_id,
        tool="write_file",
        arguments={"path": f"/tmp/x{request_id}", "content": "c" * 200},
        rule="write_file ask",
        digest="b" * 64,
        size=300,
    )
    c.ask(request, on_done)
    assert done.wait(timeout_s), f"ask {request_id!r} not answered in {timeout_s} s"
    assert len(results) == 1
    return results[0]
