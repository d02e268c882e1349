"""The strict policy loader: every field, every refusal, all problems reported with line and key."""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aip.shared.errors import ConfigError, PolicyError, PolicyProblem
from aip.shared.policy.load import load_policy, load_policy_text
from aip.shared.policy.model import Action, Mode, OnRequestMatch
from tests.shared.enginekit import wrap

HEAD = "apiVersion: aip.io/v1alpha1\nkind: AgentPolicy\nmetadata:\n  name: t\n"


def problems(text: str) -> list[tuple[int, str, str]]:
    with pytest.raises(PolicyError) as info:
        load_policy_text(text, source="p.yaml")
    return [(p.line, p.key_path, p.message) for p in info.value.problems]


def one_problem(text: str) -> tuple[int, str, str]:
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


FULL = """\
apiVersion: aip.io/v1alpha2
kind: AgentPolicy
metadata:
  name: full-policy
  version: "1.2.0"
  owner: sec@example.com
spec:
  mode: Monitor
  allowed_tools: [Read_File, "\uff4c\uff49\uff53\uff54"]
  denied_tools:
    - rm
  strict_args_default: true
  allowed_methods: [Tools/Call, "*"]
  denied_methods: [logging/setLevel]
  protected_paths: [~/.ssh, "$HOME/.aws", /etc/../etc/shadow, rel/dir]
  tool_rules:
    - tool: Write_File
      action: ASK
      strict_args: false
      rate_limit: 5/min
      allow_args:
        path: "^/tmp/.*$"
        Mode: "^[0-7]{3}$"
    - tool: x
      action: block
  dlp:
    patterns:
      - name: aws key
        regex: "AKIA[0-9A-Z]{16}"
    builtin: true
    detect_encoding: true
    filter_stderr: true
    scan_requests: true
    on_request_match: redact
    max_scan_size: 512KB
"""


def test_full_policy_reads_every_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/u")
    path = tmp_path / "p.yaml"
    path.write_text(FULL)
    pol = load_policy(path)
    assert (pol.name, pol.api_version, pol.version, pol.owner) == (
        "full-policy", "aip.io/v1alpha2", "1.2.0", "sec@example.com",
    )  # fmt: skip
    assert pol.path == str(path)
    assert os.path.isabs(pol.path)
    assert pol.sha256 == hashlib.sha256(FULL.encode()).hexdigest()
    assert pol.mode is Mode.MONITOR
    assert pol.allowed_tools == {"read_file", "list"}  # normalized (NFKC, lower)
    assert pol.denied_tools == {"rm"}
    assert pol.strict_args_default is True
    assert pol.allowed_methods == frozenset({"tools/call", "*"})
    assert pol.denied_methods == {"logging/setlevel"}
    assert pol.protected_paths == (
        "/home/u/.ssh", "/home/u/.aws", "/etc/shadow", str(tmp_path / "rel" / "dir"),
    )  # fmt: skip
    first, second = pol.tool_rules
    assert (first.index, first.tool, first.tool_raw, first.action) == (
        0, "write_file", "Write_File", Action.ASK,
    )  # fmt: skip
    assert first.strict_args is False
    assert second.strict_args is None
    assert first.rate_limit is not None
    assert (first.rate_limit.count, first.rate_limit.period_s) == (5, 60.0)
    assert [(a.name, a.pattern) for a in first.allow_args] == [
        ("path", "^/tmp/.*$"), ("Mode", "^[0-7]{3}$"),
    ]  # fmt: skip
    assert first.line == 17
    assert second.line == 24
    assert pol.rules_for("write_file") == (first,)
    dlp = pol.dlp
    assert dlp.enabled
    assert dlp.builtin
    assert dlp.detect_encoding
    assert dlp.filter_stderr
    assert dlp.scan_requests
    assert dlp.on_request_match is OnRequestMatch.REDACT
    assert dlp.max_scan_size == 512 * 1024
    assert [(p.name, p.pattern) for p in dlp.patterns] == [("aws key", "AKIA[0-9A-Z]{16}")]
    assert dlp.patterns[0].regex.search("x AKIAABCDEFGHIJKLMNOP y")


def test_minimal_policy_defaults() -> None:
    pol = load_policy_text(HEAD + "spec: {}\n")
    assert pol.mode is Mode.ENFORCE
    assert pol.allowed_methods is None
    assert pol.path is None
    assert not pol.tool_rules
    assert not pol.allowed_tools
    assert not pol.dlp.enabled
    assert pol.dlp.max_scan_size == 1 << 20


