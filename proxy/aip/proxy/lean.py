"""Process-wide settings that keep aip-proxy's start-up short and its memory small (issue 16:
<= 100 ms added to the first answered ``initialize``, <= 28 MB RSS). None of them changes what
the proxy checks or decides.

- The cycle collector is off during start-up (its ~40 collections cost ~10 ms before the first
  answer) and ``settle`` runs once a second after start: it collects the start-up's garbage,
  moves what lives on (modules, the policy, compiled rules) out of the collector's sight
  (``gc.freeze``: later full collections do not walk it again), and turns the collector on.
- hashlib and hmac use CPython's own SHA-2 code, not OpenSSL's: loading libcrypto costs ~3.7 MB
  of RSS and a few ms of start-up, for hashes of small texts (the policy file, a record line's
  HMAC: ~1 us more each than OpenSSL). The digests are the same.
- glibc gives each thread that allocates its own malloc arena (a heap of its own): the relay
  threads, the reloader, the approval client and ZeroMQ's threads. Two arenas for them all keep
  ~0.5 MB less resident; allocations under the GIL do not contend, and small ones come from each
  thread's cache.
"""

from __future__ import annotations

import gc
import sys
from typing import Final

SETTLE_S: Final = 1.0  # when ``settle`` runs, after the relay starts
MALLOC_ARENAS: Final = 2
_M_ARENA_MAX: Final = -8  # glibc's mallopt parameter


def start_process() -> None:
    """First thing in ``aip-proxy``'s main: before the imports and threads these concern."""
    gc.disable()
    without_openssl()
    fewer_malloc_arenas()


def settle() -> None:
    """Collect the start-up's garbage once, freeze the survivors, collect as usual from now on.
    A process whose collector is on (tests running the runner in-process) is left alone."""
    if gc.isenabled():
        return
    gc.collect()
    gc.freeze()
    gc.enable()


def without_openssl() -> None:
    """Only in a fresh process: one that has hashlib or hmac already keeps them as they are."""
    if "hashlib" not in sys.modules and "hmac" not in sys.modules:
        sys.modules.setdefault("_hashlib", None)  # type: ignore[arg-type]


def fewer_malloc_arenas(arenas: int = MALLOC_ARENAS) -> None:
    """glibc only (before any thread starts: a thread keeps the arena it got)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes  # the sub-reaper prctl loads it anyway

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return
    mallopt(_M_ARENA_MAX, arenas)
