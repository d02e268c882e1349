"""``aipctl``: the user's command line around the proxy and the approver.

Only the dispatcher lives here. Each subcommand group is its own module exposing
``register(subparsers)``; a handler is stored as ``func`` and returns the exit code
(0 success, 1 a problem found or an operation failed, 2 usage).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from aip.approver.ctl import approver_install as ctl_install
from aip.approver.ctl import config as ctl_config
from aip.approver.ctl import doctor as ctl_doctor
from aip.approver.ctl import policy as ctl_policy

log = logging.getLogger(__name__)

# Groups owned by other modules of the team that may not exist yet in a given checkout: an
# absent module simply means no such group (never a crash of every other command).
_OPTIONAL_GROUPS = ("aip.approver.ctl.audit",)
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
    for module in (ctl_policy, ctl_install, ctl_config, ctl_doctor):
        module.register(groups)
    for name in _OPTIONAL_GROUPS:
        try:
            optional = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # the module exists but is broken: say so, keep the rest
                log.warning("aipctl: %s could not be imported: %s", name, exc)
            continue
        optional.register(groups)
    return parser


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
