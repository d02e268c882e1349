"""``aip-proxy``: command line (DESIGN §3), policy loading, claiming stdout, exit codes.

Exit 2 for a usage or configuration error (no policy is an error, never allow-all), the MCP
server's exit code (128+N for signal N) otherwise. Stdout is the JSON-RPC wire: it is taken
before anything else runs, and fd 1 then points at stderr.
"""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace

# Light until the fork server is asked (aip.proxy.forkserver.launcher): no typing, logging,
# shlex or stdio before ``main`` decides to start in-process.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence
    from typing import Final, NoReturn

EXIT_USAGE: Final = 2
_LAUNCHERS: Final = frozenset(
    {"python", "python3", "node", "npx", "uv", "uvx", "bunx", "bun", "deno", "docker", "pipx"}
)
# Test seams and tuning knobs (DESIGN §3 fixes the flags; timings come from the environment).
ENV_STDIN_GRACE: Final = "AIP_PROXY_STDIN_GRACE_S"
ENV_TERM_GRACE: Final = "AIP_PROXY_TERM_GRACE_S"
ENV_PROGRESS: Final = "AIP_PROXY_PROGRESS_INTERVAL_S"
ENV_MAX_LINE: Final = "AIP_MAX_LINE_BYTES"
ENV_MAX_SERVER_LINE: Final = "AIP_MAX_SERVER_LINE_BYTES"
ENV_RELOAD: Final = "AIP_PROXY_RELOAD_INTERVAL_S"  # policy file poll; 0 = SIGHUP only


class UsageError(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    import argparse  # only for what _simple_options leaves to it (~12 ms of import and build)

    p = argparse.ArgumentParser(
        prog="aip-proxy",
        description="Run an MCP stdio server behind an AgentPolicy: allow, block or ask a human.",
        usage="%(prog)s [--policy FILE] [--approver ENDPOINT] [--agent-id ID] "
        "[--server-name NAME] [--sandbox require|auto|off] [--verbose] "
        '(-- COMMAND [ARG...] | --target "COMMAND ARG...")',
    )
    p.add_argument(
        "--policy",
        metavar="FILE",
        help="policy file (else $AIP_POLICY, else ~/.config/aip/policy.yaml)",
    )
    p.add_argument(
        "--approver",
        metavar="ENDPOINT",
        help="approver endpoint (else $AIP_APPROVER_ENDPOINT, else the per-user socket)",
    )
    p.add_argument("--agent-id", metavar="ID", help="agent id for the audit log")
    p.add_argument("--server-name", metavar="NAME", help="server name shown in dialogs and logs")
    p.add_argument("--verbose", "-v", action="store_true", help="trace messages (no arguments)")
    p.add_argument("--target", metavar='"COMMAND ARG..."', help="server command, shell-split")
    p.add_argument(
        "--no-fork-server",
        action="store_true",
        help="start in this process, not from the per-user fork server (else $AIP_FORK_SERVER)",
    )
    p.add_argument(
        "--sandbox",
        metavar="require|auto|off",
        help="the kernel sandbox that hides protected paths from the server: require it "
        "(default; no sandbox, no start), use it where it works, or not at all (else $AIP_SANDBOX)",
    )
    p.add_argument(
        "--max-line-bytes",
        type=int,
        metavar="N",
        help=f"longest accepted client line (default 4 MiB, or ${ENV_MAX_LINE})",
    )
    p.add_argument(
        "--max-server-line-bytes",
        type=int,
        metavar="N",
        help=f"longest relayed server line (default 16 MiB, or ${ENV_MAX_SERVER_LINE})",
    )
    return p


# build_parser's options by flag: (attribute, takes an int). The start-up path parses the
# usual command lines itself and leaves argparse every other one (help, abbreviations, errors).
_VALUED: Final = {
    "--policy": ("policy", False),
    "--approver": ("approver", False),
    "--agent-id": ("agent_id", False),
    "--server-name": ("server_name", False),
    "--target": ("target", False),
    "--sandbox": ("sandbox", False),
    "--max-line-bytes": ("max_line_bytes", True),
    "--max-server-line-bytes": ("max_server_line_bytes", True),
}
_FLAGS: Final = {"--verbose": "verbose", "-v": "verbose", "--no-fork-server": "no_fork_server"}


def _simple_options(argv: Sequence[str]) -> SimpleNamespace | None:
    """What ``build_parser().parse_args(argv)`` gives, for command lines made only of exact
    flags, ``--opt VALUE`` and ``--opt=VALUE`` (a VALUE not starting with "-"); None for
    anything else, which argparse then parses (or refuses) as before."""
    found: dict[str, object] = {dest: None for dest, _ in _VALUED.values()}
    found["verbose"] = False
    found["no_fork_server"] = False
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in _FLAGS:
            found[_FLAGS[arg]] = True
            i += 1
            continue
        flag, eq, value = arg.partition("=")
        if flag not in _VALUED:
            return None
        if not eq:
            if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
                return None
            value = argv[i + 1]
        i += 1 if eq else 2
        dest, is_int = _VALUED[flag]
        try:
            found[dest] = int(value) if is_int else value
        except ValueError:
            return None
    return SimpleNamespace(**found)


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace | SimpleNamespace, list[str]]:
    """Options before ``--``, the server command after it (or from ``--target``)."""
    argv = list(argv)
    command: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, command = argv[:cut], argv[cut + 1 :]
    ns = _simple_options(argv) or build_parser().parse_args(argv)
    if ns.target is not None:
        if command:
            raise UsageError("give the server command either after -- or with --target, not both")
        try:
            import shlex

            command = shlex.split(ns.target)
        except ValueError as exc:
            raise UsageError(f"--target: {exc}") from None
    if not command:
        raise UsageError("no MCP server command: use -- COMMAND [ARG...] or --target")
    return ns, command


