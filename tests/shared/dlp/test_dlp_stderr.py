"""StderrFilter: line-buffered redaction of a child's stderr, whatever the write boundaries."""

from __future__ import annotations

import pytest

from aip.shared.dlp.redactor import Redactor
from aip.shared.dlp.stderr import StderrFilter

AWS = b"AKIA" + b"IOSFODNN7EXAMPLE"
MARK = b"[REDACTED:aws-access-key]"


def run(chunks: list[bytes], **kw: int) -> tuple[bytes, StderrFilter]:
    f = StderrFilter(Redactor.builtin_only(), **kw)
    out = b"".join(f.feed(c) for c in chunks) + f.close()
    return out, f


def test_secret_split_across_two_writes() -> None:
    out, f = run([b"starting with key AKIAIOSF", b"ODNN7EXAMPLE\nready\n"])
    assert out == b"starting with key " + MARK + b"\nready\n"
    assert f.counts == {"aws-access-key": 1}


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_any_chunking_gives_the_same_output(size: int) -> None:
    data = b"a " + AWS + b" b\nclean line\n\xff\xfe binary " + AWS + b"\nlast " + AWS
    chunks = [data[i : i + size] for i in range(0, len(data), size)]
    out, _ = run(chunks)
    assert out == b"a " + MARK + b" b\nclean line\n\xff\xfe binary " + MARK + b"\nlast " + MARK


def test_nothing_is_held_back_after_a_newline() -> None:
    f = StderrFilter(Redactor.builtin_only())
    assert f.feed(b"one\ntwo\n") == b"one\ntwo\n"
    assert f.feed(b"partial") == b""
    assert f.close() == b"partial"
    assert f.close() == b""


def test_long_line_is_flushed_at_whitespace_before_the_cap() -> None:
    line = b"x" * 900 + b" " + AWS + b" " + b"y" * 300
    out, _ = run([line[:600], line[600:]], max_line_bytes=1000)
    assert AWS not in out
    assert out == b"x" * 900 + b" " + MARK + b" " + b"y" * 300


def test_long_line_without_whitespace_is_cut_at_the_cap() -> None:
    f = StderrFilter(Redactor.builtin_only(), max_line_bytes=5000)
    out = f.feed(b"z" * 12000)
    assert out == b"z" * 10000  # two parts of 5000 flushed, the rest held
    assert f.close() == b"z" * 2000


def test_private_key_block_lines_are_dropped() -> None:
    key = (
        b"dumping key\n-----BEGIN RSA PRIVATE KEY-----\n"
        + b"MIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgwMbRvI0MBZhpF\n" * 5
        + b"-----END RSA PRIVATE KEY-----\ndone\n"
    )
    out, f = run([key[i : i + 50] for i in range(0, len(key), 50)])
    assert out == b"dumping key\n[REDACTED:private-key]\ndone\n"
    assert f.counts == {"private-key": 1}


def test_policy_patterns_apply_to_stderr() -> None:
    from aip.shared.policy.model import DlpConfig, DlpPattern
    from aip.shared.policy.regexes import compile_pattern

    cfg = DlpConfig(
        enabled=True, patterns=(DlpPattern("tok", "tok-[0-9]+", compile_pattern("tok-[0-9]+")),)
    )
    f = StderrFilter(Redactor.from_config(cfg))
    assert f.feed(b"tok-12") + f.feed(b"34 ok\n") == b"[REDACTED:tok] ok\n"
