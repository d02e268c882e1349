"""The sandbox plan and its two renderings: bubblewrap's command line and the macOS
``sandbox-exec`` profile (asserted as text; the platform is mocked)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aip.proxy.sandbox import bwrap, launch, seatbelt
from aip.proxy.sandbox.plan import Plan, build, launch_files


def _tree(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    for folder in (".ssh", ".config/aip", "logs", "proj"):
        (home / folder).mkdir(parents=True)
    (home / ".config/aip/policy.yaml").write_text("x")
    for name in ("audit.jsonl", "audit.jsonl.1", "audit.jsonl.torn-2", "audit.jsonlx"):
        (home / "logs" / name).write_text("x")
    return home


def test_plan_hides_folders_files_and_log_families(tmp_path: Path) -> None:
    home = _tree(tmp_path)
    plan = build(
        ["~/.ssh", "$HOME/logs/audit.jsonl.*", "~/.ssh/inner", "~/gone", "proj/../.ssh"],
        cwd=str(home),
        home=str(home),
        policy_path=str(home / ".config/aip/policy.yaml"),
    )
    assert plan.hide_dirs == (str(home / ".ssh"), str(home / ".config/aip"))
    logs = home / "logs"
    assert plan.hide_files == tuple(
        str(logs / n) for n in ("audit.jsonl", "audit.jsonl.1", "audit.jsonl.torn-2")
    )  # not audit.jsonlx: another name
    assert plan.missing == (str(home / "gone"),)  # ~/.ssh/inner lies inside a hidden folder
    assert str(home / ".config") in plan.pin  # renaming it would replace the policy folder
    assert str(home / "logs") in plan.pin
    assert not any(p.startswith(str(home / ".ssh")) for p in plan.pin)


@pytest.mark.parametrize("where", ["home", "cwd", "served", "log", "tmp"])
def test_a_policy_in_a_folder_the_server_needs_hides_only_the_file(
    tmp_path: Path, where: str
) -> None:
    home = _tree(tmp_path)
    proj = home / "proj"
    folder = {"home": home, "cwd": proj, "served": proj, "log": proj, "tmp": Path("/tmp")}
    named = {"served": [str(proj)], "log": [f"--log={proj}/server.log"]}
    policy = folder[where] / f"policy-{os.getpid()}.yaml"
    policy.write_text("x")
    try:
        plan = build(
            [str(policy)],
            cwd=str(home / "proj") if where == "cwd" else "/",
            home=str(home),
            policy_path=str(policy),
            command=["server", *named.get(where, [])],
        )
    finally:
        policy.unlink()
    assert plan.hide_dirs == ()
    assert plan.hide_files == (str(policy),)
    if where != "tmp":
        assert str(policy.parent) in plan.pin


def test_launch_files_cover_our_code_and_start_up_files() -> None:
    found = launch_files()
    code = Path(bwrap.__file__).resolve()
    assert any(code.is_relative_to(Path(p).resolve()) for p in found)
    assert any(p.endswith("aip-approver.service") for p in found)


def test_bwrap_command_line(tmp_path: Path) -> None:
    plan = Plan(("/h/.ssh",), ("/h/log",), ("/venv",), ("/h",))
    user = bwrap.argv("/usr/bin/bwrap", plan, euid=1000)
    assert user == [
        "/usr/bin/bwrap",
        *("--bind", "/", "/", "--dev-bind", "/dev", "/dev", "--proc", "/proc"),
        *("--unshare-pid", "--die-with-parent"),
        *("--bind", "/h", "/h"),
        *("--ro-bind", "/venv", "/venv"),
        *("--tmpfs", "/h/.ssh", "--remount-ro", "/h/.ssh"),
        *("--ro-bind", "/dev/null", "/h/log"),
    ]
    root = bwrap.argv("/usr/bin/bwrap", plan, euid=0)
    dropped = [root[i + 1] for i, a in enumerate(root) if a == "--cap-drop"]
    assert {"CAP_SYS_ADMIN", "CAP_DAC_READ_SEARCH", "CAP_SYS_PTRACE"} <= set(dropped)
    assert [a for a in root if a != "--cap-drop" and a not in dropped] == user


def test_seatbelt_profile_and_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = Plan(('/Users/u/we"ird\\dir',), ("/Users/u/.config/aip/policy.yaml",), ("/venv",), ())
    monkeypatch.setattr(os, "access", lambda path, mode: path == seatbelt.SANDBOX_EXEC)
    prefix, problem = launch.prefix_for(plan, platform="darwin")
    assert problem is None
    assert prefix == [
        "/usr/bin/sandbox-exec",
        "-p",
        "(version 1)\n"
        "(allow default)\n"
        '(deny file-write* (subpath "/venv"))\n'
        '(deny file-read* file-write* (subpath "/Users/u/we\\"ird\\\\dir"))\n'
        '(deny file-read* file-write* (literal "/Users/u/.config/aip/policy.yaml"))\n',
        "--",
    ]
    assert launch.wrapper_levels(prefix) == 0


def test_seatbelt_quoting_cannot_end_the_string() -> None:
    hostile = '/x") (allow file-read* (subpath "/'
    text = seatbelt.quote(hostile)
    assert text == '"/x\\") (allow file-read* (subpath \\"/"'
    with pytest.raises(ValueError, match="NUL"):
        seatbelt.quote("/a\0b")


def test_no_sandbox_program_is_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = Plan((), (), (), ())
    monkeypatch.setenv(bwrap.ENV_PROGRAM, "/nonexistent/bwrap")
    assert launch.prefix_for(plan, platform="linux")[1] == (
        "bwrap is not installed (Debian/Ubuntu: apt install bubblewrap)"
    )
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert launch.prefix_for(plan, platform="darwin")[1] == "/usr/bin/sandbox-exec is missing"
    assert (
        launch.prefix_for(plan, platform="freebsd14")[1]
        == "no sandbox is implemented for freebsd14"
    )
