"""``aipctl approver install|uninstall`` run as the real console script against a private HOME.

systemctl and launchctl are replaced by recording stand-ins on PATH (CI has no user manager);
the generated unit is checked with the real ``systemd-analyze verify`` where it exists.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import plistlib
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from tests.support.aipctl import aipctl
from tests.support.systools import required_tool


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    runtime = tmp_path / "run"
    fakebin = tmp_path / "bin"
    for d in (home, runtime, fakebin):
        d.mkdir(mode=0o700)
    # Stand-ins that record their argv: the commands install runs are part of the contract.
    for tool in ("systemctl", "launchctl"):
        script = fakebin / tool
        script.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{tmp_path}/calls.log"\nexit 0\n')
        script.chmod(0o755)
    keep = {k: v for k, v in os.environ.items() if k in ("LANG", "LC_ALL", "SYSTEMROOT")}
    return {
        **keep,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "XDG_RUNTIME_DIR": str(runtime),
        "PATH": f"{fakebin}:{os.environ['PATH']}",
    }


def calls(env: dict[str, str]) -> list[str]:
    log = Path(env["HOME"]).parent / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def parse_ini(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(text)
    return parser


def unit_file(env: dict[str, str]) -> Path:
    return Path(env["XDG_CONFIG_HOME"], "systemd", "user", "aip-approver.service")


def test_dry_run_writes_nothing_and_shows_the_unit(env: dict[str, str]) -> None:
    done = aipctl("approver", "install", "--method", "systemd", "--dry-run", env=env)
    assert done.returncode == 0, done.stderr
    assert f"would write {unit_file(env)}" in done.stdout
    assert "would run: systemctl --user enable aip-approver.service" in done.stdout
    assert not unit_file(env).exists()
    assert calls(env) == []


def test_systemd_unit_installs_imports_the_display_and_verifies(env: dict[str, str]) -> None:
    env = {**env, "DISPLAY": ":42", "XAUTHORITY": "/tmp/xauth-test"}
    done = aipctl("approver", "install", "--method", "systemd", "--", "--timeout", "30", env=env)
    assert done.returncode == 0, done.stderr
    unit = parse_ini(unit_file(env).read_text())
    argv = shlex.split(unit["Service"]["ExecStart"])
    assert Path(argv[0]).is_absolute()
    assert os.access(argv[0], os.X_OK)
    assert argv[-2:] == ["--timeout", "30"]
    assert unit["Unit"]["PartOf"] == "graphical-session.target"
    assert unit["Install"]["WantedBy"] == "graphical-session.target"
    assert "DISPLAY" in unit["Service"]["PassEnvironment"].split()
    assert calls(env)[:4] == [
        "systemctl --user daemon-reload",
        "systemctl --user import-environment DISPLAY XAUTHORITY",
        "systemctl --user enable aip-approver.service",
        "systemctl --user restart aip-approver.service",
    ]
    analyze = required_tool("systemd-analyze")
    verify = subprocess.run(
        [analyze, "--user", "verify", str(unit_file(env))],
        env={**os.environ, "XDG_RUNTIME_DIR": env["XDG_RUNTIME_DIR"]},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr


def test_unit_quotes_unusual_arguments(env: dict[str, str]) -> None:
    odd = "exec:/opt/my dialogs/ask $HOME 100%"
    done = aipctl("approver", "install", "--method", "systemd", "--dry-run", "--", odd, env=env)
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("ExecStart="))
    assert line.endswith('"exec:/opt/my dialogs/ask $$HOME 100%%"')


def test_systemd_uninstall_disables_and_removes(env: dict[str, str]) -> None:
    assert aipctl("approver", "install", "--method", "systemd", env=env).returncode == 0
    done = aipctl("approver", "uninstall", env=env)
    assert done.returncode == 0, done.stderr
    assert not unit_file(env).exists()
    assert "systemctl --user disable --now aip-approver.service" in calls(env)
    assert calls(env)[-1] == "systemctl --user daemon-reload"
    again = aipctl("approver", "uninstall", env=env)
    assert again.returncode == 0
    assert "No aip-approver start-up file" in again.stdout


def test_install_without_display_enables_but_does_not_start(env: dict[str, str]) -> None:
    done = aipctl("approver", "install", "--method", "systemd", env=env)
    assert done.returncode == 0, done.stderr
    assert "systemctl --user restart aip-approver.service" not in calls(env)
    assert "dbus-update-activation-environment --systemd" in done.stderr


def test_autostart_entry(env: dict[str, str]) -> None:
    done = aipctl("approver", "install", "--method", "autostart", "--no-start", env=env)
    assert done.returncode == 0, done.stderr
    path = Path(env["XDG_CONFIG_HOME"], "autostart", "aip-approver.desktop")
    entry = parse_ini(path.read_text())["Desktop Entry"]
    assert entry["Type"] == "Application"
    assert entry["Terminal"] == "false"
    exe = shlex.split(entry["Exec"])[0]
    assert Path(exe).is_absolute()
    assert os.access(exe, os.X_OK)
    check = subprocess.run(
        [required_tool("desktop-file-validate"), str(path)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout
    assert aipctl("approver", "uninstall", env=env).returncode == 0
    assert not path.exists()


def test_launchd_agent(env: dict[str, str]) -> None:
    done = aipctl("approver", "install", "--method", "launchd", env=env)
    assert done.returncode == 0, done.stderr
    path = Path(env["HOME"], "Library", "LaunchAgents", "io.aip.approver.plist")
    plist = plistlib.loads(path.read_bytes())
    assert plist["Label"] == "io.aip.approver"
    assert Path(plist["ProgramArguments"][0]).is_absolute()
    assert plist["ProgramArguments"][-2:] == [
        "--endpoint",
        f"ipc://{env['XDG_RUNTIME_DIR']}/aip/approver.sock",
    ]
    assert plist["RunAtLoad"] is True
    assert plist["LimitLoadToSessionType"] == "Aqua"  # a GUI login only: dialogs need it
    assert Path(plist["StandardErrorPath"]).parent.is_dir()
    uid = os.getuid()
    assert calls(env) == [
        f"launchctl bootout gui/{uid}/io.aip.approver",
        f"launchctl bootstrap gui/{uid} {path}",
    ]
    assert aipctl("approver", "uninstall", env=env).returncode == 0
    assert not path.exists()
    assert calls(env)[-1] == f"launchctl bootout gui/{uid}/io.aip.approver"


def test_foreign_file_is_not_replaced_without_force(env: dict[str, str]) -> None:
    unit_file(env).parent.mkdir(parents=True)
    unit_file(env).write_text("[Service]\nExecStart=/bin/true\n")
    refused = aipctl("approver", "install", "--method", "systemd", env=env)
    assert refused.returncode == 1
    assert "not written by aipctl" in refused.stderr
    assert unit_file(env).read_text() == "[Service]\nExecStart=/bin/true\n"
    kept = aipctl("approver", "uninstall", env=env)
    assert kept.returncode == 1
    assert unit_file(env).exists()
    forced = aipctl("approver", "install", "--method", "systemd", "--force", env=env)
    assert forced.returncode == 0, forced.stderr
    assert "aipctl approver install" in unit_file(env).read_text()


def test_reinstall_replaces_our_own_file(env: dict[str, str]) -> None:
    assert aipctl("approver", "install", "--method", "systemd", env=env).returncode == 0
    done = aipctl("approver", "install", "--method", "systemd", "--", "--dialog", "zenity", env=env)
    assert done.returncode == 0, done.stderr
    assert "--dialog zenity" in unit_file(env).read_text()


def test_missing_systemctl_names_the_commands_to_run(env: dict[str, str]) -> None:
    (Path(env["HOME"]).parent / "bin" / "systemctl").unlink()
    env = {**env, "PATH": str(Path(env["HOME"]).parent / "bin")}
    done = aipctl("approver", "install", "--method", "systemd", env=env)
    assert done.returncode == 1
    assert "systemctl not found" in done.stderr
    assert "systemctl --user enable aip-approver.service" in done.stderr
    assert unit_file(env).exists()  # the file is in place; only enabling is left to do


def test_auto_picks_autostart_without_a_systemd_user_manager(env: dict[str, str]) -> None:
    # env's private XDG_RUNTIME_DIR has no systemd/ folder: no user manager, on any machine
    done = aipctl("approver", "install", "--dry-run", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("# autostart: would write")


def test_windows_instructions_are_printed(env: dict[str, str]) -> None:
    done = aipctl(
        "approver", "install", "--method", "windows", "--", "--dialog", "powershell", env=env
    )
    assert done.returncode == 0, done.stderr
    assert "schtasks /Create" in done.stdout
    assert "Startup" in done.stdout
    assert "--dialog powershell" in done.stdout
    assert not any(Path(env["HOME"]).rglob("*aip*"))


def test_unwritable_target_fails_cleanly(env: dict[str, str]) -> None:
    """A directory where the unit file goes (root-proof: no chmod)."""
    unit_file(env).mkdir(parents=True)
    refused = aipctl("approver", "install", "--method", "systemd", env=env)
    assert refused.returncode == 1
    assert "not written by aipctl" in refused.stderr
    forced = aipctl("approver", "install", "--method", "systemd", "--force", env=env)
    assert forced.returncode == 1
    assert f"cannot write {unit_file(env)}" in forced.stderr
    assert "Traceback" not in forced.stderr
    assert calls(env) == []


def test_switching_method_removes_the_other_file(env: dict[str, str]) -> None:
    assert aipctl("approver", "install", "--method", "systemd", env=env).returncode == 0
    done = aipctl("approver", "install", "--method", "autostart", "--no-start", env=env)
    assert done.returncode == 0, done.stderr
    assert not unit_file(env).exists()
    assert Path(env["XDG_CONFIG_HOME"], "autostart", "aip-approver.desktop").exists()
    assert "systemctl --user disable --now aip-approver.service" in calls(env)


def test_autostart_from_a_desktop_starts_the_approver_now(env: dict[str, str]) -> None:
    runtime = tempfile.mkdtemp(prefix="aipi-", dir="/tmp")  # ipc paths must stay short
    env = {**env, "DISPLAY": ":98", "XDG_RUNTIME_DIR": runtime}
    done = aipctl("approver", "install", "--method", "autostart", env=env)
    assert done.returncode == 0, done.stderr
    found = re.search(r"started aip-approver \(pid (\d+)\); its log: (\S+)", done.stdout)
    assert found is not None, done.stdout
    proc = psutil.Process(int(found.group(1)))
    log = Path(found.group(2))
    try:
        assert log.parent == Path(env["XDG_STATE_HOME"], "aip")
        assert log.stat().st_mode & 0o777 == 0o600
        exec_line = parse_ini(
            Path(env["XDG_CONFIG_HOME"], "autostart", "aip-approver.desktop").read_text()
        )["Desktop Entry"]["Exec"]
        assert shlex.split(exec_line)[0] in proc.cmdline()  # the same program, started now
        give_up = time.monotonic() + 10
        while "aip-approver ready" not in log.read_text():  # it runs and serves
            assert time.monotonic() < give_up, log.read_text()
            with contextlib.suppress(psutil.TimeoutExpired):
                proc.wait(0.05)  # waits on the process between looks at its log
                raise AssertionError(f"approver exited:\n{log.read_text()}")
    finally:
        proc.terminate()
        _gone, alive = psutil.wait_procs([proc], timeout=5)
        for p in alive:
            p.kill()
        shutil.rmtree(runtime, ignore_errors=True)


def test_install_never_writes_through_a_planted_link(env: dict[str, str], tmp_path: Path) -> None:
    unit_dir = unit_file(env).parent
    unit_dir.mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    (unit_dir / ".aip-approver.service.tmp").symlink_to(victim)  # the old fixed temp name
    done = aipctl("approver", "install", "--method", "systemd", "--no-start", env=env)
    assert done.returncode == 0, done.stderr
    assert victim.read_text() == "keep me"
    assert not unit_file(env).is_symlink()
    assert unit_file(env).stat().st_mode & 0o777 == 0o644
    assert [p.name for p in unit_dir.iterdir() if p.name.endswith(".tmp")] == [
        ".aip-approver.service.tmp"  # ours left nothing behind
    ]


def test_control_characters_never_reach_a_start_up_file(env: dict[str, str]) -> None:
    injected = "/tmp/a\rExecStartPre=/bin/sh -c evil\nX=1"
    unit = aipctl(
        "approver",
        "install",
        "--method",
        "systemd",
        "--dry-run",
        "--",
        "--audit-log",
        injected,
        env=env,
    )
    assert unit.returncode == 0, unit.stderr
    exec_lines = [x for x in unit.stdout.splitlines() if "ExecStart" in x]
    assert len(exec_lines) == 1
    assert "\r" not in unit.stdout
    assert '"/tmp/a\\x0dExecStartPre=/bin/sh -c evil\\x0aX=1"' in exec_lines[0]
    for method in ("autostart", "launchd"):
        done = aipctl(
            "approver", "install", "--method", method, "--dry-run", "--", injected, env=env
        )
        assert done.returncode == 2
        assert "control character" in done.stderr
        assert "Traceback" not in done.stderr
