"""``aipctl grants list [--json] | show ID | revoke ID... | --session S | --tool T | --all``.

Remembered decisions live only in the running approver's memory (docs/grants.md), so every
command is one round trip over its socket, like ``aipctl approver status``; the approver
answers only its own user. A revocation takes effect on the next ask.
"""

from __future__ import annotations

import argparse
from typing import Any, Final

from aip.approver.ctl.approver_call import round_trip
from aip.approver.ctl.console import err, out, out_json
from aip.approver.dialogs.escape import show_value
from aip.shared import paths
from aip.shared.errors import ConfigError
from aip.shared.protocol.codec import ProtocolError
from aip.shared.protocol.grants import Grants, GrantsOp, GrantsReply
from aip.shared.protocol.messages import new_nonce

TIMEOUT_S: Final = 2.0


def register(groups: Any, help_line: str) -> None:
    grants = groups.add_parser("grants", help=help_line)
    sub = grants.add_subparsers(dest="grants_command", metavar="ACTION", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--endpoint", help="approver endpoint (else the default)")
    common.add_argument("--timeout", type=float, default=TIMEOUT_S, metavar="S")
    listing = sub.add_parser("list", parents=[common], help="the grants in force")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(func=cmd_list)
    show = sub.add_parser("show", parents=[common], help="one grant in full (JSON)")
    show.add_argument("id")
    show.set_defaults(func=cmd_show)
    revoke = sub.add_parser("revoke", parents=[common], help="end grants now")
    revoke.add_argument("ids", nargs="*", metavar="ID")
    revoke.add_argument("--session", help="every grant made in or bound to this proxy session")
    revoke.add_argument("--tool", help="every grant for this tool")
    revoke.add_argument("--all", action="store_true", help="every grant")
    revoke.set_defaults(func=cmd_revoke)


def ask_approver(endpoint: str, msg: Grants, timeout_s: float) -> GrantsReply | None:
    """One round trip; None when nothing answered in time. ConfigError on a refusal."""
    return round_trip(endpoint, msg, GrantsReply, timeout_s)


def _call(args: argparse.Namespace, **fields: Any) -> GrantsReply | None:
    endpoint = args.endpoint or paths.default_endpoint()
    try:
        sock = paths.socket_path(endpoint)
        problem = paths.dir_problem(sock.parent) or paths.socket_problem(sock)
        if problem is not None:
            err(f"no approver at {endpoint}: {problem}")
            return None
        reply = ask_approver(endpoint, Grants(ref=new_nonce(), **fields), args.timeout)
    except (ConfigError, ProtocolError) as exc:
        err(f"aipctl grants: {exc}")
        return None
    if reply is None:
        err(f"no approver answered at {endpoint} within {args.timeout:g} s")
    return reply


def cmd_list(args: argparse.Namespace) -> int:
    reply = _call(args, op=GrantsOp.LIST)
    if reply is None:
        return 1
    if args.json:
        out_json(reply.grants)
        return 0
    if not reply.grants:
        out("no grants (remembered decisions) in force")
    for g in reply.grants:
        out(_line(g))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    reply = _call(args, op=GrantsOp.LIST, ids=[args.id])
    if reply is None:
        return 1
    if not reply.grants:
        err(f"aipctl grants: no grant {args.id!r} (expired, revoked, or never made)")
        return 1
    out_json(reply.grants[0])
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    chosen = bool(args.ids) + bool(args.session) + bool(args.tool) + bool(args.all)
    if chosen != 1:
        err("aipctl grants revoke: name grant ids, or one of --session, --tool, --all")
        return 2
    fields: dict[str, Any] = {"op": GrantsOp.REVOKE, "ids": list(args.ids)}
    fields.update(session=args.session or "", tool=args.tool or "", all=bool(args.all))
    reply = _call(args, **fields)
    if reply is None:
        return 1
    for g in reply.grants:
        out(f"revoked {_line(g)}")
    for missing in reply.missing:
        err(f"aipctl grants: no grant {missing!r}")
    if not reply.grants and not reply.missing:
        out("no grant matched")
    return 1 if reply.missing else 0


def _line(g: dict[str, Any]) -> str:
    b = g.get("binding", {})
    what = "exact call" if b.get("scope") == "exact" else f"like {b.get('patterns')}"
    return (
        f"{g.get('grant_id')}  {g.get('kind')}  {show_value(b.get('tool'))} "
        f"for {show_value(b.get('agent_id'))} on {show_value(b.get('server'))}: "
        f"{show_value(what)}  uses {g.get('uses')}/{g.get('max_uses')}  "
        f"until {g.get('expires_at')}{' (this session)' if g.get('scope') == 'session' else ''}"
    )