def server_name_for(command: Sequence[str]) -> str:
    """A readable default name: the program, or its script/package for launchers."""
    name = os.path.basename(command[0])
    if name.rstrip("0123456789.") in _LAUNCHERS:
        for arg in command[1:]:
            if not arg.startswith("-"):
                return os.path.basename(arg.rstrip("/")) or name
    return name


# The timing variables _main reads, in the order it checks them.
_TIMINGS: Final = (ENV_STDIN_GRACE, ENV_TERM_GRACE, ENV_PROGRESS, ENV_RELOAD)


def _env_set(name: str) -> float | None:
    """``$name`` checked as ``_env_number`` does; None when unset or empty."""
    return _env_number(name, 0.0) if os.environ.get(name) else None


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"${name} must be a number, not {raw!r}") from None
    if value < 0:
        raise UsageError(f"${name} must not be negative")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """The console script (``argv`` None): through the per-user fork server when one of the
    same code and identity takes it, else in this process. A given ``argv``: in-process."""
    if argv is None:
        if not _root_with_capabilities():
            from aip.proxy.forkserver.launcher import through_fork_server

            code = through_fork_server(sys.argv[1:])
            if code is not None:
                return code
        _exit_now(in_process(sys.argv[1:]))
    return in_process(argv)


def _root_with_capabilities() -> bool:
    """Root holding a capability, which a fork server never serves
    (forkserver.identity.unconfinable_problem): such a start skips the launcher's imports and
    reads (~3 ms of CPU at every start as root, in containers too). Anything else, root
    without capabilities included, asks the launcher as before."""
    if os.geteuid() != 0:
        return False
    from aip.proxy.forkserver import identity  # os and sys only (the launcher: far more)

    return identity.capability_problem(identity.own_status()) is not None


def _exit_now(code: int) -> NoReturn:
    """End the process once the session has stopped, without the interpreter's finalization.
    The session closed everything it owns (approval client, spool, server) before returning;
    what may still run are daemon threads (a relay thread checking the agent's last line, the
    timers). Python 3.11 ends a daemon thread that wants the GIL during finalization with
    pthread_exit, and inside google-re2's C++ frames that aborts the whole process
    ("terminate called without an active exception": exit -6 instead of the session's
    status, seen in CI after a half-closed stdin). A forked session ends the same way."""
    import contextlib

    from aip.shared import logs

    logs.flush()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed, or its reader left
            stream.flush()
    os._exit(code)


