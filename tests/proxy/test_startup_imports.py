"""Start-up stays light (issue 2: <= 200 ms added, RSS <= 35 MB): the relay's modules do not
pull in asyncio, pyzmq or psutil; those load only when needed (asks, shutdown). Issue 16 (start-up
<= 100 ms added): nor the approver protocol's messages (~12 ms of dataclasses), the approval
client and its ``socket`` (~6 ms), which come after the agent's ``initialize``; nor argparse
(~12 ms: the usual command lines are parsed without it), nor ``secrets``, nor the protocol's
grant facts and the ask's hidden-character count (~3 ms: aip.shared.digests has what the relay
digests before any ask), nor ``typing``."""

from __future__ import annotations

import itertools
import os
import threading
import time
from pathlib import Path

import pytest

from aip.proxy import lean
from aip.proxy.cli import _root_with_capabilities as root_with_capabilities
from tests.support.freshpy import loaded_after, python_c
from tests.support.proxyproc import RAW_SERVER, write_policy

DEFERRED = (
    "asyncio",
    "zmq",
    "psutil",
    "mcp",
    "aip.shared.protocol.messages",
    "aip.proxy.approval.api",
    "aip.proxy.approval.connect",
    "socket",
    "argparse",
    "secrets",
    "aip.shared.protocol",
    "aip.shared.protocol.codec",
    "aip.shared.protocol.facts",
    "aip.shared.dlp.hidden",
    # The start path names typing only for the type checker (``TYPE_CHECKING = False`` blocks):
    # ~3-5 ms of import that nothing else on the path needs.
    "typing",
    # ~5 ms and ~0.9 MB of RSS (zlib, bz2, lzma, random): aip.proxy.sandbox.host does their part.
    "shutil",
    "tempfile",
    "glob",
    "sysconfig",
    # ~6-8 ms (with traceback and textwrap): aip.shared.logs writes the proxy's lines itself.
    "logging",
    # ~1.3 ms without OpenSSL (six builtin hash modules): aip.shared.hashes imports the two
    # the proxy uses.
    "hashlib",
    "hmac",
    # ~7 ms: what inspect imports; inspect itself is deferred (aip.proxy.lean.defer_modules).
    "ast",
    "dis",
    "tokenize",
)


SCRIPT = Path(__file__).resolve().parents[2] / "proxy" / "bin" / "aip-proxy"
# What the launcher has no use for before the fork server answered (each is milliseconds).
NOT_BEFORE_THE_FORK_SERVER = ("re", "contextlib", "typing", "logging", "enum", "functools")


def test_the_aip_proxy_script_reaches_the_fork_server_light() -> None:
    """Every agent start runs the aip-proxy script (the file pip installs) up to the fork
    server's answer; the launcher is stopped there and tells what was loaded by then."""
    code = (
        "import os, sys; from aip.proxy.forkserver import launcher;"
        "os.geteuid = lambda: 1000;"  # a user's start (root never asks a fork server)
        f"watch = {NOT_BEFORE_THE_FORK_SERVER!r};"
        "launcher.through_fork_server = lambda argv: sys.exit(print(argv, "
        "[m for m in watch if m in sys.modules]));"
        "sys.argv = ['aip-proxy', '--policy', 'p.yaml', '--', 'server'];"
        f"source = open({str(SCRIPT)!r}).read();"
        "exec(compile(source, 'aip-proxy', 'exec'), {'__name__': '__main__'})"
    )
    assert python_c(code) == "['--policy', 'p.yaml', '--', 'server'] []"


@pytest.mark.skipif(
    os.geteuid() != 0 or not root_with_capabilities(), reason="needs root with capabilities"
)
def test_root_starts_in_process_without_loading_the_launcher() -> None:
    """Root with capabilities is never served by a fork server, so its start goes straight
    to the in-process one: the launcher and its socket module stay unloaded."""
    code = (
        "import sys; from aip.proxy import cli;"
        "cli.in_process = lambda argv: sys.exit(print(argv, "
        "[m for m in ('aip.proxy.forkserver.launcher', '_socket') if m in sys.modules]));"
        "sys.argv = ['aip-proxy', '--policy', 'p.yaml', '--', 'server'];"
        f"source = open({str(SCRIPT)!r}).read();"
        "exec(compile(source, 'aip-proxy', 'exec'), {'__name__': '__main__'})"
    )
    assert python_c(code) == "['--policy', 'p.yaml', '--', 'server'] []"


