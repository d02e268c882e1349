"""``aipctl``: the user's command line around the proxy and the approver.

Only the dispatcher lives here. Each subcommand group is its own module exposing
``register(subparsers)``; a handler is stored as ``func`` and returns the exit code
(0 success, 1 a problem found or an operation failed, 2 usage).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from aip.approver.ctl import approver_install as ctl_install
from aip.approver.ctl import approver_status as ctl_status
from aip.approver.ctl import audit as ctl_audit
from aip.approver.ctl import config as ctl_config
from aip.approver.ctl import doctor as ctl_doctor
from aip.approver.ctl import grants as ctl_grants
from aip.approver.ctl import policy as ctl_policy
from aip.approver.ctl import remote as ctl_remote

# Commands that take a command line of their own after `--` (their parsers set takes_command).
_TAKES_COMMAND = (("approver", "install"), ("config",), ("doctor",))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aipctl",
        description="Policy tools, desktop start-up, client wiring and diagnostics for aip-proxy "
        "and aip-approver.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    groups = parser.add_subparsers(dest="group", metavar="COMMAND")
    ctl_policy.register(groups)
    approver = groups.add_parser("approver", help="start the approver with your desktop login")
    approver.set_defaults(func=lambda _args: _usage(approver))
    actions = approver.add_subparsers(dest="action", metavar="ACTION")
    ctl_install.register(actions)  # install, uninstall
    ctl_status.register(actions)  # status
    for module in (ctl_config, ctl_doctor, ctl_audit, ctl_remote, ctl_grants):
        module.register(groups)
    return parser


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    # Everything after the first `--` is a command line of its own (the server to wrap, the
    # proxy to diagnose, arguments for the approver). Split here: argparse cannot place a
    # trailing `nargs="*"` positional after options reliably.
    head, tail = words, []
    plain = (
        [w for w in words[: words.index("--")] if not w.startswith("-")] if "--" in words else []
    )
    if any(plain[: len(prefix)] == list(prefix) for prefix in _TAKES_COMMAND):
        cut = words.index("--")
        head, tail = words[:cut], words[cut + 1 :]
    args = parser.parse_args(head)  # elsewhere a `--` keeps its usual argparse meaning
    if getattr(args, "takes_command", False):
        args.command = tail
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="aipctl: %(message)s",
        stream=sys.stderr,
    )
    func: Callable[[argparse.Namespace], Any] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        result = func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `aipctl ... | head`: the reader left, that is not our failure
        return 0
    return 0 if result is None else int(result)


if __name__ == "__main__":
    sys.exit(main())
