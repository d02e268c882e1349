"""The per-user fork server (issue 16, start-up), with real processes: a session forked from it
answers, records and ends exactly as the in-process start; every failure of the fast path
falls back to the in-process start; a server of another uid, folder or code is never used."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import forkkit
from tests.support.approverproc import short_dir
from tests.support.fdwait import readable
from tests.support.proxyproc import RAW_SERVER, ProxyProcess, write_policy

SPEC = """
allowed_tools: [echo, read_file]
denied_tools: [delete_file]
"""
# An MCP server that answers initialize with what it inherited: the process attributes a
# session must take from its launcher (the MCP server gets them from the proxy).
PROBE = r"""
import json, os, resource, sys
line = sys.stdin.readline()
status = dict(l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
facts = {
    "cwd": os.getcwd(), "umask": status["Umask"].strip(), "env": dict(os.environ),
    "nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
    "sigign": status["SigIgn"].strip(), "sigblk": status["SigBlk"].strip(),
    "nice": os.getpriority(os.PRIO_PROCESS, 0), "cpus": sorted(os.sched_getaffinity(0)),
    "cgroup": open("/proc/self/cgroup").read(),
}
reply = {"jsonrpc": "2.0", "id": json.loads(line)["id"], "result": facts}
sys.stdout.write(json.dumps(reply) + "\n"); sys.stdout.flush()
sys.stdin.read()
"""


NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.fixture
def run() -> Iterator[Path]:
    with short_dir() as folder:
        os.chmod(folder, 0o700)
        try:
            yield folder
        finally:
            forkkit.stop_servers(folder)


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    return write_policy(tmp_path, SPEC)


def _proxy(
    policy: Path, tmp_path: Path, run: Path, server: list[str] | None = None, **env: str | None
) -> ProxyProcess:
    """A launcher the fork server may serve (no capabilities: forkkit.CAPLESS)."""
    full = {**forkkit.fork_env(run), "AIP_SANDBOX": "off", **env}
    return ProxyProcess(policy, server or RAW_SERVER, tmp_path, env=full, wrap=forkkit.CAPLESS)


def _warm(policy: Path, tmp_path: Path, run: Path) -> int:
    """The first start (in-process) leaves a server behind; its pid."""
    p = _proxy(policy, tmp_path, run)
    try:
        p.initialize()
        assert forkkit.session_pid(p.log()) == p.proc.pid  # the first one ran in-process
        p.close_stdin()
        assert p.wait() == 0
    finally:
        p.kill()
    return forkkit.wait_for_server(run)


def _exchange(p: ProxyProcess) -> list[dict[str, Any]]:
    replies = [p.initialize()]
    replies.append(p.call(1, "echo", {"text": "hi"}))
    replies.append(p.call(2, "delete_file", {"path": "/tmp/x"}))
    replies.append(p.call(3, "nope", {}))
    p.send(b"{not json\n")
    replies.append(p.recv())
    return replies


def _stable(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in {"timestamp", "session", "pid", "agent_id"}}


def test_a_forked_session_answers_and_records_as_the_in_process_start(
    policy: Path, tmp_path: Path, run: Path
) -> None:
    server = _warm(policy, tmp_path, run)
    results = {}
    for mode in ("off", "on"):
        p = _proxy(policy, tmp_path, run, AIP_FORK_SERVER=mode)
        try:
            replies = _exchange(p)
            p.close_stdin()
            code = p.wait()
            session = forkkit.session_pid(p.log())
            results[mode] = (replies, [_stable(r) for r in p.decisions()], code)
        finally:
            p.kill()
        assert (session == p.proc.pid) == (mode == "off"), p.log()
    assert results["on"] == results["off"]
    assert results["on"][2] == 0
    assert len(os.listdir(f"/proc/{server}/task")) == 1  # the server forks single-threaded


def test_the_session_takes_the_launchers_environment_folder_and_limits(
    policy: Path, tmp_path: Path, run: Path
) -> None:
    _warm(policy, tmp_path, run)
    here = tmp_path / "work"
    here.mkdir()
    facts = {}
    for mode in ("off", "on"):
        code = (
            "import os, resource, signal, subprocess, sys;"
            "os.umask(0o027); os.chdir(sys.argv[1]); os.nice(3);"
            "resource.setrlimit(resource.RLIMIT_NOFILE, (777, 4096));"
            "signal.signal(signal.SIGQUIT, signal.SIG_IGN);"
            "signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR2]);"
            "os.execv(sys.argv[2], sys.argv[2:])"
        )
        wrap = [*forkkit.CAPLESS, sys.executable, "-c", code, str(here)]
        env = {**forkkit.fork_env(run), "AIP_SANDBOX": "off", "AIP_FORK_SERVER": mode}
        env["AIP_PROBE_VALUE"] = "é ü"
        p = ProxyProcess(policy, [sys.executable, "-c", PROBE], tmp_path, env=env, wrap=wrap)
        try:
            reply = p.request(0, "initialize", {"protocolVersion": "2025-06-18"})
            assert (forkkit.session_pid(p.log()) == p.proc.pid) == (mode == "off"), p.log()
            p.close_stdin()
            p.wait()
        finally:
            p.kill()
        facts[mode] = reply["result"]
        facts[mode]["env"].pop("AIP_FORK_SERVER")
    assert facts["on"] == facts["off"]
    seen = facts["on"]
    assert seen["cwd"] == str(here)
    assert seen["umask"] == "0027"
    assert seen["nofile"] == [777, 4096]  # a lowered hard limit too: read from /proc
    assert seen["nice"] >= 3
    assert int(seen["sigign"], 16) & (1 << (signal.SIGQUIT - 1))
    assert int(seen["sigblk"], 16) & (1 << (signal.SIGUSR2 - 1))
    assert seen["env"]["AIP_PROBE_VALUE"] == "é ü"


@pytest.mark.parametrize("how", ["crash", "sigterm", "sigint", "eof"])
def test_exit_status_and_signals_as_in_process(
    policy: Path, tmp_path: Path, run: Path, how: str
) -> None:
    _warm(policy, tmp_path, run)
    codes = {}
    for mode in ("off", "on"):
        server = [*RAW_SERVER, "--mode", "crash", "7"] if how == "crash" else RAW_SERVER
        p = _proxy(policy, tmp_path, run, server, AIP_FORK_SERVER=mode)
        try:
            p.initialize()
            if how == "crash":
                reply = p.call(1, "echo", {"text": "x"})
                assert reply["error"]["data"]["reason"] == "server_exited"
            elif how == "eof":
                p.close_stdin()
            else:
                p.proc.send_signal(signal.SIGTERM if how == "sigterm" else signal.SIGINT)
            codes[mode] = p.wait()
        finally:
            p.kill()
    assert codes["on"] == codes["off"]
    assert codes["on"] == (7 if how == "crash" else 0)


def test_a_killed_launcher_ends_its_session_and_server_tree(
    policy: Path, tmp_path: Path, run: Path
) -> None:
    _warm(policy, tmp_path, run)
    pidfile = tmp_path / "pids.json"
    p = _proxy(policy, tmp_path, run, [*RAW_SERVER, "--mode", "tree", str(pidfile)])
    try:
        p.initialize()
        session = forkkit.session_pid(p.log())
        assert session is not None
        assert session != p.proc.pid, forkkit.server_log(run)
        assert forkkit.wait_for_file(pidfile), p.log()
        tree = json.loads(pidfile.read_text())
        p.proc.kill()
        p.proc.wait()
        assert forkkit.wait_gone([session, *tree]) == []
    finally:
        p.kill()


def test_policy_and_spawn_errors_as_in_process(policy: Path, tmp_path: Path, run: Path) -> None:
    _warm(policy, tmp_path, run)
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: aip.io/v1alpha1\nkind: AgentPolicy\nmetadata: {name: x}\nspec:\n  nope: 1\n"
    )
    bad.chmod(0o600)
    for server, path in ((RAW_SERVER, bad), (["/nonexistent/server"], policy)):
        out = {}
        for mode in ("off", "on"):
            env = {**forkkit.fork_env(run), "AIP_FORK_SERVER": mode, "AIP_SANDBOX": "off"}
            p = ProxyProcess(path, server, tmp_path, env=env, wrap=forkkit.CAPLESS)
            try:
                out[mode] = (p.wait(), [line.split("] ", 1)[-1] for line in p.log().splitlines()])
            finally:
                p.kill()
        assert out["on"] == out["off"]
        assert out["on"][0] == 2


def test_the_sandbox_as_in_process(policy: Path, tmp_path: Path, run: Path) -> None:
    """--sandbox require through the fork server: what the in-process start does, here. As
    a normal user bwrap runs the server; as root without capabilities (CI) it cannot start,
    and both starts refuse alike."""
    _warm(policy, tmp_path, run)
    out = {}
    for mode in ("off", "on"):
        p = _proxy(policy, tmp_path, run, AIP_SANDBOX="require", AIP_FORK_SERVER=mode)
        try:
            try:
                reply: Any = p.call(1, "echo", {"text": "x"})["result"]
            except AssertionError:  # no answer: it refused to start
                reply = None
            p.close_stdin()
            code = p.wait()
            forked = forkkit.session_pid(p.log()) != p.proc.pid
            out[mode] = (reply, code, [line.split("] ", 1)[-1] for line in p.log().splitlines()])
        finally:
            p.kill()
        assert forked == (mode == "on"), p.log()
    assert out["on"] == out["off"]


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
            assert forkkit.session_pid(p.log()) == p.proc.pid
        finally:
            p.kill()
    assert forkkit.sockets(run) == []


def test_switched_off_no_server_is_started(policy: Path, tmp_path: Path, run: Path) -> None:
    for env, args in (({"AIP_FORK_SERVER": "off"}, []), ({}, ["--no-fork-server"])):
        full = {**forkkit.fork_env(run), "AIP_SANDBOX": "off", **env}
        p = ProxyProcess(
            policy, RAW_SERVER, tmp_path, env=full, extra_args=args, wrap=forkkit.CAPLESS
        )
        try:
            p.initialize()
            p.close_stdin()
            assert p.wait() == 0
        finally:
            p.kill()
        assert forkkit.sockets(run) == []


def test_a_folder_that_is_not_private_is_never_used(
    policy: Path, tmp_path: Path, run: Path
) -> None:
    _warm(policy, tmp_path, run)
    os.chmod(run / "aip", 0o755)
    try:
        p = _proxy(policy, tmp_path, run)
        try:
            p.initialize()
            assert forkkit.session_pid(p.log()) == p.proc.pid
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
        p = _proxy(policy, tmp_path, run)
        try:
            assert p.call(0, "echo", {"text": "x"})["result"]["isError"] is False
            assert forkkit.session_pid(p.log()) == p.proc.pid
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
    _warm(policy, tmp_path, run)
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
    _warm(policy, tmp_path, run)
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


def test_the_server_exits_when_idle_or_when_its_code_changes(
    policy: Path, tmp_path: Path, run: Path
) -> None:
    extra = tmp_path / "extra"
    marker = extra / "aip" / "proxy" / "zz_marker.py"
    marker.parent.mkdir(parents=True)
    marker.write_text("# part of the code stamp\n")
    env = {"PYTHONPATH": str(extra)}
    p = _proxy(policy, tmp_path, run, **env)
    p.initialize()
    p.kill()
    server = forkkit.wait_for_server(run)
    marker.write_text("# changed\n")
    assert forkkit.wait_gone([server]) == [], forkkit.server_log(run)
    assert forkkit.sockets(run) == []
    idle = {**env, "AIP_FORK_SERVER_IDLE_S": "1.0"}
    p = _proxy(policy, tmp_path, run, **idle)
    p.initialize()
    p.kill()
    server = forkkit.wait_for_server(run)
    assert forkkit.wait_gone([server]) == [], forkkit.server_log(run)


def test_the_launcher_finds_the_folder_paths_chooses(monkeypatch: pytest.MonkeyPatch) -> None:
    from aip.proxy.forkserver import identity
    from aip.shared import paths

    for value in ("/tmp/some-runtime", None):
        if value is None:
            monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
        else:
            monkeypatch.setenv("XDG_RUNTIME_DIR", value)
        assert identity.runtime_folder() == str(paths.runtime_dir())


def test_the_launcher_decides_before_the_heavy_imports() -> None:
    code = (
        "import sys, os; os.environ['AIP_FORK_SERVER'] = 'on';"
        "os.environ['XDG_RUNTIME_DIR'] = '/nonexistent-aip-test';"
        "import aip.proxy.cli as c; from aip.proxy.forkserver import launcher as l, identity as i;"
        "i.key(i.process_identity()); l._connect('/nonexistent-aip-test/aip/x.sock', {});"
        "print(','.join(m for m in ('typing', 'logging', 'socket', 'pathlib', 'hashlib',"
        " 'subprocess', 'yaml') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == ""


def test_socket_and_folder_modes(policy: Path, tmp_path: Path, run: Path) -> None:
    _warm(policy, tmp_path, run)
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
