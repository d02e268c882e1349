"""Time-boxed fuzzing with hypothesis (security.md §8.7; atheris is not a dependency).

``run_for(test)`` calls a ``@given`` test again and again, each call a fresh random run, until
``$AIP_FUZZ_SECONDS`` (default 5) have passed; ``scripts/fuzz`` runs each target for 20 s.
No example database and no shrinking of passing runs: this is a search, not a regression set
(failures are still shrunk and reported by hypothesis as usual).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

DEFAULT_FUZZ_SECONDS = 5.0
BATCH = (
    50  # examples per hypothesis run; a run is the unit of the time box (small: little overshoot)
)
# "No hang": one input may take at most this long (generous: CI is a loaded 2-core box).
PER_INPUT = timedelta(seconds=2)

FUZZ = settings(
    max_examples=BATCH,
    deadline=PER_INPUT,
    database=None,
    derandomize=False,
    phases=[Phase.generate, Phase.shrink],
    suppress_health_check=list(HealthCheck),
)


def fuzz_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get("AIP_FUZZ_SECONDS", DEFAULT_FUZZ_SECONDS)))
    except ValueError:
        return DEFAULT_FUZZ_SECONDS


def run_for(test: Callable[[], Any], seconds: float | None = None) -> int:
    """Run ``test`` (a ``@given`` function) until the time box is used up; at least once.
    Returns the number of runs (each of up to ``BATCH`` examples)."""
    budget = fuzz_seconds() if seconds is None else seconds
    deadline = time.monotonic() + budget
    runs = 0
    while True:
        test()
        runs += 1
        if time.monotonic() >= deadline:
            return runs


# JSON values with the shapes attackers like: big and non-integral numbers, paths, commands.
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.sampled_from(["/etc/shadow", "/etc/../etc/shadow", "~/x", "ls", "ls -l", "DROP t"]),
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
