"""The fork server is never a weaker start: a server of another uid, folder, code or identity
is never used, a launcher that could be confined in a way /proc does not show is never served
(root included), a broken server means the in-process start, and requests are checked."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support import forkkit
from tests.support.fdwait import readable
from tests.support.proxyproc import RAW_SERVER, ProxyProcess, write_policy

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    return write_policy(tmp_path, forkkit.SPEC)


def test_root_with_capabilities_is_never_served(policy: Path, tmp_path: Path, run: Path) -> None:
    """A Landlock domain shows nowhere in /proc and CAP_SYS_ADMIN can set one up without
    no_new_privs: a process holding capabilities (root) starts in-process and no server."""
    if os.geteuid() != 0:
        pytest.skip("needs root: a process with capabilities")  # CI runs as root
    full = {**forkkit.fork_env(run), "AIP_SANDBOX": "off"}
    for _ in range(2):
        p = ProxyProcess(policy, RAW_SERVER, tmp_path, env=full)
        try:
            p.initialize()
            assert forkkit.session_pid(p) is None
        finally:
            p.kill()
    assert forkkit.sockets(run) == []


def test_a_folder_that_is_not_private_is_never_used(
    policy: Path, tmp_path: Path, run: Path
) -> None:
    forkkit.warm(policy, tmp_path, run)
    os.chmod(run / "aip", 0o755)
    try:
        p = forkkit.proxy(policy, tmp_path, run)
        try:
            p.initialize()
            assert forkkit.session_pid(p) is None
        finally:
            p.kill()
    finally:
        os.chmod(run / "aip", 0o700)


@pytest.mark.parametrize("behaviour", ["close", "garbage", "other-uid"])
def test_a_broken_or_foreign_server_means_the_in_process_start(
    policy: Path, tmp_path: Path, run: Path, behaviour: str
) -> None:
    """A server that dies mid-handshake, answers nonsense, or runs as another user (root-proof:
    the listener is handed to a process running as nobody)."""
    path = Path(forkkit.socket_path(run))
    path.parent.mkdir(mode=0o700)
    marker = tmp_path / "got-a-request"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(str(path))
    fake = (
        "import socket, sys\n"
        f"s = socket.socket(fileno={listener.fileno()}); s.listen()\n"
        "print('listening', flush=True)\n"
        "c, _ = s.accept()\n"
        "data = c.recv(1 << 20)\n"
        "if data: open(sys.argv[1], 'w').write('x')\n"
        f"if {behaviour!r} == 'garbage': c.send(b'garbage')\n"
        "c.close()\n"
    )
    wrap = NOBODY if behaviour == "other-uid" else forkkit.CAPLESS  # as a launcher could be
    argv = [*wrap, sys.executable, "-c", fake, str(marker)]
    server = subprocess.Popen(
        argv, pass_fds=[listener.fileno()], start_new_session=True, stdout=subprocess.PIPE
    )
    listener.close()
    try:
        assert server.stdout is not None
        assert readable(server.stdout.fileno(), 30), "the fake server did not start"
        assert server.stdout.readline() == b"listening\n"
        p = forkkit.proxy(policy, tmp_path, run)
        try:
            assert p.call(0, "echo", {"text": "x"})["result"]["isError"] is False
            assert forkkit.session_pid(p) is None
        finally:
            p.kill()
        assert marker.exists() == (behaviour != "other-uid")
        assert forkkit.sockets(run) == [path]  # nobody started a server over the foreign one
    finally:
        server.kill()
        server.wait()
        if server.stdout is not None:
            server.stdout.close()


def test_the_server_refuses_a_peer_of_another_uid(policy: Path, tmp_path: Path, run: Path) -> None:
    """The folder keeps strangers out; behind it the server checks SO_PEERCRED itself (the
    folder is opened up here to reach that check, root-proof: the client runs as nobody)."""
    forkkit.warm(policy, tmp_path, run)
    [path] = forkkit.sockets(run)
    for folder in (run, run / "aip"):
        os.chmod(folder, 0o711)
    os.chmod(path, 0o666)
    client = (
        "import marshal, socket, sys\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); s.connect(sys.argv[1])\n"
        "try:\n"
        "    s.sendmsg([marshal.dumps(('request', {}))], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,"
        " bytes(16))])\n"
        "    print(repr(s.recv(1 << 16)))\n"
        "except (ConnectionResetError, BrokenPipeError):\n"  # closed before reading a word
        "    print(repr(b''))\n"
    )
    try:
        out = subprocess.run(
            [*NOBODY, sys.executable, "-c", client, str(path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        for folder in (run, run / "aip"):
            os.chmod(folder, 0o700)
        os.chmod(path, 0o600)
    assert out.stdout.strip() == "b''", out  # closed without a word, nothing forked
    assert "peer uid 65534 is not ours" in forkkit.server_log(run)


@pytest.mark.parametrize(
    ("wrap", "first", "refusal"),
    [
        (["setpriv", "--no-new-privs", *forkkit.CAPLESS], "", "no_new_privs is set"),
        ([], "", "it holds capabilities"),
        (forkkit.CAPLESS, "open('/proc/self/oom_score_adj', 'w').write('500')\n", "differs"),
    ],
)
def test_the_server_reads_who_the_launcher_is_and_never_believes_it(
    policy: Path, tmp_path: Path, run: Path, wrap: list[str], first: str, refusal: str
) -> None:
    """A process that may be confined in ways /proc does not show (no_new_privs: Landlock or
    seccomp may be in force; capabilities), or that differs from the server, is refused even
    with the server's key: the server reads the peer's /proc itself, pinned by its pidfd, and
    nothing is forked (the request carries no identity to lie with)."""
    if os.geteuid() != 0 and refusal != "no_new_privs is set":
        pytest.skip("needs root to hold or drop capabilities")
    forkkit.warm(policy, tmp_path, run)
    [path] = forkkit.sockets(run)
    full = forkkit.launcher_key(run)  # the server's key, as a confined process could compute
    script = (
        f"import sys\n{first}"
        "from aip.proxy.forkserver import identity, launcher, wire\n"
        "status = identity.status_fields(identity._read('/proc/self/status'))\n"
        "request = launcher._request([], status, sys.argv[2])\n"
        "s = wire.unix_socket(); s.connect(sys.argv[1])\n"
        "wire.send(s, 'request', request, [0, 1, 2, 0])\n"
        "print(wire.receive(s)[:2])\n"
    )
    env = {**os.environ, **{k: v for k, v in forkkit.fork_env(run).items() if v}}
    before = forkkit.server_log(run).count("session pid=")
    out = subprocess.run(
        [*wrap, sys.executable, "-c", script, str(path), full],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert out.stdout.startswith("('refused', "), out
    assert refusal in out.stdout, out
    assert forkkit.server_log(run).count("session pid=") == before


def test_socket_and_folder_modes(policy: Path, tmp_path: Path, run: Path) -> None:
    forkkit.warm(policy, tmp_path, run)
    [path] = forkkit.sockets(run)
    assert stat.S_IMODE(os.lstat(run / "aip").st_mode) == 0o700
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600


def test_the_key_covers_what_the_process_start_reads() -> None:
    """A library preloaded into the server, another locale or Python setting, would be in
    every session: such variables are part of the key (other ones are the session's own)."""
    from aip.proxy.forkserver import identity

    env = {"LD_PRELOAD": "/x.so", "LANG": "C", "PYTHONHASHSEED": "1", "HOME": "/h", "AIP_X": "1"}
    assert identity.startup_environment(env) == ["LANG=C", "LD_PRELOAD=/x.so", "PYTHONHASHSEED=1"]


@pytest.mark.parametrize(
    "change",
    [
        {"argv": ["x", 1]},
        {"environ": [(b"A", "b")]},
        {"affinity": [-1]},
        {"umask": "022"},
        {"identity": {"a": "b"}},  # who the launcher is, the server reads itself
    ],
)
def test_a_malformed_request_is_refused(change: dict[str, Any]) -> None:
    from aip.proxy.forkserver import wire

    good: dict[str, Any] = {
        "key": "k",
        "argv": ["aip-proxy"],
        "environ": [(b"A", b"b")],
        "exec_environ": b"",
        "umask": 0o22,
        "sig_ignored": 0,
        "sig_blocked": 0,
        "affinity": [0],
        "comm": b"aip-proxy",
    }
    assert wire.check_request(dict(good)) == good
    with pytest.raises(wire.WireError):
        wire.check_request({**good, **change})


_PROCESS_STATE_CALLS = frozenset(
    {
        "os.getenv",
        "os.environ.get",
        "os.getcwd",
        "os.getuid",
        "os.geteuid",
        "os.getgid",
        "os.getpid",
        "os.getppid",
        "os.umask",
        "os.path.expanduser",
        "Path.home",
        "Path.cwd",
        "time.time",
        "time.localtime",
    }
)


def _import_time_reads(tree: Any) -> list[str]:
    """Calls and ``os.environ[...]`` subscripts that run when the module is imported: at
    module and class level and in default values, not inside function bodies."""
    import ast

    found: list[str] = []

    def name(node: ast.expr) -> str:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute):
            return f"{name(node.value)}.{node.attr}"
        return "?"

    def scan(node: ast.AST) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            for default in [*node.args.defaults, *node.args.kw_defaults]:
                if default is not None:
                    scan(default)
            for deco in getattr(node, "decorator_list", []):
                scan(deco)
            return
        if isinstance(node, ast.Call) and name(node.func) in _PROCESS_STATE_CALLS:
            found.append(f"line {node.lineno}: {name(node.func)}()")
        if isinstance(node, ast.Subscript) and name(node.value) == "os.environ":
            found.append(f"line {node.lineno}: os.environ[...]")
        for child in ast.iter_child_nodes(node):
            scan(child)

    scan(tree)
    return found


