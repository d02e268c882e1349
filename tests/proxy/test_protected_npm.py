"""Issue 11, findings 1-3, performed through a real ``aip-proxy`` in front of the real
``@modelcontextprotocol/server-filesystem`` rooted at a fake $HOME: relative paths, ``..``,
the policy, the spool, the HMAC key, the NFD spelling, the client's roots and the renamed
ancestor with a planted policy. Every attack is refused with -32007 and recorded, or (the
renamed ancestor) the planted policy is refused at reload and the old one stays in force.

These exercise the *string* layer: the proxy runs without the kernel sandbox here.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aip.shared.outcomes import Outcome, row
from tests.support.approverproc import short_dir, wait_for
from tests.support.npm_servers import npm_server
from tests.support.proxyproc import ProxyProcess, write_policy

PROTECTED = row(Outcome.PROTECTED_PATH).code
FORBIDDEN = row(Outcome.NOT_ALLOWED).code
SECRET = "-----BEGIN OPENSSH PRIVATE KEY----- not really"
TOOLS = (
    "read_text_file, write_file, move_file, create_directory, list_directory, "
    "list_allowed_directories"
)
SPEC = f"allowed_tools: [{TOOLS}]\nprotected_paths: [~/.ssh, ~/Café]\n"
PLANTED = (
    "apiVersion: aip.io/v1alpha1\nkind: AgentPolicy\nmetadata:\n  name: planted\n"
    "spec:\n  mode: monitor\n  allowed_tools: ['*']\n"
)
NFD_CAFE = "Cafe\u0301"  # the NFD spelling of "Café"


@pytest.fixture
def home() -> Iterator[Path]:
    with short_dir() as folder:  # the runtime dir's socket path must stay short
        home = folder / "home"
        (home / ".ssh").mkdir(parents=True)
        (home / ".ssh" / "id_ed25519").write_text(SECRET)
        (home / "Café").mkdir()
        (home / "Café" / "secret.txt").write_text(SECRET)
        (home / "Résumé").mkdir()
        (home / "Résumé" / "cv.txt").write_text("public cv")
        (home / "notes.txt").write_text("hello")
        (home / ".config" / "aip").mkdir(parents=True)
        write_policy(home / ".config" / "aip", SPEC, "policy")
        state = home / ".local" / "state" / "aip"
        (state / "spool").mkdir(parents=True)
        (state / "audit-hmac.key").write_text("k" * 64)
        (folder / "run").mkdir(mode=0o700)
        yield home


def start(home: Path, *server_args: str) -> ProxyProcess:
    env = {
        "HOME": str(home),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "XDG_RUNTIME_DIR": str(home.parent / "run"),
        "AIP_PROXY_RELOAD_INTERVAL_S": "0.05",
        "AIP_SANDBOX": "off",  # the string layer alone (the kernel layer has its own tests)
    }
    for name in ("AIP_AUDIT_LOG", "AIP_APPROVER_ENDPOINT", "AIP_POLICY"):
        env[name] = ""
    policy = home / ".config" / "aip" / "policy.yaml"
    args = server_args or (str(home),)
    proc = ProxyProcess(policy, [*npm_server("filesystem"), *args], home.parent, env=env)
    return proc


@pytest.fixture
def proxies() -> Iterator[list[ProxyProcess]]:
    started: list[ProxyProcess] = []
    yield started
    for proc in started:
        proc.kill()


def refused(proc: ProxyProcess, request_id: int, tool: str, arguments: dict[str, Any]) -> None:
    reply = proc.call(request_id, tool, arguments)
    assert reply.get("error", {}).get("code") == PROTECTED, (arguments, reply, proc.log())
    assert SECRET not in str(reply)
    records = [r for r in proc.decisions() if r.get("request_id") == request_id]
    assert [r["outcome"] for r in records] == ["protected_path"], (records, proc.log())


def text_of(reply: dict[str, Any]) -> str:
    assert "result" in reply, reply
    return "".join(c.get("text", "") for c in reply["result"].get("content", []))


def test_relative_dotdot_policy_spool_key_and_nfd_are_refused(
    home: Path, proxies: list[ProxyProcess]
) -> None:
    proc = start(home)
    proxies.append(proc)
    proc.initialize()
    assert "kernel sandbox off" in proc.log()  # only the string layer is at work here
    # The server really resolves relative paths against its root and folds NFD to NFC:
    assert text_of(proc.call(1, "read_text_file", {"path": "notes.txt"})) == "hello"
    nfd_cv = "Re\u0301sume\u0301/cv.txt"
    assert text_of(proc.call(2, "read_text_file", {"path": nfd_cv})) == "public cv"
    policy_text = (home / ".config" / "aip" / "policy.yaml").read_text()
    attacks: list[tuple[str, dict[str, Any]]] = [
        ("read_text_file", {"path": ".ssh/id_ed25519"}),
        ("read_text_file", {"path": "x/../.config/aip/policy.yaml"}),
        ("read_text_file", {"path": ".ssh"}),  # a bare name the root holds
        ("list_directory", {"path": ".ssh"}),
        ("write_file", {"path": ".config/aip/policy.yaml", "content": PLANTED}),
        ("write_file", {"path": "./.config/aip/../aip/policy.yaml", "content": PLANTED}),
        (
            "write_file",
            {"path": ".local/state/aip/spool/0123456789abcdef.jsonl", "content": "{}"},
        ),
        ("read_text_file", {"path": ".local/state/aip/audit-hmac.key"}),
        ("read_text_file", {"path": f"{NFD_CAFE}/secret.txt"}),
        ("read_text_file", {"path": f"{home}/{NFD_CAFE}/secret.txt"}),
        ("move_file", {"source": ".config/aip", "destination": "aip-old"}),
        ("move_file", {"source": "notes.txt", "destination": ".config/aip/policy.yaml"}),
    ]
    for n, (tool, arguments) in enumerate(attacks, start=10):
        refused(proc, n, tool, arguments)
    # Nothing changed on disk, and no reload into monitor mode: a tool outside the policy
    # is still refused after the poll has had time to see any change.
    assert (home / ".config" / "aip" / "policy.yaml").read_text() == policy_text
    assert (home / ".config" / "aip").is_dir()
    assert not [r for r in proc.decisions() if r.get("event") == "policy_reload"]
    reply = proc.call(40, "directory_tree", {"path": "."})
    assert reply.get("error", {}).get("code") == FORBIDDEN, reply
    # An ancestor of a protected path still works: the server stays useful.
    assert "notes.txt" in text_of(proc.call(41, "list_directory", {"path": "."}))


def test_a_renamed_ancestor_with_a_planted_policy_is_refused_at_reload(
    home: Path, proxies: list[ProxyProcess]
) -> None:
    """Through the server, neither the policy's folder nor an ancestor below the server's
    root can be moved (-32007). Done behind the string layer's back (a shell server, another
    process: here the test itself), the swap puts a prepared folder with a monitor-mode
    policy in place: the reload reads through the folder opened at start, sees another
    folder at the path, and refuses; the old policy stays in force."""
    proc = start(home)
    proxies.append(proc)
    proc.initialize()
    refused(proc, 1, "move_file", {"source": ".config/aip", "destination": "moved"})
    refused(proc, 2, "move_file", {"source": ".config", "destination": "config-old"})
    refused(proc, 3, "move_file", {"source": "evil", "destination": ".config"})
    refused(proc, 4, "list_directory", {"path": "x/../.config"})
    assert "result" in proc.call(5, "create_directory", {"path": "evil/aip"}), proc.log()
    assert "result" in proc.call(
        6, "write_file", {"path": "evil/aip/policy.yaml", "content": PLANTED}
    )
    (home / ".config").rename(home / "config-old")
    (home / "evil").rename(home / ".config")
    assert (home / ".config" / "aip" / "policy.yaml").read_text() == PLANTED

    def reloads() -> list[dict[str, Any]]:
        return [r for r in proc.decisions() if r.get("event") == "policy_reload"]

    wait_for(lambda: reloads(), 10, "a policy_reload record")
    os.kill(proc.proc.pid, signal.SIGHUP)  # and an explicit reload is refused the same way
    wait_for(lambda: len(reloads()) >= 2, 10, "a second policy_reload record")
    for rec in reloads():
        assert rec["detail"].startswith("refused"), rec
        assert "not the folder the policy was loaded from" in rec["detail"], rec
        assert rec["policy"]["name"] == "policy", rec
    assert "not the folder the policy was loaded from" in proc.log()
    # The old policy is in force: enforce mode, protected paths, tools outside the list.
    reply = proc.call(20, "directory_tree", {"path": "."})
    assert reply.get("error", {}).get("code") == FORBIDDEN, reply
    refused(proc, 21, "read_text_file", {"path": ".ssh/id_ed25519"})


def test_relative_paths_resolve_against_the_roots_the_client_declared(
    home: Path, proxies: list[ProxyProcess]
) -> None:
    """Started on another folder, the server takes the client's roots (roots/list) as its
    allowed directories and resolves relative paths against them: so does the check."""
    elsewhere = home.parent / "elsewhere"
    elsewhere.mkdir()
    proc = start(home, str(elsewhere))
    proxies.append(proc)
    proc.request(
        0,
        "initialize",
        {
            "protocolVersion": "2025-06-18",
            "capabilities": {"roots": {"listChanged": True}},
            "clientInfo": {"name": "rootstest", "version": "1"},
        },
    )
    proc.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    ask = proc.recv()
    assert ask.get("method") == "roots/list", ask
    roots = {"roots": [{"uri": f"file://{home}", "name": "home"}]}
    proc.send({"jsonrpc": "2.0", "id": ask["id"], "result": roots})

    def allowed() -> str:
        return text_of(proc.call(1, "list_allowed_directories", {}))

    wait_for(lambda: str(home) in allowed(), 10, "the server to take the client's roots")
    assert text_of(proc.call(2, "read_text_file", {"path": "notes.txt"})) == "hello"
    refused(proc, 3, "read_text_file", {"path": ".ssh/id_ed25519"})
    refused(proc, 4, "read_text_file", {"path": "x/../.config/aip/policy.yaml"})
