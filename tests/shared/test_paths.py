"""Default locations (DESIGN §3) and the owner/mode/symlink checks, root-proof (chown)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from aip.shared import paths
from aip.shared.errors import ConfigError
from aip.shared.policy.always_protected import always_protected


def test_defaults_follow_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(paths.sys, "platform", "linux")
    monkeypatch.delenv("AIP_APPROVER_ENDPOINT", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert paths.default_endpoint() == f"ipc://{tmp_path}/aip/approver.sock"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.setattr(paths, "RUN_USER_BASE", tmp_path / "no-run-user")
    assert paths.runtime_dir() == Path(f"/tmp/aip-{os.getuid()}")
    monkeypatch.setenv("AIP_APPROVER_ENDPOINT", "ipc:///x/y.sock")
    assert paths.default_endpoint() == "ipc:///x/y.sock"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("AIP_AUDIT_LOG", raising=False)
    assert paths.default_audit_log() == tmp_path / "state" / "aip" / "aip-audit.jsonl"
    monkeypatch.setenv("AIP_AUDIT_LOG", "/l/a.jsonl")
    assert paths.default_audit_log() == Path("/l/a.jsonl")
    monkeypatch.delenv("AIP_POLICY", raising=False)
    assert paths.default_policy() == Path.home() / ".config" / "aip" / "policy.yaml"


def test_macos_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paths.sys, "platform", "darwin")
    monkeypatch.setenv("TMPDIR", "/var/folders/xy/T/")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/ignored")
    assert paths.runtime_dir() == Path("/var/folders/xy/T/aip")
    assert paths.state_dir() == Path.home() / "Library" / "Logs" / "aip"


@pytest.mark.parametrize(
    "endpoint",
    ["tcp://127.0.0.1:5555", "ipc://@abstract", "ipc://relative/x.sock", "ipc:///" + "a" * 120],
)
def test_only_absolute_ipc_endpoints(endpoint: str) -> None:
    with pytest.raises(ConfigError):
        paths.socket_path(endpoint)


def test_lock_path_sits_beside_the_socket() -> None:
    assert paths.lock_path("ipc:///run/u/aip/approver.sock") == Path(
        "/run/u/aip/approver.sock.lock"
    )


def test_ensure_private_dir_creates_0700(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        made = paths.ensure_private_dir(tmp_path / "a" / "aip")
    finally:
        os.umask(old)
    assert made.stat().st_mode & 0o777 == 0o700
    assert paths.check_private_dir(made)[0] is paths.DirState.OK


def test_wrong_mode_symlink_and_file_are_refused(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    with pytest.raises(paths.UnsafePathError, match="mode 0755"):
        paths.ensure_private_dir(loose)
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(paths.UnsafePathError, match="symlink"):
        paths.ensure_private_dir(link)
    assert paths.check_private_dir(link)[0] is paths.DirState.UNTRUSTED
    afile = tmp_path / "file"
    afile.write_text("")
    with pytest.raises(paths.UnsafePathError, match="not a directory"):
        paths.ensure_private_dir(afile)
    assert paths.check_private_dir(tmp_path / "absent")[0] is paths.DirState.MISSING


def test_a_dir_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("chown needs root")
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    shutil.chown(other, "nobody")
    with pytest.raises(paths.UnsafePathError, match="owned by uid"):
        paths.ensure_private_dir(other)
    state, why = paths.check_private_dir(other)
    assert state is paths.DirState.UNTRUSTED
    assert "owned by uid" in why


def test_xdg_runtime_dir_itself_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o755)
    xdg.chmod(0o755)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
    with pytest.raises(paths.UnsafePathError, match="XDG_RUNTIME_DIR"):
        paths.ensure_private_dir(xdg / "aip")


def test_socket_problem(tmp_path: Path) -> None:
    assert "does not exist" in (paths.socket_problem(tmp_path / "none") or "")
    (tmp_path / "f").write_text("")
    assert "not a socket" in (paths.socket_problem(tmp_path / "f") or "")


# ---- runtime dir without $XDG_RUNTIME_DIR (MCP clients strip the environment) ----


def _run_user(tmp_path: Path, mode: int = 0o700) -> tuple[Path, Path]:
    """A fake /run/user with our uid's session dir in it (the real one is never touched)."""
    base = tmp_path / "run-user"
    base.mkdir()
    mine = base / str(os.getuid())
    mine.mkdir(mode=mode)
    mine.chmod(mode)
    return base, mine


@pytest.fixture
def stripped_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """What an MCP client passes on: HOME, LOGNAME, PATH, SHELL, TERM, USER only."""
    monkeypatch.setattr(paths.sys, "platform", "linux")
    for name in ("XDG_RUNTIME_DIR", "AIP_APPROVER_ENDPOINT", "TMPDIR"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("stripped_env")
def test_stripped_env_finds_the_session_runtime_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, mine = _run_user(tmp_path)
    assert paths.runtime_dir(base) == mine / "aip"
    monkeypatch.setattr(paths, "RUN_USER_BASE", base)
    # The proxy (stripped env) and the approver (XDG_RUNTIME_DIR from the session) agree.
    proxy_side = paths.default_endpoint()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(mine))
    assert proxy_side == paths.default_endpoint() == f"ipc://{mine}/aip/approver.sock"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    made = paths.ensure_private_dir(paths.runtime_dir())
    assert made == mine / "aip"
    assert made.stat().st_mode & 0o777 == 0o700


