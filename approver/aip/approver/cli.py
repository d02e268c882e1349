"""``aip-approver``: argument parsing, the private socket directory, the instance lock, run.

Exit codes: 0 after SIGTERM/SIGINT (every pending ask denied ``shutdown``), 2 for a usage or
configuration error, 1 when another approver already runs or the endpoint was stolen.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from aip.approver.audit.sink import AuditSink
from aip.approver.dialogs.choose import CHOICES, Choice, choose
from aip.approver.extra_socket import EXTRA_NAME
from aip.approver.instance import AlreadyRunning, InstanceLock
from aip.approver.queue import BUDGET_BURST, BUDGET_PER_MINUTE, MAX_PENDING, MAX_PENDING_SESSION
from aip.approver.server import ApprovalServer
from aip.approver.server_config import ServerConfig
from aip.shared import logs, paths
from aip.shared.errors import ConfigError
from aip.shared.protocol.messages import DEFAULT_TIMEOUT_S
from aip.shared.remote.code import CodeError, split_endpoint

log = logging.getLogger(__name__)

READY_LINE = "aip-approver ready"


def _positive(kind: type[int] | type[float]) -> argparse._ActionType:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive: {text}")
        return value

    return parse


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="aip-approver",
        description="Show human approval dialogs for every aip-proxy of this desktop login.",
    )
    ap.add_argument(
        "--endpoint",
        help="ipc:// endpoint (default: $AIP_APPROVER_ENDPOINT or "
        "ipc://$XDG_RUNTIME_DIR/aip/approver.sock)",
    )
    ap.add_argument(
        "--audit-log",
        help="audit log file (default: $AIP_AUDIT_LOG or $XDG_STATE_HOME/aip/aip-audit.jsonl)",
    )
    ap.add_argument(
        "--timeout",
        type=_positive(float),
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help="auto-deny after this long (default 60)",
    )
    ap.add_argument(
        "--dialog",
        default="auto",
        metavar="BACKEND",
        help=f"{'|'.join(CHOICES)}|exec:PROGRAM (default auto)",
    )
    ap.add_argument(
        "--max-pending-session",
        type=_positive(int),
        default=MAX_PENDING_SESSION,
        metavar="N",
        help="pending asks per proxy session (default 8)",
    )
    ap.add_argument(
        "--max-pending",
        type=_positive(int),
        default=MAX_PENDING,
        metavar="N",
        help="pending asks overall (default 256)",
    )
    ap.add_argument(
        "--ask-rate",
        type=_positive(float),
        default=BUDGET_PER_MINUTE,
        metavar="N",
        help="asks a proxy session may raise per minute (default 12)",
    )
    ap.add_argument(
        "--ask-burst",
        type=_positive(float),
        default=BUDGET_BURST,
        metavar="N",
        help="... of which at most this many at once (default 6)",
    )
    ap.add_argument(
        "--remote-listen",
        metavar="tcp://HOST:PORT",
        default="",
        help="also accept asks of paired remote hosts over CURVE here (docs/remote.md)",
    )
    ap.add_argument(
        "--extra-endpoint",
        metavar="ipc://PATH|none",
        help="the restricted socket to forward to SSH hosts: asks and audit records only "
        "(default: approver-extra.sock beside the socket; docs/remote.md)",
    )
    ap.add_argument("--verbose", action="store_true", help="debug logging")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logs.configure("approver", verbose=args.verbose)
    os.umask(0o077)  # the socket file gets no group/other bits whatever our parent's umask
    try:
        endpoint = args.endpoint or paths.default_endpoint()
        sock = paths.socket_path(endpoint)
        paths.ensure_private_dir(sock.parent)
        audit_path = args.audit_log or str(paths.default_audit_log())
        choice = choose(args.dialog)
        extra = _extra_endpoint(args.extra_endpoint, sock)
        if args.remote_listen:
            split_endpoint(args.remote_listen)
    except (ConfigError, CodeError) as exc:
        log.error("%s", exc)
        return 2
    lock = InstanceLock(paths.lock_path(endpoint))
    try:
        lock.acquire()
    except AlreadyRunning as exc:
        log.error("%s", exc)
        return 1
    try:
        config = ServerConfig(
            endpoint=endpoint,
            timeout_s=args.timeout,
            audit_path=audit_path,
            max_pending_session=args.max_pending_session,
            max_pending=args.max_pending,
            ask_per_minute=args.ask_rate,
            ask_burst=args.ask_burst,
            remote_listen=args.remote_listen,
            extra_endpoint=extra,
        )
        _announce(config, choice)
        return asyncio.run(_serve(config, choice))
    except ConfigError as exc:  # the remote listener could not be opened safely
        log.error("%s", exc)
        return 2
    finally:
        lock.release()


def _extra_endpoint(given: str | None, sock: Path) -> str:
    """The extra socket's endpoint: beside ours by default, ``none`` for none; its folder
    must be as private as ours (ConfigError)."""
    if given == "none":
        return ""
    endpoint = given or paths.IPC_PREFIX + str(sock.with_name(EXTRA_NAME))
    path = paths.socket_path(endpoint)
    if path == sock:
        raise ConfigError(f"--extra-endpoint {endpoint}: that is the approver's own socket")
    paths.ensure_private_dir(path.parent)
    return endpoint


def _announce(config: ServerConfig, choice: Choice) -> None:
    backend = choice.backend.name if choice.backend is not None else "none"
    log.info(
        "aip-approver starting: endpoint=%s extra=%s backend=%s timeout=%gs audit_log=%s",
        config.endpoint,
        config.extra_endpoint or "none",
        backend,
        config.timeout_s,
        config.audit_path,
    )
    if choice.backend is None:
        log.warning(
            "NO DIALOG POSSIBLE (%s): every ask will be denied (%s)",
            choice.why,
            choice.unavailable,
        )


async def _serve(config: ServerConfig, choice: Choice) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ready = asyncio.Event()
    # The central audit log (sole writer); closing it fsyncs what is written (SIGTERM too).
    async with AuditSink(Path(config.audit_path)) as audit:
        server = ApprovalServer(config, choice, audit)
        task = asyncio.ensure_future(server.run(stop, ready))
        waiter = asyncio.ensure_future(ready.wait())
        await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
        if ready.is_set():
            backend = choice.backend.name if choice.backend is not None else "none"
            sys.stderr.write(
                f"{READY_LINE} endpoint={config.endpoint} backend={backend} pid={os.getpid()}\n"
            )
            sys.stderr.flush()
        waiter.cancel()
        code = await task
    log.info("aip-approver stopped")
    return code