def test_a_forked_session_imports_nothing_before_it_serves(tmp_path: Path) -> None:
    """Whatever the proxy imports from its start until it relays (and stops: stdin closed
    after ``initialize``), the fork server imported before forking (PRELOAD): a session
    started through it pays no import. Seen with ``-X importtime`` of an in-process start,
    up to its "stopping" line; names that are not modules here (platform probes such as
    ``nt``) and the ``-m`` start's own (runpy) do not count."""
    import importlib.util

    preloaded = set(
        python_c(
            "import sys; from aip.proxy import lean; lean.start_process();"
            "from aip.shared import logs, paths; from aip.proxy.forkserver import server;"
            "[__import__(name) for name in server.PRELOAD]; print(' '.join(sys.modules))"
        ).split()
    )
    names = _imports_of_a_start(tmp_path)
    own = {"runpy", "importlib.util", "importlib._abc", "aip.proxy.__main__", "sitecustomize"}
    missing = [
        name
        for name in names
        if name not in preloaded
        and name not in own
        and not name.startswith("aip.proxy.forkserver.")  # the server's own modules
        and importlib.util.find_spec(name.split(".")[0]) is not None
    ]
    assert missing == []


def test_an_in_process_start_answers_without_the_deferred_modules(tmp_path: Path) -> None:
    """The real process, up to its "stopping" line (after it relayed ``initialize``): none of
    DEFERRED was imported, the protocol's facts and psutil included (the import-only test
    above cannot see an import made by code that runs)."""
    names = _imports_of_a_start(tmp_path)
    assert "aip.proxy.relay.asks" in names  # the relay did load
    assert [name for name in DEFERRED if name in names] == []
    # Imported (dataclasses names inspect, urllib.parse ipaddress, subprocess locale) but
    # their code never ran: -X importtime lists only the modules whose code runs.
    assert [name for name in lean.DEFERRED_MODULES if name in names] == []


def test_a_start_with_an_unchanged_policy_does_not_import_pyyaml(tmp_path: Path) -> None:
    """The first start composes the policy and keeps the graph (aip.shared.policy.node_cache);
    the next, same policy bytes and state folder, validates that graph without PyYAML
    (~16 ms of its start-up)."""
    first = _imports_of_a_start(tmp_path)
    assert "yaml" in first
    again = _imports_of_a_start(tmp_path)
    assert [name for name in again if name.split(".")[0] in ("yaml", "_yaml")] == []
    # Nor base64 (~0.7 ms with struct), which only PyYAML's constructor needed at start: DLP
    # decodes base64 only in media data and resource blobs.
    assert "base64" not in again
    assert "aip.shared.policy.load" in again


def test_a_sandboxed_start_needs_no_shutil_or_tempfile(tmp_path: Path) -> None:
    """Under bwrap a start also looks up programs on PATH, makes the stdout FIFO's folder and
    lists log families: aip.proxy.sandbox.host and the plan do it without those modules."""
    names = _imports_of_a_start(tmp_path, sandbox="require")
    assert [name for name in ("shutil", "tempfile", "glob", "sysconfig") if name in names] == []


def _imports_of_a_start(tmp_path: Path, sandbox: str = "off") -> list[str]:
    """Modules an in-process start imports until its "stopping" line: stdin closes after
    ``initialize``. Seen with ``-X importtime``, in import order."""
    import os
    import subprocess
    import sys

    policy = write_policy(tmp_path, "allowed_tools: [echo]\n")
    env = {**os.environ, "AIP_FORK_SERVER": "off", "XDG_STATE_HOME": str(tmp_path)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    init = b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}\n'
    argv = ["--sandbox", sandbox, "--policy", str(policy), "--", *RAW_SERVER]
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "aip.proxy", *argv],
        input=init,
        capture_output=True,
        env=env,
        timeout=60,
    )
    err = done.stderr.decode(errors="replace")
    assert "stopping" in err, err[-2000:]
    assert sandbox == "off" or "kernel sandbox bwrap" in err, err[-2000:]
    return [
        line.split("|")[-1].strip()
        for line in err.split("stopping")[0].splitlines()
        if line.startswith("import time:") and not line.endswith("imported")
    ]


