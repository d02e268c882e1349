"""Strict reading of a policy's YAML node graph, so every problem has a line and a key.

The document is composed (``yaml.compose``), never constructed: nothing is instantiated, and
YAML 1.1 surprises (``no`` -> bool, ``0x10`` -> int) are visible as tags and refused where a
string is expected. Anchors, aliases, merge keys and explicit tags are refused outright
(billion laughs, and a policy should read the same to a human and to the loader).
"""

from __future__ import annotations

from collections.abc import Iterator

from aip.shared.errors import PolicyProblem
from aip.shared.policy.nodes import (
    BOOL,
    MAX_DEPTH,
    MERGE,
    NULL,
    STR,
    Mapping,
    Node,
    Scalar,
    Sequence,
    describe,
)
from aip.shared.policy.regexes import CompileBudget

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def compose(text: str) -> tuple[Node | None, list[PolicyProblem]]:
    """Compose one YAML document; refuse anchors, aliases and explicit tags first.

    Returns (root or None, problems). The event pass runs before composition so that an
    alias bomb is refused without ever being walked.
    """
    from aip.shared.policy.pyyaml import yaml  # not needed for a graph from the node cache

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader when built
    problems: list[PolicyProblem] = []
    depth = 0
    try:
        for event in yaml.parse(text, Loader=loader):
            line = event.start_mark.line + 1 if event.start_mark is not None else 0
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:  # the composer recurses in C: stop before it can crash
                    problems.append(PolicyProblem(line, "", f"nested deeper than {MAX_DEPTH}"))
                    break
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
            if isinstance(event, yaml.AliasEvent):
                problems.append(
                    PolicyProblem(line, "", f"YAML alias *{event.anchor} is not allowed")
                )
            elif isinstance(event, yaml.NodeEvent) and event.anchor is not None:
                problems.append(
                    PolicyProblem(line, "", f"YAML anchor &{event.anchor} is not allowed")
                )
            if isinstance(event, (yaml.ScalarEvent, yaml.CollectionStartEvent)) and (
                event.tag is not None
            ):
                problems.append(
                    PolicyProblem(line, "", f"YAML tag {event.tag} is not allowed; remove it")
                )
    except yaml.YAMLError as exc:
        return None, [_yaml_problem(exc)]
    if problems:
        return None, problems
    try:
        root = yaml.compose(text, Loader=loader)
    except yaml.YAMLError as exc:
        return None, [_yaml_problem(exc)]
    return (None if root is None else _ours(root, yaml)), []


def _ours(node: Any, yaml: Any) -> Node:
    """PyYAML's node as ours (aip.shared.policy.nodes): tag, value and line."""
    line = node.start_mark.line + 1 if node.start_mark is not None else 0
    if isinstance(node, yaml.MappingNode):
        return Mapping(node.tag, [(_ours(k, yaml), _ours(v, yaml)) for k, v in node.value], line)
    if isinstance(node, yaml.SequenceNode):
        return Sequence(node.tag, [_ours(item, yaml) for item in node.value], line)
    return Scalar(node.tag, node.value, line)


def _yaml_problem(exc: Any) -> PolicyProblem:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = mark.line + 1 if mark is not None else 0
    problem = getattr(exc, "problem", None)
    context = getattr(exc, "context", None)
    if problem:
        text = f"{context}, {problem}" if context else str(problem)
    else:
        text = str(exc).splitlines()[0]
    return PolicyProblem(line, "", f"not valid YAML: {text}")


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class NodeReader:
    """Typed access to composed nodes that records a problem instead of raising.

    Every accessor returns None (or an empty result) after recording a problem, so the
    loader goes on and reports all problems of a file in one run.
    """

    def __init__(self) -> None:
        self.problems: list[PolicyProblem] = []
        self.budget = CompileBudget()  # what all patterns of this document may cost together

    def problem(self, node: Node | None, path: str, message: str) -> None:
        self.problems.append(PolicyProblem(node.line if node else 0, path, message))

    def mapping(
        self,
        node: Node,
        path: str,
        known: frozenset[str],
        unsupported: frozenset[str] = frozenset(),
    ) -> dict[str, Node] | None:
        """A mapping's known keys -> value nodes; unknown, unsupported, duplicate keys refused."""
        if not isinstance(node, Mapping):
            self.problem(node, path or "(document)", f"must be a mapping, not {describe(node)}")
            return None
        out: dict[str, Node] = {}
        for key_node, value_node in node.value:
            if key_node.tag == MERGE:
                self.problem(key_node, path, "YAML merge keys (<<) are not allowed")
                continue
            if not isinstance(key_node, Scalar):
                self.problem(key_node, path, f"a key must be a string, not {describe(key_node)}")
                continue
            if key_node.tag != STR:
                self.problem(
                    key_node,
                    path,
                    f"key {key_node.value!r} is read by YAML as {describe(key_node)}; "
                    f'quote it: "{key_node.value}"',
                )
                continue
            key = key_node.value
            where = join(path, key)
            if key in out:
                self.problem(key_node, where, "duplicate key")
                continue
            if key in unsupported:
                self.problem(key_node, where, "not supported by aip-approval; remove it")
                continue
            if key not in known:
                expected = ", ".join(sorted(known))
                self.problem(key_node, where, f"unknown key (expected one of: {expected})")
                continue
            out[key] = value_node
        return out

    def string(self, node: Node, path: str, *, allow_empty: bool = False) -> str | None:
        if not isinstance(node, Scalar) or node.tag != STR:
            self.problem(node, path, self._not_a_string(node))
            return None
        if not allow_empty and not node.value.strip():
            self.problem(node, path, "must not be empty")
            return None
        return str(node.value)

    def boolean(self, node: Node, path: str) -> bool | None:
        # YAML 1.1 also reads yes/no/on/off as booleans; we take only true/false so that a
        # policy means the same under YAML 1.2 readers and to a human.
        if isinstance(node, Scalar) and node.tag == BOOL:
            word = str(node.value).lower()
            if word in ("true", "false"):
                return word == "true"
            self.problem(node, path, f"write true or false, not {node.value!r}")
            return None
        self.problem(node, path, f"must be true or false, not {describe(node)}")
        return None

    def sequence(self, node: Node, path: str) -> Iterator[tuple[str, Node]]:
        """(item path, item node) for each item of a list."""
        if not isinstance(node, Sequence):
            hint = "; write [] for an empty list" if node.tag == NULL else ""
            self.problem(node, path, f"must be a list, not {describe(node)}{hint}")
            return
        for i, item in enumerate(node.value):
            yield f"{path}[{i}]", item

    def string_list(self, node: Node, path: str) -> list[tuple[str, Node]]:
        """(value, node) for each string item; non-strings are recorded as problems."""
        out: list[tuple[str, Node]] = []
        for item_path, item in self.sequence(node, path):
            value = self.string(item, item_path)
            if value is not None:
                out.append((value, item))
        return out

    @staticmethod
    def _not_a_string(node: Node) -> str:
        if isinstance(node, Scalar) and node.tag != NULL:
            # YAML 1.1 read an unquoted word as something else: say how to keep it a string.
            return (
                f"must be a string, but {node.value!r} is read by YAML as {describe(node)}; "
                f'quote it: "{node.value}"'
            )
        return f"must be a string, not {describe(node)}"
