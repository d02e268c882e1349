"""The start-up path parses the usual command lines without argparse (issue 16: ~12 ms of
import and parser build); whatever it accepts must mean exactly what argparse makes of it,
and anything else is left to argparse."""

from __future__ import annotations

import contextlib
import io

from hypothesis import given
from hypothesis import strategies as st

from aip.proxy.cli import _simple_options, build_parser

TOKENS = [
    "--policy", "--approver", "--agent-id", "--server-name", "--target", "--sandbox",
    "--max-line-bytes", "--max-server-line-bytes", "--verbose", "-v", "-h", "--help",
    "--pol", "--verbose=1", "--policy=", "--policy=a=b", "--max-line-bytes=2048",
    "--max-line-bytes=x", "-5", "2048", " 77 ", "1_000", "p.yaml", "", "-", "--x", "a b",
    "--sandbox=off", "-vv",
]  # fmt: skip


def _argparse(argv: list[str]) -> dict[str, object] | None:
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        try:
            return vars(build_parser().parse_args(argv))
        except SystemExit:
            return None


@given(st.lists(st.sampled_from(TOKENS), max_size=6))
def test_simple_options_agree_with_argparse(argv: list[str]) -> None:
    fast = _simple_options(argv)
    if fast is not None:
        assert vars(fast) == _argparse(argv)


def test_the_usual_command_lines_take_the_simple_path() -> None:
    for argv in (
        [],
        ["--policy", "p.yaml"],
        ["--policy=p.yaml", "--sandbox", "off", "-v", "--agent-id", "a", "--server-name", "s"],
        ["--approver", "ipc:///run/a.sock", "--max-line-bytes", "2048", "--target", "srv -x"],
    ):
        fast = _simple_options(argv)
        assert fast is not None
        assert vars(fast) == _argparse(argv)
    for argv in (["--help"], ["--pol", "p"], ["--policy"], ["--policy", "-x"], ["extra"]):
        assert _simple_options(argv) is None
