"""aip.shared.policy.pyyaml (issue 16): PyYAML's reader gets an equivalent, cheaper regex."""

from __future__ import annotations

import ast
import re
import sys

import pytest
import yaml
import yaml.reader

from aip.shared.policy.pyyaml import SAME_SET, YAML_NON_PRINTABLE
from tests.support.freshpy import python_c

ALL_CODE_POINTS = "".join(map(chr, range(sys.maxunicode + 1)))


def test_the_seeded_regex_matches_exactly_the_characters_yaml_refuses() -> None:
    original = re.compile(YAML_NON_PRINTABLE, re.UNICODE)  # another key: compiled, not seeded
    seeded = re.compile(SAME_SET)
    assert seeded.findall(ALL_CODE_POINTS) == original.findall(ALL_CODE_POINTS)


def test_the_pattern_is_yaml_s_own() -> None:
    """The seed is keyed by yaml's literal: if a PyYAML release changes it, the seed is
    simply never used (and this test says so)."""
    with open(yaml.reader.__file__, encoding="utf-8") as f:
        source = f.read()
    line = next(x for x in source.splitlines() if "NON_PRINTABLE = re.compile(" in x)
    literal = line.split("re.compile(", 1)[1].rsplit(")", 1)[0]
    assert ast.literal_eval(literal) == YAML_NON_PRINTABLE


def test_a_fresh_proxy_process_uses_the_seeded_regex() -> None:
    """A parse (no node cache) loads PyYAML through aip.shared.policy.pyyaml."""
    code = (
        "import aip.shared.policy.load; from aip.shared.policy.yaml_nodes import compose;"
        "compose('apiVersion: aip.io/v1alpha1');"
        "import sys; assert 'yaml' in sys.modules;"
        "import yaml.reader;"
        "from aip.shared.policy.pyyaml import SAME_SET;"
        "print(yaml.reader.Reader.NON_PRINTABLE.pattern == SAME_SET)"
    )
    assert python_c(code) == "True"


def test_the_pure_python_loader_still_refuses_a_control_character() -> None:
    """Without libyaml the reader's check runs on the seeded regex: same refusal."""
    with pytest.raises(yaml.reader.ReaderError) as caught:
        yaml.compose("a: b\x07c\n", Loader=yaml.SafeLoader)
    assert (caught.value.position, caught.value.character) == (4, 7)
