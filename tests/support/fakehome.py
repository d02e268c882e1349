"""A home folder with everything DESIGN §4.5 protects in it, for attacks on protected paths.

``~/.ssh/id_ed25519`` (listed in the policy's ``protected_paths``), the policy at its default
place ``~/.config/aip/policy.yaml``, the state folder with an HMAC key and a spool file, the
runtime folder, and an audit log outside the state folder (``$AIP_AUDIT_LOG``) with a rotation
beside it (the ``<log>.*`` family). ``notes.txt`` is an ordinary file the server may use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tests.support.proxyproc import write_policy

SECRET = "-----SECRET KEY MATERIAL-----"
SPEC = """\
allowed_tools: [read_file, read_text_file, write_file, list_directory, echo, get-sum]
protected_paths: ["~/.ssh"]
"""


@dataclass(frozen=True)
class FakeHome:
    home: Path
    policy: Path
    key: Path  # ~/.ssh/id_ed25519
    hmac_key: Path  # in the state folder
    spool: Path  # a spool file in the state folder
    audit_log: Path  # $AIP_AUDIT_LOG, outside the state folder
    rotated: Path  # <audit_log>.1
    runtime: Path  # $XDG_RUNTIME_DIR/aip
    notes: Path

    def env(self) -> dict[str, str]:
        return {
            "HOME": str(self.home),
            "XDG_STATE_HOME": str(self.home / ".local" / "state"),
            "XDG_RUNTIME_DIR": str(self.runtime.parent),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "AIP_AUDIT_LOG": str(self.audit_log),
            "AIP_APPROVER_ENDPOINT": f"ipc://{self.runtime}/approver.sock",
        }


def make_home(base: Path, spec: str = SPEC, uid: int | None = None) -> FakeHome:
    """Build it under ``base`` (owned by ``uid`` when given, for a proxy run as that user)."""
    home = base / "home"
    config = home / ".config" / "aip"
    state = home / ".local" / "state" / "aip"
    logs = home / "logs"
    runtime = base / "run" / "aip"
    for folder in (home / ".ssh", config, state / "spool", logs, runtime):
        folder.mkdir(parents=True, exist_ok=True)
    for folder in (config, state, state / "spool", runtime.parent, runtime):
        folder.chmod(0o700)
    fake = FakeHome(
        home=home,
        policy=write_policy(config, spec, name="policy"),
        key=home / ".ssh" / "id_ed25519",
        hmac_key=state / "audit-hmac.key",
        spool=state / "spool" / "0123456789abcdef.jsonl",
        audit_log=logs / "audit.jsonl",
        rotated=logs / "audit.jsonl.1",
        runtime=runtime,
        notes=home / "notes.txt",
    )
    fake.key.write_text(SECRET)
    fake.hmac_key.write_bytes(b"k" * 32)
    fake.spool.write_text('{"rseq": 1}\n')
    fake.audit_log.write_text('{"seq": 1}\n')
    fake.rotated.write_text('{"seq": 0}\n')
    (logs / "audit-hmac.key").write_bytes(b"h" * 32)
    fake.notes.write_text("hello\n")
    if uid is not None:
        os.chmod(base, 0o755)
        for root, dirs, files in os.walk(base):
            for name in [*dirs, *files]:
                os.chown(os.path.join(root, name), uid, uid)
        os.chown(base, uid, uid)
    return fake
