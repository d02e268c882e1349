"""Issue 14.1: a proxy in a container on the same machine, through a bind mount of the
approver's socket folder, across a user namespace.

bwrap plays the rootless container: a new user namespace in which *our* uid (root in CI, you
on a desktop) is mapped to another uid (1000, as rootless podman maps the container's root
to you), a new mount namespace, and the approver's folder bind-mounted at another path. The
kernel translates every uid both sides check (stat owner, SO_PEERCRED), so the real proxy
inside sees the folder, the socket and the approver as its own uid, and the real approver
outside sees the proxy as its own uid: the ask goes through. A proxy that runs as the
namespace's overflow uid (65534) cannot tell a stranger's folder from ours and is refused
(aip.shared.userns); one whose folder belongs to an unmapped uid is refused too.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

from tests.support.approverproc import Approver, answer_program, wait_for
from tests.support.proxyproc import MCP_SERVER, ProxyProcess, write_policy
from tests.support.systools import required_tool

pytestmark = pytest.mark.e2e

SPEC = """
allowed_tools: [read_file]
tool_rules:
  - tool: write_file
    action: ask
"""
INSIDE = "/run/aip"  # where the container sees the approver's folder
INSIDE_ENDPOINT = f"ipc://{INSIDE}/approver.sock"
REPO = Path(__file__).resolve().parents[2]
STRANGER = 54321  # a uid the namespace does not map
# A container's /proc is masked in part, so the kernel sandbox's own bwrap cannot mount a
# new one (measured: "Can't mount proc"); a contained proxy uses what works (docs/remote.md).
SANDBOX = ["--sandbox", "auto"]


def container(folder: Path, uid: int, socket_folder: Path) -> list[str]:
    """bwrap as a rootless container: user + mount namespace, our uid shown as ``uid``,
    the host's root read-only, a private /tmp with ``folder`` in it, ``socket_folder`` at INSIDE."""
    bwrap = required_tool("bwrap")
    return [
        bwrap,
        "--unshare-user",
        "--uid",
        str(uid),
        "--gid",
        str(uid),
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--tmpfs",
        "/run",
        "--tmpfs",
        "/tmp",
        # The checkout and its virtual environment stay visible when they live under /tmp
        # (a CI clone does): the private /tmp would hide the proxy's own program.
        *("--ro-bind", str(REPO), str(REPO)),
        *("--ro-bind", sys.prefix, sys.prefix),
        "--bind",
        str(folder),
        str(folder),
        "--bind",
        str(socket_folder),
        INSIDE,
        "--die-with-parent",
    ]


def contained_proxy(folder: Path, uid: int, socket_folder: Path) -> ProxyProcess:
    policy = write_policy(folder, SPEC, "container")
    env = {"XDG_STATE_HOME": str(folder / "state-ns"), "HOME": str(folder)}
    return ProxyProcess(
        policy,
        MCP_SERVER,
        folder,
        extra_args=["--approver", INSIDE_ENDPOINT, "--agent-id", "in-container", *SANDBOX],
        env={**env, "AIP_APPROVER_ENDPOINT": None},
        wrap=container(folder, uid, socket_folder),
    )


def test_a_proxy_in_a_user_namespace_asks_through_the_bind_mount(folder: Path) -> None:
    prog = answer_program(folder, "allow")
    with Approver(folder, f"exec:{prog}").wait_ready() as approver:
        runtime = Path(approver.endpoint.removeprefix("ipc://")).parent
        proxy = contained_proxy(folder, 1000, runtime)
        try:
            proxy.initialize()
            reply = proxy.call(1, "write_file", {"path": "/tmp/x", "content": "hi"})
            assert "error" not in reply, (reply, proxy.log())
            assert reply["result"]["content"][0]["text"] == "wrote 2 bytes to /tmp/x"
            assert proxy.call(2, "read_file", {"path": "/tmp/x"}).get("result"), proxy.log()
            # The proxy sends its own record in its next batch: wait while it runs.
            wait_for(lambda: len(approver.decisions()) >= 2, 20, "both records in the log")
        finally:
            proxy.kill()
    asked, allowed = sorted(approver.decisions(), key=lambda r: r["tool"], reverse=True)
    assert (asked["tool"], asked["reason"]) == ("write_file", "human approved")
    assert asked["agent_id"] == "in-container"
    assert (allowed["tool"], allowed["reason"]) == ("read_file", "policy allowed")
    assert "origin" not in asked  # a container on this machine is local: the ipc socket


def test_a_proxy_running_as_the_overflow_uid_is_refused(folder: Path) -> None:
    """Inside, 65534 is also what every unmapped owner looks like: never trusted."""
    prog = answer_program(folder, "allow")
    with Approver(folder, f"exec:{prog}").wait_ready() as approver:
        runtime = Path(approver.endpoint.removeprefix("ipc://")).parent
        proxy = contained_proxy(folder, 65534, runtime)
        try:
            proxy.initialize()
            reply = proxy.call(1, "write_file", {"path": "/tmp/x", "content": "hi"})
        finally:
            proxy.kill()
        assert reply["error"]["data"]["reason"] == "approver_untrusted", reply
        assert "overflow uid" in proxy.log()
        assert approver.decisions() == []  # it never reached the approver


@pytest.mark.parametrize("inside_uid", [1000, 65534])
def test_a_folder_of_an_unmapped_uid_is_refused(folder: Path, inside_uid: int) -> None:
    """A stranger's 0700 folder with a socket in it (uid 54321, not mapped inside: shown as
    65534). As 1000 the owner differs; as 65534 it would *equal* our uid without the rule."""
    stranger = folder / "stranger"
    stranger.mkdir(mode=0o700)
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(stranger / "approver.sock"))
        os.chown(stranger / "approver.sock", STRANGER, STRANGER)
        os.chown(stranger, STRANGER, STRANGER)
        proxy = contained_proxy(folder, inside_uid, stranger)
        try:
            proxy.initialize()
            reply = proxy.call(1, "write_file", {"path": "/tmp/x", "content": "hi"})
        finally:
            proxy.kill()
    assert reply["error"]["data"]["reason"] == "approver_untrusted", (reply, proxy.log())
    assert "65534" in proxy.log()