def test_relay_modules_do_not_import_heavy_packages() -> None:
    code = (  # as in aip-proxy's process: OpenSSL kept out and modules deferred first
        "from aip.proxy import lean; lean.start_process();"
        "import sys, aip.proxy.cli, aip.proxy.runner;"
        "import aip.proxy.relay.upstream, aip.proxy.relay.downstream, aip.proxy.relay.asks;"
        "import aip.proxy.reload, aip.proxy.protection, aip.proxy.child;"
        "import aip.shared.policy.load, aip.shared.policy.engine;"
        "aip.proxy.cli.parse_args(['--policy', 'p.yaml', '-v', '--', 'server'])"
    )
    assert loaded_after(code, DEFERRED) == []


def test_the_shadow_table_is_built_only_when_used() -> None:
    """Its ~4,200 entries (~0.3 MB) serve only text with many distinct shadow characters: a
    relay's start-up and a clean first scan do not build it."""
    code = (
        "import aip.proxy.runner;"
        "from aip.shared.dlp.redactor import Redactor;"
        "from aip.shared.dlp.shadow import shadow_table;"
        "Redactor.builtin_only().redact_value('caf\u00e9 \u200d ok');"
        "print(shadow_table.cache_info().currsize)"
    )
    assert python_c(code) == "0"


def test_rare_path_patterns_compile_when_first_used() -> None:
    """The JSON text's patterns for lone surrogates and a refused text's id (~1.2 ms to
    compile) wait for a text that needs them; a start and a clean message do not."""
    code = (
        "import aip.proxy.runner; from aip.shared import jsontext, jsonrpc;"
        'jsonrpc.parse_line(b\'{"jsonrpc":"2.0","id":1,"method":"ping"}\');'
        "print(jsontext._surrogate.cache_info().currsize, jsontext._id_scan.cache_info().currsize);"
        'print(jsontext.scan_id(b\'{"id": 7, "x"\'), jsontext.decode(b\'"\\\\ud800"\'));'
        "print(jsontext._surrogate.cache_info().currsize, jsontext._id_scan.cache_info().currsize)"
    )
    assert python_c(code).splitlines() == ["0 0", "7 \ufffd", "1 1"]


def test_approval_client_does_not_import_asyncio() -> None:
    """pyzmq's ``zmq.utils.monitor`` imports ``zmq.asyncio`` (asyncio, ssl: ~7 MB of RSS once
    the client connects); the dealers decode monitor events themselves."""
    code = "import aip.proxy.approval.zmq_client, aip.proxy.approval.connect"
    assert loaded_after(code, ("asyncio", "ssl", "zmq.utils.monitor")) == []


def test_a_local_approval_client_loads_no_pyzmq() -> None:
    """A local approver is reached with our own ZMTP (aip.proxy.approval.ipc_dealer): pyzmq
    (libzmq, libsodium: ~4 MB of RSS, ~44 ms of CPU on the approval thread) loads only for a
    remote approver's CURVE link (issue 16). Nor does it load ``typing`` (the codec reads the
    messages' annotations as text), the control plane's messages (aipctl's status and grants:
    a proxy decodes only its session's replies) or ``secrets``: together ~10 ms of the
    approval thread and ~0.7 MB of RSS per proxy."""
    code = (
        "import os, tempfile; d = tempfile.mkdtemp();"
        "from aip.proxy.approval import connect, zmq_client;"
        "from aip.shared.protocol import frames, messages;"
        "from aip.shared.protocol.codec import encode;"
        "c = zmq_client.ZmqApprovalClient(f'ipc://{d}/a.sock', connect_hello());"
        "w = messages.Welcome(session='0123456789abcdef', timeout_s=1.0, max_ask_bytes=9,"
        " audit_path='/a');"
        "assert frames.decode_session_reply(encode(w)) == w;"
        "messages.new_nonce();"
        "c.close()"
    )
    code = code.replace("connect_hello()", _HELLO)
    unwanted = ("zmq", "zmq.backend", "typing", "secrets")
    control = ("aip.shared.protocol.status", "aip.shared.protocol.grants")
    assert loaded_after(code, (*unwanted, *control)) == []


