"""``aipctl remote pair|list|revoke`` on the desktop, ``aipctl remote join`` on a remote host
(issue 14.3; docs/remote.md).

``pair NAME`` opens a pairing window in the trust store and prints the one-time code as its
last line; the approver's remote listener then takes one ``join`` for that name and asks the
human. ``revoke`` removes a device: the listener checks the store on every message, so it
counts at once, and closes that device's open connections.
"""

from __future__ import annotations

import argparse
import re
import time
from typing import Any, Final

from aip.approver.ctl import console, safe_files
from aip.approver.ctl.remote_join import register_join
from aip.approver.remote.trust import DEFAULT_DAYS, MAX_DAYS, TrustStore, listing
from aip.shared.errors import ConfigError
from aip.shared.remote.code import CodeError, check_name, make_code
from aip.shared.remote.files import SERVER_KEY, load_keypair, remote_dir

DEFAULT_TTL_S: Final = 600.0
LISTENING: Final = "listening"  # the endpoint the running listener bound (remote/listener)
_TTL: Final = re.compile(r"^(\d+)([smh]?)$")


def parse_ttl(text: str) -> float:
    match = _TTL.match(text)
    if match is None or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a duration like 90s, 10m or 1h")
    scale = {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]
    if int(match.group(1)) * scale > 24 * 3600:
        raise argparse.ArgumentTypeError("a pairing window is open for at most 24h")
    return float(int(match.group(1)) * scale)


def register(groups: Any, help_line: str) -> None:
    remote = groups.add_parser("remote", help=help_line)
    actions = remote.add_subparsers(dest="action", metavar="ACTION")
    remote.set_defaults(func=lambda _a: (remote.print_help(), 2)[1])
    pair = actions.add_parser("pair", help="open a pairing window; prints a one-time code")
    pair.add_argument("name", help="the device name asks from it will carry (devbox)")
    pair.add_argument("--ttl", type=parse_ttl, default=DEFAULT_TTL_S, help="window (10m)")
    pair.add_argument("--days", type=int, default=DEFAULT_DAYS, help="pairing lifetime")
    pair.add_argument("--address", help="tcp://HOST:PORT remote hosts reach (else the listener's)")
    pair.set_defaults(func=run_pair)
    show = actions.add_parser("list", help="paired devices and open windows")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(func=run_list)
    revoke = actions.add_parser("revoke", help="unpair a device (closes its connections)")
    revoke.add_argument("name")
    revoke.set_defaults(func=run_revoke)
    register_join(actions)


def store() -> TrustStore:
    return TrustStore(remote_dir(), safe_files.atomic_replace)


def run_pair(args: argparse.Namespace) -> int:
    folder = remote_dir()
    try:
        name = check_name(args.name)
        if not 0 < args.days <= MAX_DAYS:
            raise ConfigError(f"--days: 1 to {MAX_DAYS}")
        address = args.address or _listening(folder / LISTENING)
        server = load_keypair(folder / SERVER_KEY)
        make_code(address, server.public, "B" * 8)  # the address is usable before we open
        secret = store().open_window(name, args.ttl, args.days)
    except (ConfigError, CodeError) as exc:
        console.err(f"aipctl remote pair: {exc}")
        return 1
    code = make_code(address, server.public, secret)
    minutes = max(1, round(args.ttl / 60))
    console.out(f"Pairing window for {name!r} open for {minutes} min (single use).")
    console.out("On the remote host run:  aipctl remote join CODE")
    console.out("then compare the key fingerprint it prints with the one in the dialog here.")
    console.out(code.text())
    return 0


def _listening(path: Any) -> str:
    try:
        return str(path.read_text(encoding="ascii").strip())
    except (OSError, UnicodeDecodeError):
        raise ConfigError(
            "no remote listener is running: start aip-approver --remote-listen tcp://HOST:PORT "
            "or give --address"
        ) from None


def run_list(args: argparse.Namespace) -> int:
    try:
        rows = listing(store().current(), time.time())
    except ConfigError as exc:
        console.err(f"aipctl remote list: {exc}")
        return 1
    if args.json:
        console.out_json(rows)
        return 0
    if not rows:
        console.out("no paired devices")
    for row in rows:
        until = time.strftime("%Y-%m-%d %H:%M", time.localtime(row["expires"]))
        print_fp = row["fingerprint"] or "-"
        console.out(f"{row['name']:<20} {row['state']:<8} {print_fp:<20} until {until}")
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    try:
        found = store().revoke(args.name)
    except ConfigError as exc:
        console.err(f"aipctl remote revoke: {exc}")
        return 1
    if not found:
        console.err(f"aipctl remote revoke: no device or window named {args.name!r}")
        return 1
    console.out(f"revoked {args.name}: its connections are closed at its next message")
    return 0
