"""A real OpenSSH server and an ``ssh -R`` forward on loopback, for the SSH-host tests.

The server is Debian's ``/usr/sbin/sshd`` with its own config, host key and authorized key,
all made in the test's folder; it listens on 127.0.0.1 on a free port. sshd needs root (it
chroots to its privilege separation folder, ``/run/sshd``), so the tests run as root, as CI
does; that folder is made on a private tmpfs in sshd's own mount namespace (``unshare
--mount``), so nothing outside the test's folder is touched. The client is ``ssh -F none``
with the host key pinned in its own known_hosts file.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.approverproc import wait_for
from tests.support.systools import required_tool

SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _keygen(path: Path) -> None:
    keygen = required_tool("ssh-keygen")
    subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


class SshServer:
    def __init__(self, folder: Path) -> None:
        assert os.getuid() == 0, "sshd must run as root (privilege separation): run as root"
        required_tool("sshd", "/usr/sbin")
        self.folder, self.port = folder, free_port()
        self.host_key, self.client_key = folder / "ssh_host", folder / "ssh_client"
        _keygen(self.host_key)
        _keygen(self.client_key)
        authorized = folder / "authorized_keys"
        authorized.write_bytes(self.client_key.with_suffix(".pub").read_bytes())
        self.known_hosts = folder / "known_hosts"
        host_pub = self.host_key.with_suffix(".pub").read_text().split()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n")
        config = folder / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.host_key}\n"
            f"AuthorizedKeysFile {authorized}\nPubkeyAuthentication yes\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
            "PermitRootLogin prohibit-password\nStrictModes no\n"
            "AllowStreamLocalForwarding yes\nStreamLocalBindUnlink yes\nPidFile none\n"
            "LogLevel VERBOSE\n"
        )
        self.log_path = folder / "sshd.log"
        private_run = (
            "mount -t tmpfs -o mode=0755 tmpfs /run && mkdir -m 0755 /run/sshd && "
            f'exec {SSHD} -D -e -f "$1"'
        )
        unshare = required_tool("unshare")
        argv = [unshare, "--mount", "--propagation", "private", "/bin/sh", "-c", private_run]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [*argv, "sh", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_for(self._listening, 10, "sshd to listen")
        except AssertionError:
            self.stop()
            raise

    def _listening(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"sshd exited {self.proc.returncode}: {self.log()}")
        return f"Server listening on 127.0.0.1 port {self.port}" in self.log()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        _stop(self.proc)


@contextlib.contextmanager
def forward(server: SshServer, remote_sock: Path, local_sock: Path) -> Iterator[Path]:
    """``ssh -N -R remote_sock:local_sock`` to the server, as a user on the desktop would
    run it; yields once sshd has made ``remote_sock`` (the forwarded end)."""
    ssh = required_tool("ssh")
    argv = [ssh, "-F", "none", "-N", "-p", str(server.port), "-i", str(server.client_key)]
    for option in (
        "BatchMode=yes",
        "IdentitiesOnly=yes",
        f"UserKnownHostsFile={server.known_hosts}",
        "StrictHostKeyChecking=yes",
        "ExitOnForwardFailure=yes",
        "ServerAliveInterval=5",
    ):
        argv += ["-o", option]
    argv += ["-R", f"{remote_sock}:{local_sock}", "root@127.0.0.1"]
    log_path = server.folder / f"ssh-{time.monotonic_ns()}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )

    def made() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"ssh exited {proc.returncode}: {log_path.read_text()}")
        return remote_sock.exists()

    try:
        wait_for(made, 10, "the forwarded socket")
        yield remote_sock
    finally:
        _stop(proc)