_HELLO = (
    "__import__('aip.shared.protocol.messages', fromlist=['Hello']).Hello("
    "session='0123456789abcdef', pid=os.getpid(), server='s', agent_id='a',"
    " policy=__import__('aip.shared.protocol.messages', fromlist=['PolicyRef']).PolicyRef("
    "name='p', sha256='0' * 64))"
)


def test_the_proxy_process_hashes_without_openssl() -> None:
    """aip-proxy keeps libcrypto out (~3.7 MB of RSS): hashlib and hmac fall back to CPython's
    own SHA-2, with the same digests."""
    code = (
        "import sys; from aip.proxy import lean; lean.without_openssl();"
        "import hashlib, hmac;"
        "assert sys.modules['_hashlib'] is None;"
        "print(hashlib.sha256(b'abc').hexdigest(), hmac.new(b'k', b'abc', 'sha256').hexdigest())"
    )
    sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # FIPS 180-2
    assert python_c(code).split() == [sha, _hmac_openssl()]


def _hmac_openssl() -> str:
    import hmac  # in this (test) process: OpenSSL's

    return hmac.new(b"k", b"abc", "sha256").hexdigest()


def test_dlp_rules_compile_when_first_needed() -> None:
    """The display redactor is built at start, but only what a clean value's check needs is
    compiled then (the pre-check); the matchers come with the first possible hit, which is
    still redacted."""
    from aip.shared.dlp.redactor import Redactor

    red = Redactor.builtin_only()
    scanner = red._scanner
    assert scanner._pre is None
    assert scanner._matchers is None
    assert red.redact_value("my-mcp-server") == ("my-mcp-server", {})
    assert scanner._pre is not None
    assert scanner._matchers is None
    [prefilter] = scanner._pre[0]._json
    assert prefilter is not None
    assert prefilter._plain is None  # searched alone only after a candidate matched first
    key = "AKIA" + "Z" * 16
    new, counts = red.redact_value(f"key={key}")
    assert key not in new
    assert sum(counts.values()) == 1
    assert scanner._matchers is not None


def test_settle_collects_freezes_and_trims_in_a_fresh_process() -> None:
    """``lean.settle`` (a second after start): the collector is on again, start-up's
    survivors are frozen, and glibc's free heap pages are returned (no error where libc has
    no malloc_trim: the call is skipped)."""
    code = (
        "import gc, ctypes; from aip.proxy import lean; lean.start_process();"
        "junk = [bytearray(4096) for _ in range(2000)]; del junk;"
        "lean.settle(); print(gc.isenabled(), gc.get_freeze_count() > 0)"
    )
    assert python_c(code).split() == ["True", "True"]


def test_settle_waits_for_a_quiet_relay_then_runs_once() -> None:
    """The one collection (14-21 ms holding the GIL) waits until no call was relayed for a
    moment: ``activity`` here moves at every look while busy, so the outcome is the same
    however slowly the machine runs."""
    looks = itertools.count(1)
    looked_20 = threading.Event()
    quiet = threading.Event()
    ran: list[bool] = []
    done = threading.Event()

    def activity() -> int:
        n = next(looks)
        if n >= 20:
            looked_20.set()
        return 0 if quiet.is_set() else n

    def run() -> None:
        ran.append(quiet.is_set())
        done.set()

    thread = lean.settle_when_quiet(activity, run=run, first_s=0.0, quiet_s=0.001, latest_s=60)
    assert looked_20.wait(30)
    quiet.set()
    assert done.wait(30)
    thread.join(30)
    assert ran == [True]  # once, and only after the relay went quiet


def test_settle_runs_by_its_latest_time_when_never_quiet() -> None:
    count = itertools.count()
    done = threading.Event()
    t0 = time.monotonic()
    thread = lean.settle_when_quiet(
        lambda: next(count), run=done.set, first_s=0.0, quiet_s=0.01, latest_s=0.2
    )
    assert done.wait(30)
    assert time.monotonic() - t0 >= 0.2
    thread.join(30)
