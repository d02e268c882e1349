"""Issue 14.2: an agent on an SSH host asks the desktop through the approver's restricted
extra socket, forwarded with a real ``ssh -R`` to a real OpenSSH server (sshkit).

"The other side" is this machine too: the proxy connects to the socket sshd made for the
forward, so every byte goes desktop approver <- ssh client <- sshd <- proxy. The proxy runs
in its own UTS namespace whose host name is ``devbox``: the name it claims in its hello.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from aip.shared.protocol.grants import Grants, GrantsOp
from aip.shared.protocol.messages import Error, ErrorCode, MsgType, new_nonce
from aip.shared.protocol.status import Status
from tests.support.approverproc import Approver, Dealer, answer_program, wait_for
from tests.support.proxyproc import MCP_SERVER, ProxyProcess, read_log_lines, write_policy
from tests.support.sshkit import SshServer, forward

pytestmark = pytest.mark.e2e

SPEC = """
allowed_tools: [read_file]
tool_rules:
  - tool: write_file
    action: ask
"""
SSH_ORIGIN = {"transport": "ssh", "device": "devbox", "key_fingerprint": "", "address": ""}


def _records(approver: Approver) -> list[dict[str, object]]:
    lines = approver.audit_path.read_text().splitlines(keepends=True)
    return [json.loads(line) for line in lines if line.endswith("\n")]


def _named_devbox() -> list[str]:
    """Run a command in a new UTS namespace whose host name is ``devbox``."""
    unshare = shutil.which("unshare")
    assert unshare is not None, "unshare (util-linux) is needed"
    return [unshare, "--uts", "/bin/sh", "-c", 'hostname devbox && exec "$@"', "sh"]


def test_an_ask_over_ssh_reaches_the_desktop_labelled_remote(folder: Path) -> None:
    record = folder / "dialogs.jsonl"
    env = {**os.environ, "AIP_TEST_RECORD": str(record)}
    prog = answer_program(folder, "allow")
    remote = folder / "remote-run"
    remote.mkdir(mode=0o700)
    sshd = SshServer(folder)
    try:
        with Approver(folder, f"exec:{prog}", env=env).wait_ready() as approver:
            extra = folder / "run" / "approver-extra.sock"
            assert extra.exists(), approver.log()
            with forward(sshd, remote / "approver.sock", extra) as far:
                policy = write_policy(folder, SPEC, "devbox")
                proxy = ProxyProcess(
                    policy,
                    MCP_SERVER,
                    folder,
                    extra_args=["--approver", f"ipc://{far}", "--sandbox", "auto"],
                    env={"XDG_STATE_HOME": str(folder / "devbox-state")},
                    wrap=_named_devbox(),
                )
                try:
                    proxy.initialize()
                    reply = proxy.call(1, "write_file", {"path": "/tmp/x", "content": "hi"})
                    assert "result" in reply, (reply, proxy.log(), approver.log())
                    assert reply["result"]["content"][0]["text"] == "wrote 2 bytes to /tmp/x"
                    assert proxy.call(2, "read_file", {"path": "/tmp/x"}).get("result")
                    # Its own record goes in the proxy's next batch: wait while it runs.
                    wait_for(lambda: len(approver.decisions()) >= 2, 20, "both records")
                finally:
                    proxy.kill()
                _refused_over(far)
                wait_for(
                    lambda: any(r["event"] == "remote_refused" for r in _records(approver)),
                    10,
                    "the refusal's record",
                )
            records = _records(approver)
    finally:
        sshd.stop()
    asked = next(r for r in records if r.get("tool") == "write_file")
    allowed = next(r for r in records if r.get("tool") == "read_file")
    assert (asked["reason"], asked["origin"]) == ("human approved", SSH_ORIGIN)
    assert (allowed["reason"], allowed["origin"]) == ("policy allowed", SSH_ORIGIN)
    refused = [r for r in records if r["event"] == "remote_refused"]
    assert [r["about"] for r in refused] == ["status"]  # once per connection
    assert refused[0]["origin"]["transport"] == "ssh"
    text = read_log_lines(record)[0]["request"]["text"]
    assert text.startswith("REMOTE, from devbox via ssh, name claimed by the proxy\n")


def _refused_over(far: Path) -> None:
    """Status and grants commands through the forward: answered ``forbidden``, with why."""
    with Dealer(f"ipc://{far}") as d:
        for msg in (Status(ref=new_nonce()), Grants(ref=new_nonce(), op=GrantsOp.LIST)):
            d.send(msg)
            answer = d.recv(10)
            assert isinstance(answer, Error), answer
            assert (answer.code, answer.about) == (ErrorCode.FORBIDDEN, msg.type)
            assert answer.ref == msg.ref
            assert "only send hello, ask, cancel, audit and bye" in answer.detail
            assert answer.about in (MsgType.STATUS, MsgType.GRANTS)


def test_the_extra_socket_can_be_turned_off(folder: Path) -> None:
    prog = answer_program(folder, "allow")
    args = ["--extra-endpoint", "none"]
    with Approver(folder, f"exec:{prog}", args=args).wait_ready() as approver:
        assert not (folder / "run" / "approver-extra.sock").exists()
        assert "extra=none" in approver.log()
