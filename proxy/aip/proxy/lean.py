"""Process-wide settings that keep aip-proxy's start-up short and its memory small (issue 16:
<= 100 ms added to the first answered ``initialize``, <= 28 MB RSS). None of them changes what
the proxy checks or decides.

- The cycle collector is off during start-up (its ~40 collections cost ~10 ms before the first
  answer) and ``settle`` runs once, a second or more after start, when the relay has made no
  record for 50 ms (``settle_when_quiet``: its collection holds the GIL 14-21 ms, a call in
  flight would wait that long; busy for 10 s, it runs anyway): it collects the start-up's garbage,
  moves what lives on (modules, the policy, compiled rules) out of the collector's sight
  (``gc.freeze``: later full collections do not walk it again), turns the collector on, and
  returns glibc's free heap pages (``malloc_trim``).
- hashlib and hmac use CPython's own SHA-2 code, not OpenSSL's: loading libcrypto costs ~3.7 MB
  of RSS and a few ms of start-up, for hashes of small texts (the policy file, a record line's
  HMAC: 3.9 against 1.65 us with OpenSSL, measured in a hot loop, so ~2.2 us more per
  record). The digests are the same.
- Some standard modules are imported, but their code runs only when one of their attributes
  is first read (``defer_modules``): ``inspect``, which dataclasses names at its top (orjson
  imports dataclasses) for a class's text signature, which no class of the proxy's start asks
  for (with ast, dis, tokenize and linecache ~7 ms of a start before the first answer);
  ``ipaddress``, which urllib.parse (pathlib's) names for a bracketed URL host (~1.5 ms);
  ``locale``, which subprocess names for text-mode pipes (~1 ms; the proxy's are bytes);
  ``copy`` (with weakref), which dataclasses names for ``asdict``, and ``fnmatch``, which
  pathlib names for glob patterns (~1 ms together).
- glibc's malloc is left as it is. Measured again once the spool compaction stopped the
  approver case's swings (issue 16, helper startmem, 3 runs each, load 10-14): with an approver,
  RSS after 30,000 calls 35.4 MB; MALLOC_ARENA_MAX=2 35.8, =1 32.3; a fixed mmap threshold of
  128 KiB (MALLOC_MMAP_THRESHOLD_, which stops glibc raising it) 32.7. But the fixed threshold
  cost CPU per call (pinned, 4 rounds: 99.5 -> 108 us at 64 in flight, 222 -> 240 alone; each
  read's 1 MiB bytes object is then an mmap and munmap), and one arena showed the same
  direction unpinned (104 -> 117 us; pinned 92.5 -> 95.5), within this load's noise but the
  throughput target is the first one: not done. Measured again (load ~1, 4 alternations, 64
  in flight with an approver, 20,000 calls): MALLOC_ARENA_MAX=1 chain RSS -2.3 MB in 3 of 4
  (+0.3 in one), proxy CPU per call 0.73-1.12x of the default: this host drifts more than
  that, still not done.
"""

from __future__ import annotations

import _thread
import gc
import sys
import threading
import time
import types
from collections.abc import Callable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

SETTLE_S: Final = 1.0  # when ``settle`` may run, after the relay starts
SETTLE_QUIET_S: Final = 0.05  # no record for this long: no call is waiting on the relay
SETTLE_LATEST_S: Final = 10.0  # busy all along: settle anyway


# Standard modules a start imports only because a module it needs names them at its top.
DEFERRED_MODULES: Final = ("inspect", "ipaddress", "locale", "copy", "fnmatch")


def start_process() -> None:
    """First thing in ``aip-proxy``'s main: before the imports and threads these concern."""
    gc.disable()
    without_openssl()
    defer_modules()


