"""``aipctl``: the user's command line around the proxy and the approver.

Only the dispatcher lives here. Each subcommand group is its own module exposing
``register(subparsers, help_line)`` (the line comes from GROUPS here); a handler is stored as
``func`` and returns the exit code (0 success, 1 a problem found or an operation failed, 2
usage).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, Final

# Commands that take a command line of their own after `--` (their parsers set takes_command).
_TAKES_COMMAND = (("approver", "install"), ("config",), ("doctor",))


# Every command group: its name, the line `aipctl --help` shows, and the modules whose
# register() add it. Only the group a command line names is imported: all of them together
# cost ~0.5 s of imports (dialogs, asyncio, the report's HTML), more than most commands run.
GROUPS: Final = (
    ("policy", "check a policy file or explain a decision", ("policy",)),
    ("approver", "start the approver with your desktop login", ()),
    ("config", "wire aip-proxy into Claude Desktop, Cursor, Claude Code or Codex", ("config",)),
    ("doctor", "check that asks can reach a human on this desktop", ("doctor",)),
    ("audit", "verify, follow and search the audit log", ("audit",)),
    ("remote", "approve asks of agents on other hosts (CURVE)", ("remote",)),
    ("grants", "remembered decisions: list, show, revoke", ("grants",)),
)
# The `approver` group is made here; these modules add its actions.
_APPROVER_ACTIONS: Final = ("approver_install", "approver_status")  # install, uninstall; status


def build_parser(group: str | None = None) -> argparse.ArgumentParser:
    """The parser with every group listed and ``group`` (None: every group) complete."""
    parser = argparse.ArgumentParser(
        prog="aipctl",
        description="Policy tools, desktop start-up, client wiring and diagnostics for aip-proxy "
        "and aip-approver.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    groups = parser.add_subparsers(dest="group", metavar="COMMAND")
    for name, help_line, modules in GROUPS:
        if group is not None and name != group:
            stub = groups.add_parser(name, help=help_line)
            stub.set_defaults(func=lambda _args, name=name: main([name]))
        elif name == "approver":
            approver = groups.add_parser(name, help=help_line)
            approver.set_defaults(func=lambda _args, parser=approver: _usage(parser))
            actions = approver.add_subparsers(dest="action", metavar="ACTION")
            for module in _APPROVER_ACTIONS:
                _module(module).register(actions)
        else:
            for module in modules:
                _module(module).register(groups, help_line)
    return parser


def _module(name: str) -> Any:
    return importlib.import_module(f"aip.approver.ctl.{name}")


def _group_named(words: list[str]) -> str | None:
    """The group a command line names: its first word that is not an option (the top level
    has only flags). A word that is no group leaves every group in, for argparse's error."""
    for word in words:
        if not word.startswith("-"):
            return word if any(word == name for name, _, _ in GROUPS) else None
    return None


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_group_named(words) or "")
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
