"""aip.proxy.lean.defer_modules: a deferred module is in sys.modules without having run its
code; ``import`` of it costs nothing, the first read of one of its attributes runs it once
(whatever thread reads, and however many at once), and it is then a plain module."""

from __future__ import annotations

import importlib
import sys
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from aip.proxy import lean
from tests.support.freshpy import python_c

GATED = """
import builtins
builtins.aip_test_runs.append(__name__)
builtins.aip_test_started.set()
builtins.aip_test_gate.wait(30)
value = 42
"""


@pytest.fixture
def module_dir(tmp_path: Path) -> Iterator[Path]:
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n.startswith("aip_deferred_")]:
            del sys.modules[name]


def test_import_runs_nothing_and_the_first_read_runs_it_once(module_dir: Path) -> None:
    (module_dir / "aip_deferred_plain.py").write_text(
        "import builtins\nbuiltins.aip_test_count = getattr(builtins, 'aip_test_count', 0) + 1\n"
        "x = 1\nimport sys\ny = sys.modules[__name__].x + 1  # reads itself while it runs\n"
    )
    import builtins

    builtins.aip_test_count = 0
    lean.defer_modules(("aip_deferred_plain",))
    module = importlib.import_module("aip_deferred_plain")  # as `import` does: reads __spec__

    assert type(module) is not types.ModuleType  # still deferred
    assert builtins.aip_test_count == 0
    names: dict[str, object] = {}
    exec("from aip_deferred_plain import y", names)

    assert (names["y"], module.x) == (2, 1)
    assert builtins.aip_test_count == 1
    assert type(module) is types.ModuleType
    assert sys.modules["aip_deferred_plain"] is module


def test_a_second_thread_waits_for_the_module_to_finish(module_dir: Path) -> None:
    """importlib.util.LazyLoader hands a half-run module to a second thread (AttributeError);
    here the second reader waits for the first one's run and sees the whole module."""
    import builtins

    (module_dir / "aip_deferred_gated.py").write_text(GATED)
    builtins.aip_test_runs = []
    builtins.aip_test_started = threading.Event()
    builtins.aip_test_gate = threading.Event()
    lean.defer_modules(("aip_deferred_gated",))
    module = sys.modules["aip_deferred_gated"]
    seen: dict[str, object] = {}

    def read(who: str) -> None:
        try:
            seen[who] = module.value
        except Exception as exc:  # the failure this test is for
            seen[who] = exc

    first = threading.Thread(target=read, args=("first",))
    first.start()
    assert builtins.aip_test_started.wait(30)
    second = threading.Thread(target=read, args=("second",))
    second.start()
    _wait_until_reading(second)  # inside the deferred module's attribute read, not failed
    builtins.aip_test_gate.set()
    first.join(30)
    second.join(30)
    assert seen == {"first": 42, "second": 42}
    assert builtins.aip_test_runs == ["aip_deferred_gated"]


def _wait_until_reading(thread: threading.Thread, timeout_s: float = 30.0) -> None:
    """Until ``thread`` is inside a deferred module's attribute read (waiting for the module
    whose code another thread runs); a thread that failed instead ends, and the wait fails."""
    code = lean._Deferred.__getattribute__.__code__
    deadline = time.monotonic() + timeout_s
    while True:
        frame = sys._current_frames().get(thread.ident or 0)
        while frame is not None and frame.f_code is not code:
            frame = frame.f_back
        if frame is not None:
            return
        assert thread.is_alive(), "the second reader ended instead of waiting for the module"
        assert time.monotonic() < deadline, "the second reader never reached the module"
        time.sleep(0.001)  # polling a condition, with a deadline


def test_its_dict_and_name_are_read_only_once_it_ran(module_dir: Path) -> None:
    """No reader sees a deferred module unrun: ``vars()`` and ``__name__`` run it first."""
    (module_dir / "aip_deferred_vars.py").write_text("x = 1\n")
    (module_dir / "aip_deferred_name.py").write_text("x = 2\n")
    lean.defer_modules(("aip_deferred_vars", "aip_deferred_name"))
    assert vars(sys.modules["aip_deferred_vars"])["x"] == 1
    named = sys.modules["aip_deferred_name"]
    assert named.__name__ == "aip_deferred_name"
    assert type(named) is types.ModuleType


def test_loaded_and_unknown_names_are_left_alone() -> None:
    before = sys.modules["os"]
    lean.defer_modules(("os", "aip_deferred_no_such_module"))
    assert sys.modules["os"] is before
    assert "aip_deferred_no_such_module" not in sys.modules


def test_the_deferred_standard_modules_work_when_read() -> None:
    """In a fresh process as aip-proxy starts: dataclasses (orjson's import) leaves inspect
    unrun, a dataclass without a docstring (inspect.signature) still gets its text signature,
    and the others work when asked (each a plain module then)."""
    code = (
        "import sys; from aip.proxy import lean; lean.start_process();"
        "import orjson, dataclasses, pathlib, subprocess;"
        "before = [n for n in ('ast', 'dis', 'tokenize') if n in sys.modules];"
        "C = dataclasses.make_dataclass('C', [('a', int)]);"
        "import ipaddress, locale, copy, fnmatch;"
        "print(before, C.__doc__, ipaddress.ip_address('::1').version,"
        " bool(locale.getpreferredencoding(False)), copy.copy([1]),"
        " fnmatch.fnmatch('a.py', '*.py'),"
        " [type(sys.modules[n]).__name__ for n in lean.DEFERRED_MODULES])"
    )
    shown = str(["module"] * len(lean.DEFERRED_MODULES))
    assert python_c(code) == f"[] C(a: int) 6 True [1] True {shown}"


def test_a_session_s_modules_leave_them_unrun() -> None:
    """What the fork server preloads is every module a session runs, the approval client
    included: none reads a deferred module, nor does the server's list of the files it loaded
    (it read every module's ``__file__``), so none is in any session's memory. (A dataclass
    without a docstring would: dataclasses asks inspect for its text signature.)"""
    code = (
        "import sys; from aip.proxy import lean; lean.start_process();"
        "from aip.proxy.forkserver import server;"
        "[__import__(name) for name in server.PRELOAD];"
        "assert server._loaded_files();"
        "print([n for n in lean.DEFERRED_MODULES if type(sys.modules[n]).__name__ == 'module'])"
    )
    assert python_c(code) == "[]"
