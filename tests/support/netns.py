"""Two network namespaces joined by a veth pair, made by the test and always removed: the
"desktop" (10.77.0.1/24) and the "remote host" (10.77.0.2/24). Processes run in one with
``Netns.argv`` (``ip netns exec NAME ...``); ``link(False)`` pulls the cable (``ip link set
down`` on both ends) and ``link(True)`` plugs it back.

Needs root (CI runs as root) and ``ip`` (iproute2, installed by .ci/run): without either the
test fails with the fix, never skips.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from tests.support.systools import required_tool

DESK_ADDR: Final = "10.77.0.1"
FAR_ADDR: Final = "10.77.0.2"
_COUNTER = itertools.count()


@dataclass(frozen=True)
class Netns:
    desk: str  # namespace names
    far: str
    desk_if: str  # veth ends (in their namespaces)
    far_if: str
    ip: str

    def argv(self, ns: str, *command: str) -> list[str]:
        return [self.ip, "netns", "exec", ns, *command]

    def link(self, up: bool) -> None:
        state = "up" if up else "down"
        _run(self.ip, "-n", self.desk, "link", "set", self.desk_if, state)
        _run(self.ip, "-n", self.far, "link", "set", self.far_if, state)


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: {done.stderr.strip()}")


def require_root() -> None:
    if os.geteuid() != 0:
        raise AssertionError(
            "the network-namespace tests need root (CI runs as root): run them with sudo, "
            "e.g. sudo -E $(command -v pytest) tests/remote/test_remote_netns.py"
        )


@contextlib.contextmanager
def veth_pair() -> Iterator[Netns]:
    require_root()
    ip = required_tool("ip")
    tag = f"{os.getpid() % 100000}{next(_COUNTER)}"
    net = Netns(f"aipdesk{tag}", f"aipfar{tag}", f"aipd{tag}", f"aipf{tag}", ip)
    made: list[str] = []
    try:
        for ns in (net.desk, net.far):
            _run(ip, "netns", "add", ns)
            made.append(ns)
        _run(ip, "link", "add", net.desk_if, "type", "veth", "peer", "name", net.far_if)
        _run(ip, "link", "set", net.desk_if, "netns", net.desk)
        _run(ip, "link", "set", net.far_if, "netns", net.far)
        for ns, dev, addr in ((net.desk, net.desk_if, DESK_ADDR), (net.far, net.far_if, FAR_ADDR)):
            _run(ip, "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            _run(ip, "-n", ns, "link", "set", dev, "up")
            _run(ip, "-n", ns, "link", "set", "lo", "up")
        yield net
    finally:
        for ns in made:  # deleting a namespace removes its veth end, and so the pair
            subprocess.run([ip, "netns", "del", ns], capture_output=True, timeout=30, check=False)