def in_process(
    argv: Sequence[str], on_start: Callable[[Callable[[str], None]], None] | None = None
) -> int:
    """One proxy session in this process; ``on_start`` gets the session's stop function (a
    forked session watches its launcher with it)."""
    from aip.proxy import lean

    lean.start_process()  # before any import it concerns (stdio's too), and before any thread
    from aip.proxy.stdio import claim_stdout

    wire_fd = claim_stdout()  # first write of ours: nothing may reach the JSON-RPC wire by accident
    try:
        return _main(argv, wire_fd, on_start)
    except KeyboardInterrupt:
        return 130


def _main(
    argv: Sequence[str],
    wire_fd: int,
    on_start: Callable[[Callable[[str], None]], None] | None = None,
) -> int:
    from aip.shared import logs

    log = logs.get(__name__)
    # After the stdout claim (keeps --help fast). The relay's modules (aip.proxy.runner and
    # what it imports) load only once the sandbox probe runs: see aip.proxy.sandbox.early.
    from aip.proxy.sandbox import early
    from aip.proxy.sandbox.launch import parse_mode
    from aip.shared.errors import ConfigError
    from aip.shared.jsonrpc import MAX_LINE_BYTES, MAX_SERVER_LINE_BYTES
    from aip.shared.policy.file import PolicyPin, check_policy_file_safety, find_policy_path
    from aip.shared.policy.load import load_policy

    try:
        ns, command = parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    except UsageError as exc:
        sys.stderr.write(f"aip-proxy: error: {exc}\n")
        return EXIT_USAGE
    server_name = ns.server_name or server_name_for(command)
    logs.configure("aip-proxy", tag=server_name, verbose=ns.verbose, direct=True)
    try:
        max_line = ns.max_line_bytes or int(_env_number(ENV_MAX_LINE, MAX_LINE_BYTES))
        if max_line < 1024:
            raise UsageError("--max-line-bytes must be at least 1024")
        try:
            sandbox = parse_mode(ns.sandbox)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        max_server_line = ns.max_server_line_bytes or int(
            _env_number(ENV_MAX_SERVER_LINE, MAX_SERVER_LINE_BYTES)
        )
        if max_server_line < 1024:
            raise UsageError("--max-server-line-bytes must be at least 1024")
        # Checked now, in this order; their defaults come with the relay's modules below.
        timings = [_env_set(name) for name in _TIMINGS]
        path = find_policy_path(ns.policy)
        check_policy_file_safety(path)
        pin = PolicyPin(path)  # reloads read the file in this very folder, or nothing
        policy = load_policy(path, pin=pin, cache=True)
    except (UsageError, ConfigError, OSError) as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    probe = early.start(
        sandbox,
        policy_protected=policy.protected_paths,
        policy_path=policy.path,
        approver=ns.approver,
        command=command,
    )
    try:
        from aip.proxy.child import STDIN_CLOSE_GRACE_S, TERM_GRACE_S
        from aip.proxy.relay.asks import PROGRESS_INTERVAL_S
        from aip.proxy.reload import POLL_INTERVAL_S
        from aip.proxy.runner import run
        from aip.proxy.settings import Settings

        stdin_grace, term_grace, progress, reload_s = timings
        settings = Settings(
            command=command,
            server_name=server_name,
            approver=ns.approver,
            agent_id=ns.agent_id,
            max_line_bytes=max_line,
            max_server_line_bytes=max_server_line,
            stdin_grace_s=STDIN_CLOSE_GRACE_S if stdin_grace is None else stdin_grace,
            term_grace_s=TERM_GRACE_S if term_grace is None else term_grace,
            progress_interval_s=progress or PROGRESS_INTERVAL_S,
            reload_interval_s=POLL_INTERVAL_S if reload_s is None else reload_s,
            sandbox=sandbox,
            on_start=on_start,
        )
        return run(settings, policy, wire_fd, pin=pin, probe=probe)
    finally:
        if probe is not None:
            probe.close()  # run() returned before it needed the probe (else a no-op)