def test_dlp_block_is_enabled_unless_it_says_otherwise() -> None:
    assert load_policy_text(wrap("dlp: {builtin: true}")).dlp.enabled
    assert not load_policy_text(wrap("dlp: {enabled: false}")).dlp.enabled


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (10, 10),
        ("1MB", 1 << 20),
        ("1 MiB", 1 << 20),
        ("512KB", 512 << 10),
        ("2048", 2048),
        ("64b", 64),
    ],
)
def test_max_scan_size_forms(text: object, expected: int) -> None:
    value = f'"{text}"' if isinstance(text, str) else text
    assert load_policy_text(wrap(f"dlp: {{max_scan_size: {value}}}")).dlp.max_scan_size == expected


@pytest.mark.parametrize("value", ['"1XB"', "0", "-1", '"MB"', "true", '"2GB"'])
def test_bad_max_scan_size(value: str) -> None:
    line, key, _ = one_problem(wrap(f"dlp:\n  max_scan_size: {value}"))
    assert (line, key) == (7, "spec.dlp.max_scan_size")


@pytest.mark.parametrize(
    ("text", "count", "period"),
    [
        ("5/second", 5, 1), ("5/sec", 5, 1), ("5/s", 5, 1), ("10/minute", 10, 60),
        ("10/min", 10, 60), ("10/m", 10, 60), ("1/hour", 1, 3600), ("1/hr", 1, 3600),
        ("1/h", 1, 3600), (" 3 / MINUTE ", 3, 60),
    ],
)  # fmt: skip
def test_rate_limit_forms(text: str, count: int, period: float) -> None:
    pol = load_policy_text(
        wrap(f'tool_rules:\n  - {{tool: t, action: allow, rate_limit: "{text}"}}')
    )
    limit = pol.tool_rules[0].rate_limit
    assert limit is not None
    assert (limit.count, limit.period_s) == (count, period)


@pytest.mark.parametrize(
    "text", ['"0/minute"', '"-1/minute"', '"5/day"', '"5"', '"five/minute"', "5", '"1.5/s"']
)
def test_bad_rate_limit(text: str) -> None:
    line, key, _ = one_problem(
        wrap(f"tool_rules:\n  - tool: t\n    action: allow\n    rate_limit: {text}")
    )
    assert (line, key) == (9, "spec.tool_rules[0].rate_limit")


@pytest.mark.parametrize(
    "word", ["no", "yes", "on", "off", "true", "0x10", "1.5", "2024-01-01", "~", "12"]
)
def test_yaml_11_scalars_where_strings_are_expected_say_quote_it(word: str) -> None:
    line, key, message = one_problem(wrap(f"allowed_tools:\n  - read_file\n  - {word}"))
    assert (line, key) == (8, "spec.allowed_tools[1]")
    assert "must be a string" in message
    if word != "~":
        assert f'quote it: "{word}"' in message


def test_tool_named_no_in_a_rule_is_refused() -> None:
    line, key, message = one_problem(wrap("tool_rules:\n  - tool: no\n    action: block"))
    assert (line, key) == (7, "spec.tool_rules[0].tool")
    assert "boolean" in message


def test_quoted_no_is_a_fine_tool_name() -> None:
    assert load_policy_text(wrap("allowed_tools: [\"no\", 'on']")).allowed_tools == {"no", "on"}


@pytest.mark.parametrize("word", ["yes", "on", "No", "1"])
def test_booleans_are_true_or_false_only(word: str) -> None:
    line, key, _ = one_problem(wrap(f"strict_args_default: {word}"))
    assert (line, key) == (6, "spec.strict_args_default")


@pytest.mark.parametrize(
    ("fragment", "line", "key"),
    [
        ("allowed_tools: [a]\nallowed_tools: [b]", 7, "spec.allowed_tools"),
        ("tool_rules:\n  - tool: t\n    tool: u\n    action: allow", 8, "spec.tool_rules[0].tool"),
        (
            "tool_rules:\n  - tool: t\n    action: allow\n    allow_args:\n      p: a\n      p: b",
            11,
            "spec.tool_rules[0].allow_args.p",
        ),
        ("dlp:\n  patterns:\n    - {name: a, regex: b, name: c}", 8, "spec.dlp.patterns[0].name"),
    ],
)
def test_duplicate_keys_at_any_depth(fragment: str, line: int, key: str) -> None:
    assert one_problem(wrap(fragment)) == (line, key, "duplicate key")


