"""A fresh interpreter, for what only a new process shows: which modules its start-up loads,
what its seeded caches hold, the key a launcher computes. The test process's own imports
would hide all of that."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence


def python_c(
    code: str,
    *args: str,
    env: Mapping[str, str] | None = None,
    python: str = sys.executable,
    prefix: Sequence[str] = (),
) -> str:
    """``[*prefix, python, "-c", code, *args]``'s stdout, stripped; it must exit 0."""
    out = subprocess.run(
        [*prefix, python, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ if env is None else env),
        check=True,
    )
    return out.stdout.strip()


def loaded_after(code: str, modules: Iterable[str]) -> list[str]:
    """Which of ``modules`` a fresh interpreter has loaded once ``code`` ran."""
    names = tuple(modules)
    probe = f"{code}\nimport sys; print(','.join(m for m in {names!r} if m in sys.modules))"
    return [m for m in python_c(probe).split(",") if m]
