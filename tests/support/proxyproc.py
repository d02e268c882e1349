"""Drive a real ``aip-proxy`` process over raw pipes, with deadlines and no sleeps.

``ProxyProcess`` starts the installed console script in its own session with stderr going to
a file, sends lines, reads replies with a deadline (select), and on close kills its group.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.support.fdwait import readable

SUPPORT = Path(__file__).resolve().parent
RAW_SERVER = [sys.executable, str(SUPPORT / "raw_server.py")]
MCP_SERVER = [sys.executable, str(SUPPORT / "mcp_server.py")]

# Short graces so supervision tests take well under a second each. The suite's private state
# directory rides along: an ``mcp`` stdio client passes only a minimal environment on, and a
# proxy spools its audit records under $XDG_STATE_HOME (never the real ~/.local/state).
FAST_ENV = {
    "AIP_PROXY_STDIN_GRACE_S": "0.3",
    "AIP_PROXY_TERM_GRACE_S": "0.3",
    "AIP_PROXY_PROGRESS_INTERVAL_S": "0.2",
    **{k: os.environ[k] for k in ("XDG_STATE_HOME", "AIP_FORK_SERVER") if k in os.environ},
    # Set by tests/conftest.py only when the suite runs through the fork server.
    **(
        {
            k: os.environ[k]
            for k in ("XDG_RUNTIME_DIR", "AIP_FORK_SERVER_IDLE_S", "AIP_SANDBOX")
            if k in os.environ
        }
        if os.environ.get("AIP_TEST_FORK_SERVER") == "1"
        else {}
    ),
}


def proxy_command() -> list[str]:
    exe = shutil.which("aip-proxy")
    command = [exe] if exe else [sys.executable, "-m", "aip.proxy"]
    if os.environ.get("AIP_TEST_FORK_SERVER") == "1":  # served only without capabilities
        from tests.support.forkkit import CAPLESS

        return [*CAPLESS, *command]
    return command


def write_policy(directory: Path, spec_yaml: str, name: str = "test") -> Path:
    """A policy file only its owner can write (the proxy refuses anything else)."""
    path = directory / f"{name}.yaml"
    body = "\n".join("  " + line for line in spec_yaml.strip("\n").splitlines())
    head = f"apiVersion: aip.io/v1alpha1\nkind: AgentPolicy\nmetadata:\n  name: {name}\n"
    path.write_text(f"{head}spec:\n{body}\n")
    path.chmod(0o600)
    return path


class ProxyProcess:
    def __init__(
        self,
        policy: Path | None,
        server: list[str],
        tmp_path: Path,
        *,
        extra_args: list[str] | None = None,
        env: dict[str, str | None] | None = None,
        wrap: list[str] | None = None,
    ) -> None:
        """``wrap``: a command the proxy runs under (``setpriv`` to run it as another user);
        ``env`` adds to the suite's environment, a None value removes that variable."""
        self.stderr_path = tmp_path / f"proxy-{time.monotonic_ns()}.stderr"
        args = [*(wrap or []), *proxy_command()]
        if policy is not None:
            args += ["--policy", str(policy)]
        args += [*list(extra_args or []), "--", *server]
        full_env = {k: v for k, v in os.environ.items() if k != "AIP_AGENT_ID"}
        for name, value in {**FAST_ENV, **(env or {})}.items():
            if value is None:
                full_env.pop(name, None)
            else:
                full_env[name] = value
        with self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                args,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                env=full_env,
                start_new_session=True,
                bufsize=0,
            )
        assert self.proc.stdin is not None
        self._stdin_pipe = f"pipe:[{os.fstat(self.proc.stdin.fileno()).st_ino}]"
        self._buf = b""

    # ---- I/O ----

    def send(self, message: dict[str, Any] | bytes) -> None:
        data = message if isinstance(message, bytes) else json.dumps(message).encode() + b"\n"
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)

    def recv_line(self, timeout: float = 10.0) -> bytes:
        """The next stdout line; AssertionError (with the proxy's log) at the deadline."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no reply within {timeout}s; proxy log:\n{self.log()}")
            if readable(fd, left):
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise AssertionError(f"proxy closed stdout; log:\n{self.log()}")
                self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        obj = json.loads(self.recv_line(timeout))
        assert isinstance(obj, dict)
        return obj

    def recv_id(self, request_id: Any, timeout: float = 10.0) -> dict[str, Any]:
        """Skip notifications and other ids until the reply to ``request_id``."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self.recv(max(deadline - time.monotonic(), 0.01))
            if "method" not in msg and msg.get("id") == request_id:
                return msg

    def request(
        self,
        request_id: Any,
        method: str,
        params: dict[str, Any] | None = None,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)
        return self.recv_id(request_id, timeout)

    def call(self, request_id: Any, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return self.request(request_id, "tools/call", {"name": tool, "arguments": arguments})

    def initialize(self, timeout: float = 30.0) -> dict[str, Any]:
        """The handshake. Its deadline covers the server's start too: the real ``mcp``
        package's imports took over 10 s on a loaded 2-core run (a deadline, not a wait)."""
        reply = self.request(
            0,
            "initialize",
            {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "rawtest", "version": "1"},
            },
            timeout,
        )
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return reply

    def assert_silent(self, timeout: float = 0.3) -> None:
        """Nothing arrives for ``timeout`` (used after a dropped notification: a ping that
        follows is answered, proving the drop was processed, so this bound is only a guard)."""
        assert self.proc.stdout is not None
        assert not readable(self.proc.stdout.fileno(), timeout), "unexpected output"
        assert b"\n" not in self._buf, "unexpected output"

    def close_stdin(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()

    def serve_once(self) -> int:
        """Initialize, then close stdin: the exit status (the process is killed if the
        handshake or the exit fails)."""
        try:
            self.initialize()
            self.close_stdin()
            return self.wait()
        finally:
            self.kill()

    def wait(self, timeout: float = 10.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"proxy still running; log:\n{self.log()}") from None

    def log(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return "<no log>"

    def session_pid(self) -> int:
        """The pid doing the proxy's work while it runs: ours, or the session the per-user
        fork server forked for us (aip.proxy.forkserver). That one is not our child and names
        our pid in its logs and records (aip.shared.own_pid): it is the process outside our
        tree that reads our stdin pipe."""
        import psutil

        ours = {self.proc.pid}
        with contextlib.suppress(psutil.Error):
            ours |= {p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)}
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) not in ours:
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{entry}/fd/0") == self._stdin_pipe:
                        return int(entry)
        return self.proc.pid

    def descendants(self) -> list[Any]:
        """The proxy's processes below it (the MCP server's tree), wherever it runs."""
        import psutil

        found = {}
        for root in {self.proc.pid, self.session_pid()}:
            with contextlib.suppress(psutil.Error):
                for p in psutil.Process(root).children(recursive=True):
                    found[p.pid] = p
        return list(found.values())

    def decisions(self) -> list[dict[str, Any]]:
        """The decision records the proxy wrote on stderr."""
        out = []
        for line in self.log().splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def kill(self) -> None:
        """Teardown: the proxy's group, and its descendants (the server has its own group); a
        session forked by the fork server, and its tree, too."""
        import psutil

        family = self.descendants()
        session = self.session_pid()
        if session != self.proc.pid:
            with contextlib.suppress(psutil.Error):
                family.append(psutil.Process(session))
        for p in family:
            with contextlib.suppress(psutil.Error):
                p.kill()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()


def read_log_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