def test_duplicate_top_level_key() -> None:
    assert (6, "spec", "duplicate key") in problems(HEAD + "spec: {}\nspec: {}\n")


@pytest.mark.parametrize(
    ("fragment", "key"),
    [
        ("deny_tools: [x]", "spec.deny_tools"),
        ("tool_rule: []", "spec.tool_rule"),
        (
            "tool_rules:\n  - {tool: t, action: allow, allowargs: {}}",
            "spec.tool_rules[0].allowargs",
        ),
        ("dlp: {patern: []}", "spec.dlp.patern"),
    ],
)
def test_unknown_keys(fragment: str, key: str) -> None:
    _, found, message = one_problem(wrap(fragment))
    assert found == key
    assert message.startswith("unknown key")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (
            HEAD.replace("  name: t\n", "  name: t\n  signature: 'ed25519:AA=='\n") + "spec: {}\n",
            "metadata.signature",
        ),
        (wrap("identity: {enabled: true}"), "spec.identity"),
        (wrap("server: {enabled: true}"), "spec.server"),
        (
            wrap("tool_rules:\n  - {tool: t, action: allow, schema_hash: 'sha256:00'}"),
            "spec.tool_rules[0].schema_hash",
        ),
        (
            wrap("dlp: {patterns: [{name: a, regex: b, scope: request}]}"),
            "spec.dlp.patterns[0].scope",
        ),
        (wrap("dlp: {scan_responses: true}"), "spec.dlp.scan_responses"),
        (wrap("dlp: {on_redaction_failure: block}"), "spec.dlp.on_redaction_failure"),
        (wrap("dlp: {log_original_on_failure: false}"), "spec.dlp.log_original_on_failure"),
    ],
)
def test_v1alpha2_features_we_do_not_implement_are_refused(text: str, key: str) -> None:
    _, found, message = one_problem(text)
    assert found == key
    assert "not supported" in message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("kind: AgentPolicy\nmetadata: {name: t}\nspec: {}\n", "apiVersion"),
        (
            "apiVersion: aip.io/v1alpha3\nkind: AgentPolicy\nmetadata: {name: t}\nspec: {}\n",
            "apiVersion",
        ),
        ("apiVersion: aip.io/v1\nkind: AgentPolicy\nmetadata: {name: t}\nspec: {}\n", "apiVersion"),
        ("apiVersion: aip.io/v1alpha1\nkind: Policy\nmetadata: {name: t}\nspec: {}\n", "kind"),
        ("apiVersion: aip.io/v1alpha1\nmetadata: {name: t}\nspec: {}\n", "kind"),
        ("apiVersion: aip.io/v1alpha1\nkind: AgentPolicy\nspec: {}\n", "metadata"),
        (
            "apiVersion: aip.io/v1alpha1\nkind: AgentPolicy\nmetadata: {version: '1'}\nspec: {}\n",
            "metadata.name",
        ),
        (
            "apiVersion: aip.io/v1alpha1\nkind: AgentPolicy\nmetadata: {name: 'a b'}\nspec: {}\n",
            "metadata.name",
        ),
        (
            "apiVersion: aip.io/v1alpha1\nkind: AgentPolicy\nmetadata: {name: ''}\nspec: {}\n",
            "metadata.name",
        ),
        (HEAD, "spec"),
        (HEAD + "spec: []\n", "spec"),
    ],
)
def test_envelope(text: str, key: str) -> None:
    assert one_problem(text)[1] == key


def test_rules_need_tool_and_a_known_action() -> None:
    found = problems(
        wrap("tool_rules:\n  - action: allow\n  - tool: t\n  - tool: u\n    action: deny")
    )
    assert [(k, m.split(":")[0]) for _, k, m in found] == [
        ("spec.tool_rules[0].tool", "required"),
        ("spec.tool_rules[1].action", "required"),
        ("spec.tool_rules[2].action", "must be allow, ask or block, not 'deny'"),
    ]


