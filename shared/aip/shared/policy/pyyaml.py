"""PyYAML for the policy loaders, imported through here (issue 16: start-up).

``import yaml`` imports its pure-Python reader, whose class body compiles one regex over most of
Unicode, ``NON_PRINTABLE``: ~6 ms of CPU at every proxy start (sre builds a charset over the
whole range), although the loaders compose with libyaml's C parser when it is built
(``yaml_nodes``) and the pure-Python reader then never runs. Before the first import this puts
the compiled form of the complement of its allowed set, which is the same set of characters and
compiles in ~0.3 ms, into ``re``'s cache under the original pattern's key; the reader's
``re.compile`` then finds it. Without libyaml the reader uses it and matches exactly the same
characters (tests/shared/policy/test_pyyaml.py checks every code point). If ``re`` keeps its
cache differently, or yaml is already imported, nothing is put there and yaml compiles its own.
"""

from __future__ import annotations

import re
import sys

# yaml/reader.py's pattern, written the same way (the escapes make the same string).
YAML_NON_PRINTABLE: Final = (
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)
# Every code point (0..0x10FFFF) outside that allowed set: C0 controls but tab, LF and CR;
# DEL..U+0084 and U+0086..U+009F; the surrogates; U+FFFE and U+FFFF.
SAME_SET: Final = "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufffe\uffff]"


def _preseed() -> None:
    cache = getattr(re, "_cache", None)
    if "yaml.reader" in sys.modules or not isinstance(cache, dict):
        return
    cache.setdefault((str, YAML_NON_PRINTABLE, 0), re.compile(SAME_SET))


_preseed()

import yaml as yaml  # noqa: E402  (after the cache is seeded; re-exported for the loaders)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final
