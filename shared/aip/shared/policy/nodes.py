"""A policy document as the loaders read it: YAML's composed node graph, reduced to what they
look at (each node's tag, value and line), in classes of ours.

PyYAML composes; ``aip.shared.policy.yaml_nodes`` turns its nodes into these. Keeping the
loaders off PyYAML's classes lets a proxy whose policy was composed before load it without
importing PyYAML at all (~16 ms of every start: aip.shared.policy.node_cache). ``encode`` and
``decode`` own the cached form: nested JSON arrays (orjson, loaded at start anyway), and
``decode`` refuses anything that is not exactly what ``encode`` writes.
"""

from __future__ import annotations

import orjson

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

_T: Final = "tag:yaml.org,2002:"
STR: Final = _T + "str"
BOOL: Final = _T + "bool"
INT: Final = _T + "int"
NULL: Final = _T + "null"
MERGE: Final = _T + "merge"

MAX_DEPTH: Final = 32  # a policy needs 5 levels; yaml_nodes refuses deeper documents
_TYPE_NAMES: Final = {
    BOOL: "a boolean",
    INT: "a number",
    _T + "float": "a number",
    NULL: "empty (null)",
    _T + "timestamp": "a date",
    MERGE: "a merge key",
    _T + "map": "a mapping",
    _T + "seq": "a list",
    STR: "a string",
}
_SCALAR, _MAPPING, _SEQUENCE = 0, 1, 2


class Node:
    """A composed node: its resolved ``tag``, its ``value`` and its 1-based ``line``."""

    __slots__ = ("line", "tag", "value")

    def __init__(self, tag: str, value: object, line: int) -> None:
        self.tag = tag
        self.value = value
        self.line = line

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.tag!r}, {self.value!r}, line={self.line})"


class Scalar(Node):
    __slots__ = ()
    value: str


class Mapping(Node):
    __slots__ = ()
    value: list[tuple[Node, Node]]


class Sequence(Node):
    __slots__ = ()
    value: list[Node]


def describe(node: Node) -> str:
    """What a node is, in the words an error message needs."""
    return _TYPE_NAMES.get(node.tag, f"of type {node.tag}")


def encode(root: Node) -> bytes:
    """The cached form; raises orjson.JSONEncodeError for a text JSON cannot hold (a lone
    surrogate: only ``load_policy_text`` lets one through, and it caches nothing)."""
    return orjson.dumps(_flat(root))


def _flat(node: Node) -> list[object]:
    if isinstance(node, Mapping):
        return [_MAPPING, node.tag, node.line, [[_flat(k), _flat(v)] for k, v in node.value]]
    if isinstance(node, Sequence):
        return [_SEQUENCE, node.tag, node.line, [_flat(item) for item in node.value]]
    return [_SCALAR, node.tag, node.line, node.value]


def decode(data: bytes) -> Node | None:
    """The tree ``encode`` wrote, or None for anything else (a cache is never trusted blindly:
    a torn or foreign file only costs a fresh parse)."""
    try:
        return _node(orjson.loads(data), 0)
    except (orjson.JSONDecodeError, _Malformed):
        return None


class _Malformed(Exception):
    pass


def _node(flat: object, depth: int) -> Node:
    if depth > MAX_DEPTH + 1 or type(flat) is not list or len(flat) != 4:
        raise _Malformed
    kind, tag, line, value = flat
    if type(kind) is not int or type(tag) is not str or type(line) is not int or line < 0:
        raise _Malformed
    if kind == _SCALAR and type(value) is str:
        return Scalar(tag, value, line)
    if type(value) is not list:
        raise _Malformed
    if kind == _SEQUENCE:
        return Sequence(tag, [_node(item, depth + 1) for item in value], line)
    if kind == _MAPPING:
        return Mapping(tag, [_pair(pair, depth + 1) for pair in value], line)
    raise _Malformed


def _pair(flat: object, depth: int) -> tuple[Node, Node]:
    if type(flat) is not list or len(flat) != 2:
        raise _Malformed
    return _node(flat[0], depth), _node(flat[1], depth)
