"""The bases a session's relative paths resolve against (issue 11): directories on the
server's command line and the roots the client declared in its roots/list answer."""

from __future__ import annotations

from pathlib import Path

from aip.proxy.protection import Protection, client_roots, command_dirs


def test_command_dirs_are_the_existing_directories_named(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "rel").mkdir()
    command = ["npx", "-y", "pkg/name", str(tmp_path / "data"), "rel", "--root=/", "/nope", "x"]
    assert command_dirs(command, str(tmp_path)) == (
        str(tmp_path / "data"),
        str(tmp_path / "rel"),
        "/",
    )
    assert command_dirs([str(tmp_path)], "/") == ()  # the program itself is not a base


def test_client_roots_are_file_uris_percent_decoded() -> None:
    result = {
        "roots": [
            {"uri": "file:///home/u/My%20Project", "name": "p"},
            {"uri": "file://localhost/srv/x/"},
            {"uri": "https://example.com/x"},
            {"uri": 5},
            "junk",
        ]
    }
    assert client_roots(result) == ("/home/u/My Project", "/srv/x")
    assert client_roots({"roots": "x"}) == ()
    assert client_roots(None) == ()


def test_the_context_carries_command_dirs_then_the_latest_client_roots(tmp_path: Path) -> None:
    protection = Protection(cwd="/", endpoint=None, command=["srv", str(tmp_path)])
    assert protection.context(None).bases == (str(tmp_path),)
    protection.on_client_roots({"roots": [{"uri": "file:///a"}, {"uri": "file:///b"}]})
    assert protection.context(None).bases == (str(tmp_path), "/a", "/b")
    protection.on_client_roots({"roots": [{"uri": "file:///c"}]})  # the latest, not a union
    assert protection.context(None).bases == (str(tmp_path), "/c")
