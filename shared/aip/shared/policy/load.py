"""Strict loader for ``AgentPolicy`` YAML (DESIGN §4.1): text in, immutable ``Policy`` out.

Validation runs over the composed node graph (``aip.shared.policy.yaml_nodes``) and collects every
problem with its line and key before raising one ``PolicyError``; a policy is either fully
valid or not loaded at all. Names are stored normalized (§4.2), regexes compiled with RE2.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from aip.shared import hashes
from aip.shared.errors import PolicyError
from aip.shared.policy import node_cache
from aip.shared.policy.file import PolicyPin, read_policy_file_owned
from aip.shared.policy.load_dlp import read_dlp
from aip.shared.policy.load_rules import read_rules
from aip.shared.policy.model import DlpConfig, Mode, Policy
from aip.shared.policy.names import normalize
from aip.shared.policy.nodes import Node
from aip.shared.policy.yaml_nodes import NodeReader, compose

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

API_VERSIONS: Final = ("aip.io/v1alpha1", "aip.io/v1alpha2")
KIND: Final = "AgentPolicy"

_TOP: Final = frozenset({"apiVersion", "kind", "metadata", "spec"})
_METADATA: Final = frozenset({"name", "version", "owner"})
_METADATA_UNSUPPORTED: Final = frozenset({"signature"})
_SPEC: Final = frozenset(
    {
        "mode",
        "allowed_tools",
        "denied_tools",
        "tool_rules",
        "strict_args_default",
        "allowed_methods",
        "denied_methods",
        "protected_paths",
        "dlp",
    }
)
# v1alpha2/v1alpha3 features we do not implement: refusing them beats silently ignoring them.
_SPEC_UNSUPPORTED: Final = frozenset({"identity", "server", "registry", "aat"})

_NAME_RE: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,251}[A-Za-z0-9])?")
_GLOB_CHARS: Final = frozenset("*?[")
_VARIABLE: Final = re.compile(r"\$(?:\{[^}]*\}?|[A-Za-z_][A-Za-z0-9_]*)")


def load_policy(
    path: str | os.PathLike[str],
    *,
    check_safety: bool = True,
    pin: PolicyPin | None = None,
    cache: bool = False,
) -> Policy:
    """Load and validate the policy file at ``path``; raise PolicyError listing every problem.
    With ``pin`` the file is read through the folder kept open at start (safety checked).
    ``cache`` (the proxy's starts and reloads): the graph an earlier load composed from the
    same bytes stands in for the YAML parse when aip.shared.policy.node_cache allows it; the
    validation below runs either way."""
    absolute = os.path.abspath(os.fspath(path))
    if pin is not None:
        data, owner = pin.read_owned()
    else:
        data, owner = read_policy_file_owned(absolute, check_safety=check_safety)
    return _load_bytes(data, absolute, absolute, cache=cache and node_cache.usable(owner))


def load_policy_text(text: str, source: str = "<string>") -> Policy:
    """Validate policy YAML given as text (tests, ``aipctl policy check -``)."""
    return _load_bytes(text.encode("utf-8", "surrogatepass"), source, None)


def _load_bytes(data: bytes, source: str, path: str | None, *, cache: bool = False) -> Policy:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise PolicyError.single(source, "the policy file must be UTF-8", line) from None
    text = text.removeprefix("\ufeff")
    sha256 = hashes.sha256(data).hexdigest()
    root = node_cache.load(sha256) if cache else None
    if root is None:
        root, problems = compose(text)
        if problems:
            raise PolicyError(source, problems)
        if root is None:
            raise PolicyError.single(source, "the policy file is empty")
        if cache:
            node_cache.store(sha256, root)
    base_dir = os.path.dirname(path) if path else os.getcwd()
    builder = _Builder(base_dir)
    policy = builder.build(root, path, sha256)
    if builder.problems or policy is None:
        raise PolicyError(source, builder.problems)
    return policy


class _Builder(NodeReader):
    def __init__(self, base_dir: str) -> None:
        super().__init__()
        self._base_dir = base_dir

    def build(self, root: Node, path: str | None, sha256: str) -> Policy | None:
        top = self.mapping(root, "", _TOP)
        if top is None:
            return None
        api_version = self._api_version(top.get("apiVersion"), root)
        kind_node = top.get("kind")
        if kind_node is None:
            self.problem(root, "kind", f"required: kind: {KIND}")
        elif (kind := self.string(kind_node, "kind")) is not None and kind != KIND:
            self.problem(kind_node, "kind", f"must be {KIND}, not {kind!r}")
        name, version, owner = self._metadata(top.get("metadata"), root)
        spec_node = top.get("spec")
        if spec_node is None:
            self.problem(root, "spec", "required (an empty spec: {} blocks every tool)")
            return None
        spec = self.mapping(spec_node, "spec", _SPEC, _SPEC_UNSUPPORTED)
        if spec is None:
            return None
        # Every part is read (and every problem recorded) before deciding whether to build.
        mode = self._mode(spec.get("mode"))
        allowed_tools = self._names(spec.get("allowed_tools"), "spec.allowed_tools")
        denied_tools = self._names(spec.get("denied_tools"), "spec.denied_tools")
        tool_rules = read_rules(self, spec.get("tool_rules"), "spec.tool_rules")
        strict_default = self._flag(spec.get("strict_args_default"), "spec.strict_args_default")
        allowed_methods = (
            self._names(spec["allowed_methods"], "spec.allowed_methods")
            if "allowed_methods" in spec
            else None
        )
        denied_methods = self._names(spec.get("denied_methods"), "spec.denied_methods")
        protected = self._protected(spec.get("protected_paths"))
        dlp = read_dlp(self, spec["dlp"], "spec.dlp") if "dlp" in spec else DlpConfig()
        if self.problems or api_version is None or name is None:
            return None
        return Policy(
            name=name,
            api_version=api_version,
            path=path,
            sha256=sha256,
            mode=mode,
            allowed_tools=allowed_tools,
            denied_tools=denied_tools,
            tool_rules=tool_rules,
            strict_args_default=strict_default,
            allowed_methods=allowed_methods,
            denied_methods=denied_methods,
            protected_paths=protected,
            dlp=dlp,
            version=version,
            owner=owner,
        )

    def _api_version(self, node: Node | None, root: Node) -> str | None:
        if node is None:
            self.problem(root, "apiVersion", f"required: one of {', '.join(API_VERSIONS)}")
            return None
        value = self.string(node, "apiVersion")
        if value is not None and value not in API_VERSIONS:
            self.problem(
                node,
                "apiVersion",
                f"{value!r} is not supported; use one of {', '.join(API_VERSIONS)}",
            )
            return None
        return value

    def _metadata(self, node: Node | None, root: Node) -> tuple[str | None, ...]:
        if node is None:
            self.problem(root, "metadata", "required, with at least metadata.name")
            return None, None, None
        meta = self.mapping(node, "metadata", _METADATA, _METADATA_UNSUPPORTED)
        if meta is None:
            return None, None, None
        name = None
        if "name" not in meta:
            self.problem(node, "metadata.name", "required")
        elif (
            name := self.string(meta["name"], "metadata.name")
        ) is not None and not _NAME_RE.fullmatch(name):
            self.problem(
                meta["name"], "metadata.name",
                "use letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
            )  # fmt: skip
            name = None
        version = self.string(meta["version"], "metadata.version") if "version" in meta else None
        owner = self.string(meta["owner"], "metadata.owner") if "owner" in meta else None
        return name, version, owner

    def _mode(self, node: Node | None) -> Mode:
        if node is None:
            return Mode.ENFORCE
        value = self.string(node, "spec.mode")
        try:
            return Mode(value.strip().lower()) if value is not None else Mode.ENFORCE
        except ValueError:
            self.problem(node, "spec.mode", f"must be enforce or monitor, not {value!r}")
            return Mode.ENFORCE

    def _flag(self, node: Node | None, path: str) -> bool:
        return bool(self.boolean(node, path)) if node is not None else False

    def _names(self, node: Node | None, path: str) -> frozenset[str]:
        if node is None:
            return frozenset()
        out = set()
        for item_path, item in self.sequence(node, path):
            value = self.string(item, item_path)
            if value is None:
                continue
            name = normalize(value)
            if not name:
                self.problem(item, item_path, f"{value!r} is empty once normalized")
            elif path.endswith("_methods") and _GLOB_CHARS & set(name) and name != "*":
                # `denied_methods: ["resources/*"]` would load, match no method and block
                # nothing while `policy check` said OK.
                self.problem(
                    item,
                    item_path,
                    f"{value!r}: method names are exact, globs are not supported; list each "
                    "method (e.g. resources/list, resources/read)",
                )
                continue
            out.add(name)
        return frozenset(out)

    def _protected(self, node: Node | None) -> tuple[str, ...]:
        if node is None:
            return ()
        out: list[str] = []
        for value, item in self.string_list(node, "spec.protected_paths"):
            if _GLOB_CHARS & set(value):
                self.problem(
                    item,
                    "spec.protected_paths",
                    f"{value!r}: globs are not supported; name a file or directory",
                )
                continue
            variable = _VARIABLE.search(value.replace("${HOME}", "").replace("$HOME", ""))
            if variable is not None:
                # Only ~ and $HOME are expanded: a proxy's environment is the MCP client's
                # stripped one, so $XDG_CONFIG_HOME would protect a folder literally named so.
                self.problem(
                    item,
                    "spec.protected_paths",
                    f"{value!r}: {variable.group(0)} is not expanded (only ~ and $HOME are); "
                    "write the path out",
                )
                continue
            expanded = _expand_home(value.strip())
            # Relative entries are taken relative to the policy file's folder: the only place
            # that is the same for every agent host that starts the proxy.
            absolute = os.path.normpath(os.path.join(self._base_dir, expanded))
            if absolute not in out:
                out.append(absolute)
        return tuple(out)


def _expand_home(value: str) -> str:
    home = os.environ.get("HOME") or str(Path.home())
    for prefix in ("$HOME", "${HOME}"):
        if value == prefix or value.startswith(prefix + "/"):
            return home + value[len(prefix) :]
    return os.path.expanduser(value)