def settle_when_quiet(
    activity: Callable[[], int],
    *,
    run: Callable[[], None] | None = None,
    first_s: float = SETTLE_S,
    quiet_s: float = SETTLE_QUIET_S,
    latest_s: float = SETTLE_LATEST_S,
) -> threading.Thread:
    """Run ``settle`` (or ``run``) on a daemon thread, ``first_s`` after now, once
    ``activity()`` (a count that moves with every call relayed) stayed the same for
    ``quiet_s``, and at the latest ``latest_s`` after now."""

    def wait_then_settle() -> None:
        deadline = time.monotonic() + latest_s
        time.sleep(first_s)  # a timer, as threading.Timer would be
        seen = activity()
        while time.monotonic() < deadline:
            time.sleep(quiet_s)
            now = activity()
            if now == seen:
                break
            seen = now
        (run or settle)()

    thread = threading.Thread(target=wait_then_settle, name="settle", daemon=True)
    thread.start()
    return thread


def settle() -> None:
    """Collect the start-up's garbage once, freeze the survivors, collect as usual from now on.
    A process whose collector is on (tests running the runner in-process) is left alone."""
    if gc.isenabled():
        return
    gc.collect()
    gc.freeze()
    gc.enable()
    trim_heap()


def trim_heap() -> None:
    """Give the free pages of glibc's heaps back (``malloc_trim``): the start-up's freed
    buffers (source reads, the YAML parse) otherwise stay resident, ~0.3 MB. Only where
    start-up loaded ctypes anyway (Linux: the subreaper prctl) and libc has the call."""
    if "ctypes" not in sys.modules:
        return
    import ctypes

    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    if trim is not None:
        trim(0)


def without_openssl() -> None:
    """Only in a fresh process: one that has hashlib or hmac already keeps them as they are."""
    if "hashlib" not in sys.modules and "hmac" not in sys.modules:
        sys.modules.setdefault("_hashlib", None)  # type: ignore[arg-type]


def defer_modules(names: tuple[str, ...] = DEFERRED_MODULES) -> None:
    """Put each of ``names`` that is not loaded yet in ``sys.modules`` as a module whose code
    runs when one of its attributes is first read (``_Deferred``): ``import name`` then costs
    nothing, ``from name import x`` and ``name.x`` load it. A name not found, or not Python
    source (an extension module initializes when its module object is made), is left alone."""
    import importlib.util

    for name in names:
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or not (spec.origin or "").endswith(".py"):
            continue
        module = importlib.util.module_from_spec(spec)
        _pending[id(module)] = _thread.RLock()
        module.__class__ = _Deferred
        sys.modules[name] = module


# What ``import name`` reads of a module already in sys.modules, read as it is: ``__spec__``
# (is it still initializing?), ``__path__`` (a package?), ``__class__``. Any other read, its
# ``__dict__`` and ``__name__`` too, runs the module first, so no reader sees it unrun (the
# module's own code, while it runs, reads it as any partly run module).
# importlib.util.LazyLoader does not serve here: its module loads on *any* attribute read,
# so the next ``import inspect`` (dataclasses') loaded it at once.
_AS_IS: Final = frozenset({"__spec__", "__path__", "__class__"})
# Per deferred module (by id) until its code ran, a lock as the import system keeps one per
# module: one thread runs the code, any other reader waits for it (importlib.util.LazyLoader
# hands that reader a half-run module), and loading one never waits for another's.
_pending: dict[int, _thread.RLock] = {}
_running: set[int] = set()  # whose code runs now (in the thread holding its lock)


def is_deferred(module: object) -> bool:
    """``module`` is one of ``defer_modules`` whose code has not run (reading it would run it)."""
    return type(module) is _Deferred


class _Deferred(types.ModuleType):
    """A module of ``defer_modules`` until its code ran; then a plain module again."""

    def __getattribute__(self, name: str) -> Any:
        if name not in _AS_IS and (lock := _pending.get(id(self))) is not None:
            with lock:
                # Ran meanwhile in another thread: a plain module now. Running in this thread
                # (its code reads its own module): read as any partly run module is.
                if id(self) in _pending and id(self) not in _running:
                    _running.add(id(self))
                    try:
                        spec = types.ModuleType.__getattribute__(self, "__spec__")
                        spec.loader.exec_module(self)
                        self.__class__ = types.ModuleType  # type: ignore[assignment]
                        del _pending[id(self)]
                    finally:
                        _running.discard(id(self))
        return types.ModuleType.__getattribute__(self, name)