@pytest.mark.parametrize(
    "pattern", ["^(?!.*\\\\.\\\\.).*$", "(?=x)", "(?<=a)b", "(a)\\\\1", "[", "a{1001}"]
)
def test_regexes_re2_rejects_are_load_errors_naming_the_pattern(pattern: str) -> None:
    line, key, message = one_problem(
        wrap(
            f'tool_rules:\n  - tool: t\n    action: allow\n    allow_args:\n      path: "{pattern}"'
        )
    )
    assert (line, key) == (10, "spec.tool_rules[0].allow_args.path")
    assert message.startswith(f"bad regex {pattern.replace(chr(92) * 2, chr(92))!r}")


def test_look_ahead_message_explains_re2() -> None:
    _, _, message = one_problem(
        wrap("tool_rules:\n  - {tool: t, action: allow, allow_args: {p: '(?!x)'}}")
    )
    assert "look-ahead" in message


def test_overlong_pattern_is_refused() -> None:
    _, _, message = one_problem(
        wrap(f"tool_rules:\n  - {{tool: t, action: allow, allow_args: {{p: '{'a' * 4097}'}}}}")
    )
    assert "limit is 4096" in message


def test_allow_args_values_must_be_strings() -> None:
    _line, key, message = one_problem(
        wrap("tool_rules:\n  - {tool: t, action: allow, allow_args: {port: 8080}}")
    )
    assert key == "spec.tool_rules[0].allow_args.port"
    assert 'quote it: "8080"' in message


def test_dlp_patterns_are_checked() -> None:
    found = problems(
        wrap(
            "dlp:\n  patterns:\n    - {name: a}\n    - {name: b, regex: '(?!x)'}\n"
            "    - {name: a, regex: x}\n    - {name: a, regex: y}"
        )
    )
    assert [k for _, k, _ in found] == [
        "spec.dlp.patterns[0]",
        "spec.dlp.patterns[1].regex",
        "spec.dlp.patterns[3].name",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: &x 1\nb: *x\n", "YAML anchor &x is not allowed"),
        ("a: !!str 1\n", "YAML tag tag:yaml.org,2002:str is not allowed; remove it"),
        ("a: !custom {}\n", "YAML tag !custom is not allowed; remove it"),
    ],
)
def test_anchors_aliases_and_tags_are_refused(text: str, message: str) -> None:
    assert message in [m for _, _, m in problems(text)]


def test_merge_keys_are_refused() -> None:
    text = wrap("tool_rules:\n  - <<: {tool: t}\n    action: allow")
    assert (7, "spec.tool_rules[0]", "YAML merge keys (<<) are not allowed") in problems(text)


def test_billion_laughs_is_refused_quickly() -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    start = time.monotonic()
    with pytest.raises(PolicyError):
        load_policy_text("\n".join(lines) + "\n")
    assert time.monotonic() - start < 2.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the policy file is empty"),
        ("# only a comment\n\n", "the policy file is empty"),
        ("a: b: c\n", "not valid YAML"),
        ("---\na: 1\n---\nb: 2\n", "not valid YAML"),
        ("- 1\n", "(document): must be a mapping, not a list"),
    ],
)
def test_empty_and_broken_documents(text: str, message: str) -> None:
    assert any(message in p.render("x") for p in _problem_objects(text))


def _problem_objects(text: str) -> list[PolicyProblem]:
    with pytest.raises(PolicyError) as info:
        load_policy_text(text)
    return list(info.value.problems)


def test_non_utf8_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes(HEAD.encode() + b"spec:\n  allowed_tools: [caf\xe9]\n")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert str(info.value) == f"{path}:6: the policy file must be UTF-8"


def test_utf8_bom_is_accepted() -> None:
    assert load_policy_text("\ufeff" + HEAD + "spec: {}\n").name == "t"


def test_file_over_one_mebibyte_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(HEAD + "spec: {}\n" + "#" * (1 << 20) + "\n")
    with pytest.raises(PolicyError, match="larger than 1048576 bytes"):
        load_policy(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="policy file not found"):
        load_policy(tmp_path / "nope.yaml")


