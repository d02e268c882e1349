"""Running the real ``aipctl`` console script (the one pip installed beside this Python)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

AIPCTL = str(Path(sys.executable).parent / "aipctl")
RUN_TIMEOUT_S = 30.0


def quiet_env(**extra: str) -> dict[str, str]:
    """This process's environment without any ``AIP_*`` setting, colours off, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIP_")}
    return {**env, "NO_COLOR": "1", **extra}


def aipctl(
    *args: str,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    timeout_s: float = RUN_TIMEOUT_S,
) -> subprocess.CompletedProcess[str]:
    """``aipctl ARGS`` to completion; ``env`` is its whole environment (default ``quiet_env()``).
    A non-zero exit is returned, not raised: the exit code is part of what tests check."""
    return subprocess.run(
        [AIPCTL, *args],
        input=stdin,
        env=dict(env) if env is not None else quiet_env(),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


@contextlib.contextmanager
def tail_follow(log: Path, err: Path, n: int = 1) -> Iterator[subprocess.Popen[str]]:
    """``aipctl audit tail -n N -f`` on ``log``, its stdout a pipe to read, stderr in ``err``;
    killed (with its process group) and its pipe closed on exit."""
    with err.open("w") as err_file:
        proc = subprocess.Popen(
            [AIPCTL, "audit", "tail", "-n", str(n), "-f"],
            stdout=subprocess.PIPE,
            stderr=err_file,
            text=True,
            start_new_session=True,
            env=quiet_env(AIP_AUDIT_LOG=str(log)),
        )
        with proc:  # closes the stdout pipe after the wait below
            try:
                yield proc
            finally:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=RUN_TIMEOUT_S)
