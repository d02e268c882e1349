"""The MCP server gets the environment the proxy was given (issue 12 item 9): CPython's locale
coercion sets LC_CTYPE=C.UTF-8 in a proxy started under the C locale, and that must not reach
the server."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.proxyproc import RAW_SERVER, ProxyProcess

Make = Callable[..., ProxyProcess]
# The server writes its environment, then becomes the raw test server (sh does no coercion).
DUMP_ENV = ["sh", "-c", 'env > "$0.tmp" && mv "$0.tmp" "$0" && exec "$@"']


def _server_env(make_proxy: Make, tmp_path: Path, env: dict[str, str | None]) -> dict[str, str]:
    dump = tmp_path / "server.env"
    p = make_proxy([*DUMP_ENV, str(dump), *RAW_SERVER], env=env)
    assert p.initialize()["result"]["serverInfo"]["name"] == "raw-test-server"
    deadline = time.monotonic() + 10
    while not dump.exists():  # renamed into place before the server answered initialize
        assert time.monotonic() < deadline
        time.sleep(0.01)
    pairs = (line.partition("=") for line in dump.read_text().splitlines())
    return {name: value for name, sep, value in pairs if sep}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"LANG": "C", "LC_ALL": "", "LC_CTYPE": ""}, ""),  # explicitly empty stays empty
        (
            {"LANG": "C", "LC_ALL": "", "LC_CTYPE": None},
            None,
        ),  # coerced in the proxy, absent for the server
        ({"LANG": "C.UTF-8", "LC_ALL": "", "LC_CTYPE": "POSIX"}, "POSIX"),
    ],
    ids=["empty", "absent", "posix"],
)
def test_server_sees_lc_ctype_as_given(
    make_proxy: Make, tmp_path: Path, given: dict[str, str | None], expected: str | None
) -> None:
    env = _server_env(make_proxy, tmp_path, given)
    assert env.get("LC_CTYPE") == expected
    assert env["LANG"] == given["LANG"]