@pytest.mark.usefixtures("stripped_env")
def test_stripped_env_falls_back_when_the_session_dir_is_unusable(tmp_path: Path) -> None:
    fallback = Path(f"/tmp/aip-{os.getuid()}")
    assert paths.runtime_dir(tmp_path / "absent") == fallback
    base, mine = _run_user(tmp_path, 0o755)
    assert paths.runtime_dir(base) == fallback  # not 0700
    mine.chmod(0o700)
    assert paths.runtime_dir(base) == mine / "aip"
    mine.rename(tmp_path / "elsewhere")
    mine.symlink_to(tmp_path / "elsewhere")  # a private dir, but reached through a link
    assert paths.runtime_dir(base) == fallback
    mine.unlink()
    mine.write_text("")  # not a directory
    assert paths.runtime_dir(base) == fallback


@pytest.mark.usefixtures("stripped_env")
def test_stripped_env_refuses_a_session_dir_of_another_user(tmp_path: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("chown needs root")
    base, mine = _run_user(tmp_path)
    shutil.chown(mine, "nobody")
    assert paths.runtime_dir(base) == Path(f"/tmp/aip-{os.getuid()}")


def test_xdg_runtime_dir_wins_and_macos_ignores_run_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, _mine = _run_user(tmp_path)
    monkeypatch.setattr(paths.sys, "platform", "linux")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg"))
    assert paths.runtime_dir(base) == tmp_path / "xdg" / "aip"
    monkeypatch.setattr(paths.sys, "platform", "darwin")
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.setenv("TMPDIR", str(tmp_path / "T"))
    assert paths.runtime_dir(base) == tmp_path / "T" / "aip"


# ---- always-protected paths (DESIGN §4.5) ----


def test_always_protected_names_every_aip_location(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(paths.sys, "platform", "linux")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("AIP_AUDIT_LOG", raising=False)
    monkeypatch.delenv("AIP_APPROVER_ENDPOINT", raising=False)
    private = tmp_path / "sock"
    private.mkdir(mode=0o700)
    got = always_protected(
        str(tmp_path / "p.yaml"), f"ipc://{private}/a.sock", [str(tmp_path / "logs" / "a.jsonl")]
    )
    state = tmp_path / "state" / "aip"
    assert set(got) == {
        str(tmp_path / "p.yaml"),
        str(tmp_path / "run" / "aip"),
        str(private),
        str(state),
        str(state / "aip-audit.jsonl"),
        str(state / "aip-audit.jsonl") + ".*",  # its rotations and torn copies
        str(state / "audit-hmac.key"),
        str(state / "spool"),
        str(tmp_path / "logs" / "a.jsonl"),
        str(tmp_path / "logs" / "a.jsonl") + ".*",
        str(tmp_path / "logs" / "audit-hmac.key"),
        str(tmp_path / "logs" / "spool"),
    }
    assert len(got) == len(set(got))
    assert got[0] == str(tmp_path / "p.yaml")


def test_a_shared_or_home_endpoint_dir_is_not_protected_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir(mode=0o700)
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o1777)
    shared.chmod(0o1777)
    for folder in (shared, tmp_path / "home", tmp_path):  # tmp_path holds home
        got = always_protected(None, f"ipc://{folder}/a.sock")
        assert str(folder) not in got
        assert {str(folder / "a.sock"), str(folder / "a.sock.lock")} <= set(got)
    # A TCP endpoint is refused for asks; nothing of ours to protect, no error.
    assert always_protected(None, "tcp://127.0.0.1:1")


def test_read_private_file_reads_one_more_than_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_bytes(b"0123456789")
    path.chmod(0o600)
    data, st = paths.read_private_file(path, 4)
    assert (data, st.st_size) == (b"01234", 10)  # one over the limit: "longer than 4"
    assert paths.read_private_file(path, 64)[0] == b"0123456789"


def test_read_private_file_refuses_what_is_not_private(tmp_path: Path) -> None:
    """Open to the group, a symlink (never followed), a FIFO (never waited on: the old key
    reader opened without O_NONBLOCK and would hang there), another user's file."""
    shared = tmp_path / "shared"
    shared.write_bytes(b"k")
    shared.chmod(0o640)
    with pytest.raises(paths.NotPrivateError, match="not a private file of ours"):
        paths.read_private_file(shared, 16)
    link = tmp_path / "link"
    private = tmp_path / "private"
    private.write_bytes(b"k")
    private.chmod(0o600)
    link.symlink_to(private)
    with pytest.raises(OSError, match="Too many levels of symbolic links") as caught:
        paths.read_private_file(link, 16)
    assert not isinstance(caught.value, paths.NotPrivateError)  # the open itself refused it
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(paths.NotPrivateError):
        paths.read_private_file(fifo, 16)
    if os.getuid() == 0:
        shutil.chown(private, "nobody")
        with pytest.raises(paths.NotPrivateError):
            paths.read_private_file(private, 16)