def test_no_module_of_a_session_reads_the_process_at_import() -> None:
    """What a session imports from the server was imported there, with the server's
    environment, folder and ids: no aip module reads any of them at import time (a default
    of ``os.environ`` itself is fine: the session replaces its contents in place)."""
    import ast

    sample = "X = os.getenv('A')\ndef f(a=os.getcwd()):\n    return os.environ['B']\n"
    assert len(_import_time_reads(ast.parse(sample))) == 2  # the check sees both, not f's body
    roots = [Path(__file__).resolve().parents[2] / p / "aip" for p in ("proxy", "shared")]
    reads = {}
    for root in roots:
        for path in root.rglob("*.py"):
            found = _import_time_reads(ast.parse(path.read_text(encoding="utf-8")))
            if found:
                reads[str(path.relative_to(root.parent))] = found
    assert reads == {}


def test_a_session_holds_only_what_it_needs(policy: Path, tmp_path: Path, run: Path) -> None:
    """The server's socket, lock, wake-up pipe, the launcher's pidfd and other sessions'
    connections stay out of a session: it holds its stdio, its one connection and its
    relay's own descriptors."""
    forkkit.warm(policy, tmp_path, run)
    others = [forkkit.proxy(policy, tmp_path, run) for _ in range(2)]
    try:
        for p in others:
            p.initialize()
        session = forkkit.session_pid(others[1])
        assert session is not None
        links = _held_links(session)
        assert not [x for x in links if "pidfd" in x or x.endswith(".lock")], links
        assert sum(x.startswith("socket:") for x in links) == 1, links  # its own connection
    finally:
        for p in others:
            p.kill()


