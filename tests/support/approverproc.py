"""Test helpers for the real approver: start ``python -m aip.approver``, exec answer programs,
and a raw DEALER that speaks the protocol. No sleeps: every wait has a deadline."""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import zmq

from aip.shared.protocol.codec import encode
from aip.shared.protocol.frames import Message, ToProxy, decode_to_proxy
from aip.shared.protocol.messages import PROTO, Ask, Decision, Hello, PolicyRef, Welcome, new_nonce

ANSWER = Path(__file__).with_name("answer.py")
READY = "aip-approver ready"


@contextlib.contextmanager
def short_dir() -> Iterator[Path]:
    """A private dir with a short path (ipc paths are limited to ~103 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="aip-t-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def answer_program(folder: Path, behaviour: str | None = None, name: str = "answer") -> Path:
    """An exec: program (absolute path, no args) running tests/support/answer.py."""
    script = folder / f"{name}.sh"
    arg = f" {behaviour}" if behaviour else ""
    script.write_text(f"#!/bin/sh\nexec {sys.executable} {ANSWER}{arg}\n")
    script.chmod(0o755)
    return script


def wait_for(predicate: Any, timeout_s: float, what: str, poll_s: float = 0.01) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(poll_s)


class Approver:
    """A real approver process; stderr goes to a file, the process has its own group."""

    def __init__(
        self,
        folder: Path,
        dialog: str,
        *,
        timeout_s: float = 5.0,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        endpoint: str | None = None,
        wrap: Sequence[str] = (),
    ) -> None:
        """``wrap``: a command line the approver runs under (``unshare ...``)."""
        self.folder = folder
        self.endpoint = endpoint or f"ipc://{folder}/run/approver.sock"
        self.log_path = folder / f"approver-{time.monotonic_ns()}.log"
        argv = [*wrap, sys.executable, "-m", "aip.approver", "--endpoint", self.endpoint]
        argv += ["--dialog", dialog, "--timeout", str(timeout_s), *args]
        full_env = dict(os.environ if env is None else env)
        full_env.setdefault("AIP_AUDIT_LOG", str(folder / "audit.jsonl"))
        self.audit_path = Path(full_env["AIP_AUDIT_LOG"])
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=full_env,
                start_new_session=True,
            )

    def wait_ready(self, timeout_s: float = 10.0) -> Approver:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"approver exited {self.proc.returncode}:\n{self.log()}")
            return READY in self.log()

        try:
            wait_for(ready, timeout_s, "approver readiness")
        except AssertionError:
            self.kill()
            raise
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def decisions(self) -> list[dict[str, Any]]:
        """The decision records of the central audit log (complete lines only)."""
        import json

        try:
            data = self.audit_path.read_text()
        except FileNotFoundError:
            return []
        records = [
            json.loads(line) for line in data.splitlines(keepends=True) if line.endswith("\n")
        ]
        return [r for r in records if r.get("event") == "decision"]

    def stop(self, timeout_s: float = 5.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        finally:
            self.kill()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        from tests.audit_schema_check import check_later

        check_later(self.audit_path)  # every record the suite writes must match the schema

    def __enter__(self) -> Approver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def unnamed_uid() -> int:
    """A uid with no passwd entry (as a container's user often is)."""
    for uid in range(54321, 54321 + 1000):
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
    raise AssertionError("no free uid in the probed range")


def new_session() -> str:
    return os.urandom(8).hex()


_KEYS: dict[str, str] = {}  # session -> its key, so every hello of a session carries the same


def session_key(session: str) -> str:
    return _KEYS.setdefault(session, secrets.token_hex(32))


def hello(
    session: str, agent_id: str = "agent-test", server: str = "fs", key: str | None = None
) -> Hello:
    return Hello(
        session=session,
        pid=os.getpid(),
        agent_id=agent_id,
        server=server,
        policy=PolicyRef(name="test", sha256="0" * 64),
        proto=PROTO,
        key=session_key(session) if key is None else key,
    )


def ask(session: str, request_id: str | int = 1, tool: str = "write_file", **arguments: Any) -> Ask:
    return Ask(
        session=session,
        request_id=request_id,
        nonce=new_nonce(),
        digest="a" * 64,
        tool=tool,
        arguments=arguments or {"path": "/etc/config.yaml"},
        rule="write_file ask",
        size=10,
    )


class Dealer:
    """A raw proxy-side DEALER for protocol-level tests."""

    def __init__(self, endpoint: str, session: str | None = None) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.connect(endpoint)
        self.session = session or new_session()

    def send(self, msg: Message | bytes) -> None:
        self.sock.send(msg if isinstance(msg, bytes) else encode(msg))

    def recv(self, timeout_s: float = 5.0) -> ToProxy:
        if not self.sock.poll(int(timeout_s * 1000)):
            raise AssertionError("no message from the approver in time")
        return decode_to_proxy(self.sock.recv())

    def nothing(self, timeout_s: float) -> bool:
        return not self.sock.poll(int(timeout_s * 1000))

    def pending(self) -> bool:
        """A message is waiting to be read (never blocks)."""
        return bool(self.sock.poll(0))

    def hello(self, **kw: Any) -> Welcome:
        self.send(hello(self.session, **kw))
        msg = self.recv()
        assert isinstance(msg, Welcome), msg
        return msg

    def ask(self, request_id: str | int = 1, **kw: Any) -> Ask:
        msg = ask(self.session, request_id, **kw)
        self.send(msg)
        return msg

    def decision(self, timeout_s: float = 5.0) -> Decision:
        msg = self.recv(timeout_s)
        assert isinstance(msg, Decision), msg
        return msg

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()

    def __enter__(self) -> Dealer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