def test_all_problems_are_collected_and_rendered_with_file_line_and_key() -> None:
    text = (
        "apiVersion: aip.io/v9\nkind: AgentPolicy\nmetadata: {name: t}\nspec:\n"
        "  allowed_tools: [no]\n  tool_rules:\n    - {tool: a, action: allow, rate_limit: x}\n"
        "  bogus: 1\n"
    )
    with pytest.raises(PolicyError) as info:
        load_policy_text(text, source="/p/policy.yaml")
    err = info.value
    assert isinstance(err, ConfigError)
    assert [(p.line, p.key_path) for p in err.problems] == [
        (1, "apiVersion"),
        (5, "spec.allowed_tools[0]"),
        (7, "spec.tool_rules[0].rate_limit"),
        (8, "spec.bogus"),
    ]
    lines = str(err).splitlines()
    assert lines[0] == "4 problems in policy /p/policy.yaml:"
    assert lines[1].startswith("/p/policy.yaml:1: apiVersion: ")
    assert lines[4].startswith("/p/policy.yaml:8: spec.bogus: unknown key")


def test_protected_path_globs_are_refused() -> None:
    _, key, message = one_problem(wrap('protected_paths: ["**/secrets/**"]'))
    assert key == "spec.protected_paths"
    assert "globs are not supported" in message


def test_lists_must_be_lists() -> None:
    assert one_problem(wrap("allowed_tools: read_file"))[1:] == (
        "spec.allowed_tools", "must be a list, not a string",
    )  # fmt: skip
    assert "write [] for an empty list" in one_problem(wrap("allowed_tools:"))[2]


@pytest.mark.parametrize("opening", ["[", "{a: "])
def test_deep_nesting_is_refused_before_the_composer_recurses(opening: str) -> None:
    closing = "]" if opening == "[" else "}"
    n = 200_000  # deep enough to crash libyaml's recursive composer
    start = time.monotonic()
    line, _, message = one_problem("a: " + opening * n + closing * n)
    # Refused on line 1. Newer PyYAML (6.0.4+) refuses deep flow nesting itself, in its own
    # words, before our 32-level check sees the nodes: either refusal is the product's.
    assert line == 1
    assert "nest" in message
    assert time.monotonic() - start < 2.0


def test_thousands_of_problems_are_kept_but_the_message_stays_readable() -> None:
    text = "".join(f"k{i}: &a{i} 1\n" for i in range(5000))
    with pytest.raises(PolicyError) as info:
        load_policy_text(text)
    assert len(info.value.problems) == 5000
    lines = str(info.value).splitlines()
    assert lines[0] == "5000 problems in policy <string>:"
    assert lines[-1] == "... and 4900 more"
    assert len(lines) == 102


_FRAGMENTS = st.sampled_from(
    [
        "apiVersion: aip.io/v1alpha1\n", "kind: AgentPolicy\n", "metadata:\n", "  name: t\n",
        "spec:\n", "  tool_rules:\n", "    - tool: t\n", "      action: ask\n",
        "      allow_args:\n", "        p: '^a$'\n", "        p: '(?!'\n",
        "  allowed_tools: [a, no, 1]\n", "  dlp:\n", "    patterns: [{name: a, regex: b}]\n",
        "    max_scan_size: 1MB\n", "&a ", "*a\n", "!!str ", "<<: {}\n", "- ", "[", "]", "{",
        "}", ": ", "\t", "'", '"', "\\", "\x00", "\ufeff", "#", "  rate_limit: 1/s\n",
        "  mode: monitor\n", "---\n", "...\n", "%YAML 1.1\n", "? ",
    ]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.lists(_FRAGMENTS, max_size=25).map("".join), st.text(max_size=200)))
def test_load_policy_text_only_ever_raises_policy_error(text: str) -> None:
    try:
        pol = load_policy_text(text)
    except PolicyError as exc:
        problems = exc.problems
    else:
        assert pol.name
        return
    assert problems
    assert all(isinstance(p.line, int) and p.message for p in problems)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_load_policy_bytes_only_ever_raises_policy_error(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "p.yaml"
    path.write_bytes(data)
    with contextlib.suppress(PolicyError):
        load_policy(path)


def test_non_string_keys_say_quote_it() -> None:
    text = wrap("tool_rules:\n  - {tool: t, action: allow, allow_args: {no: x, 1: y}}")
    assert [(k, m) for _, k, m in problems(text)] == [
        (
            "spec.tool_rules[0].allow_args",
            "key 'no' is read by YAML as a boolean; quote it: \"no\"",
        ),
        ("spec.tool_rules[0].allow_args", "key '1' is read by YAML as a number; quote it: \"1\""),
    ]