def _held_links(pid: int, timeout_s: float = 10.0) -> list[str]:
    """What ``pid``'s descriptors name, read until two reads agree: the session's threads open
    and close descriptors as it runs (a file read, a reconnect attempt), and one that closed
    between ``listdir`` and ``readlink`` was never held."""
    deadline = time.monotonic() + timeout_s
    before = _links(pid)
    while True:
        now = _links(pid)
        if now == before:
            return sorted(now.values())
        assert time.monotonic() < deadline, (before, now)
        before = now


def _links(pid: int) -> dict[str, str]:
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[fd] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:  # closed since the listing
            continue
    return out


def test_limits_it_cannot_read_refuse_the_session_and_keep_the_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A /proc/<pid>/limits in a layout the parser does not know is a refusal (the launcher
    starts in-process), never an exception that would end the server for every later start."""
    from aip.proxy.forkserver import identity, server

    def unknown_layout(pid: int) -> tuple[list[tuple[int, int, int]], int]:
        return [(0, identity._limit("lots"), 0)], 0  # int("lots"): ValueError

    monkeypatch.setattr(identity, "peer_limits", unknown_layout)
    s = server.Server("/nonexistent/fork.sock", "k", {}, idle_s=1.0)
    pidfd = os.pidfd_open(os.getpid())
    try:
        launcher, refusal = s._launcher(os.getpid(), pidfd)
    finally:
        os.close(pidfd)
    assert launcher == {}
    assert refusal is not None
    assert refusal.startswith("cannot read the launcher's limits: invalid literal")
