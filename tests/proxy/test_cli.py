"""The ``aip-proxy`` command line: forms of the server command, and exit 2 with a clear message
for every usage or configuration error (never allow-all)."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.proxyproc import FAST_ENV, RAW_SERVER, ProxyProcess, proxy_command, write_policy

SPEC = "allowed_tools: [read_file]\n"


def _run(
    args: list[str], tmp_path: Path, env: dict[str, str] | None = None, stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    base = {k: v for k, v in os.environ.items() if k not in ("AIP_POLICY", "AIP_AGENT_ID")}
    base["HOME"] = str(tmp_path / "home")  # no ~/.config/aip/policy.yaml there
    return subprocess.run(
        [*proxy_command(), *args],
        input=stdin,
        capture_output=True,
        env={**base, **FAST_ENV, **(env or {})},
        timeout=30,
        check=False,
    )


def test_missing_server_command(tmp_path: Path) -> None:
    policy = write_policy(tmp_path, SPEC)
    r = _run(["--policy", str(policy)], tmp_path)
    assert r.returncode == 2
    assert b"no MCP server command" in r.stderr
    assert r.stdout == b""


def test_no_policy_is_an_error_never_allow_all(tmp_path: Path) -> None:
    r = _run(["--", *RAW_SERVER], tmp_path)
    assert r.returncode == 2
    assert b"no policy" in r.stderr
    assert r.stdout == b""


def test_policy_from_environment(tmp_path: Path) -> None:
    policy = write_policy(tmp_path, SPEC)
    line = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file"}}\n'
    r = _run(["--", *RAW_SERVER], tmp_path, env={"AIP_POLICY": str(policy)}, stdin=line)
    assert r.returncode == 0, r.stderr
    assert b'"result"' in r.stdout


def test_policy_not_owned_by_user_is_refused(tmp_path: Path) -> None:
    policy = write_policy(tmp_path, SPEC)
    nobody = pwd.getpwnam("nobody")
    if os.getuid() != 0:
        pytest.skip("needs root to chown the file to nobody")
    os.chown(policy, nobody.pw_uid, nobody.pw_gid)
    r = _run(["--policy", str(policy), "--", *RAW_SERVER], tmp_path)
    assert r.returncode == 2
    assert str(policy).encode() in r.stderr


def test_group_writable_policy_is_refused(tmp_path: Path) -> None:
    policy = write_policy(tmp_path, SPEC)
    policy.chmod(0o664)  # a mode-bit check: root is refused as well
    r = _run(["--policy", str(policy), "--", *RAW_SERVER], tmp_path)
    assert r.returncode == 2
    assert b"writable" in r.stderr


def test_invalid_policy_names_the_line(tmp_path: Path) -> None:
    policy = write_policy(tmp_path, "allowed_tools: [read_file]\nbogus_key: 1\n")
    r = _run(["--policy", str(policy), "--", *RAW_SERVER], tmp_path)
    assert r.returncode == 2
    assert f"{policy}:7".encode() in r.stderr  # the bogus_key line


def test_server_command_that_does_not_exist(tmp_path: Path) -> None:
    policy = write_policy(tmp_path, SPEC)
    r = _run(["--policy", str(policy), "--", str(tmp_path / "no-such-server")], tmp_path)
    assert r.returncode == 2
    assert b"cannot start the MCP server" in r.stderr


def test_target_and_double_dash_together_is_a_usage_error(tmp_path: Path) -> None:
    policy = write_policy(tmp_path, SPEC)
    r = _run(["--policy", str(policy), "--target", "x", "--", "y"], tmp_path)
    assert r.returncode == 2


def test_bad_timing_environment_is_a_usage_error(tmp_path: Path) -> None:
    policy = write_policy(tmp_path, SPEC)
    r = _run(
        ["--policy", str(policy), "--", *RAW_SERVER],
        tmp_path,
        env={"AIP_PROXY_TERM_GRACE_S": "soon"},
    )
    assert r.returncode == 2
    assert b"AIP_PROXY_TERM_GRACE_S" in r.stderr


def test_unknown_option_is_a_usage_error(tmp_path: Path) -> None:
    r = _run(["--frobnicate", "--", "true"], tmp_path)
    assert r.returncode == 2
    assert r.stdout == b""


def test_target_form_is_shell_split(tmp_path: Path) -> None:
    policy = write_policy(tmp_path, SPEC)
    target = f"{sys.executable} '{RAW_SERVER[1]}' --tools 'read_file,other'"
    p = ProxyProcess(policy, [], tmp_path, extra_args=["--target", target])
    try:
        tools = p.request(1, "tools/list")["result"]["tools"]
        assert [t["name"] for t in tools] == ["read_file"]
    finally:
        p.kill()


def test_python_dash_m_works(tmp_path: Path) -> None:
    policy = write_policy(tmp_path, SPEC)
    line = b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n'
    r = subprocess.run(
        [sys.executable, "-m", "aip.proxy", "--policy", str(policy), "--", *RAW_SERVER],
        input=line,
        capture_output=True,
        env={**os.environ, **FAST_ENV},
        timeout=30,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == b'{"jsonrpc":"2.0","id":1,"result":{}}\n'


def test_help_exits_zero_and_keeps_the_wire_clean(tmp_path: Path) -> None:
    r = _run(["--help"], tmp_path)
    assert r.returncode == 0
    assert r.stdout == b""  # stdout is the JSON-RPC wire, even for --help
    assert b"--policy" in r.stderr
