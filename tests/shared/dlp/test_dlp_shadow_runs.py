"""An encoded secret next to an invisible character (detect_encoding): the raw-line pre-check's
second look, without the look-alike trigger, decodes the candidate runs itself. It searched the
plain rules only, so a base64 AWS key followed by U+200B reached the client unredacted
(found by tests/shared/dlp/test_dlp_properties.py::test_prefilter_never_misses)."""

from __future__ import annotations

import base64
import json

import orjson
import pytest

from aip.shared.dlp.redactor import Redactor
from tests.shared.dlpkit import AWS, AWS_MARK, cfg, result, text

ENCODED = {
    "base64": base64.b64encode(AWS.encode()).decode(),
    "hex": AWS.encode().hex(),
}
INVISIBLE = ["\u200b", "\ufe0f", "\u2060", "\u00ad"]


@pytest.mark.parametrize("invisible", INVISIBLE)
@pytest.mark.parametrize("encoding", sorted(ENCODED))
@pytest.mark.parametrize("before", [False, True])
def test_encoded_secret_beside_an_invisible_character_is_redacted(
    invisible: str, encoding: str, before: bool
) -> None:
    red = Redactor.from_config(cfg(detect_encoding=True))
    value = invisible + ENCODED[encoding] if before else ENCODED[encoding] + invisible
    msg = result(text(value))
    _, counts = red.redact_message(msg)
    assert counts == {"aws-access-key": 1}
    for raw in (
        orjson.dumps(msg),
        json.dumps(msg).encode(),  # \uXXXX escapes
        json.dumps(msg, ensure_ascii=False, indent=1).encode(),
    ):
        assert red.might_contain_secret(raw), raw
        out = red.redact_line(raw)
        assert out.counts == counts
        assert out.line is not None
        assert AWS_MARK.encode() in out.line
        assert ENCODED[encoding].encode() not in out.line


def test_clean_text_beside_an_invisible_character_stays_clean() -> None:
    """The second look still says no for text whose runs decode to nothing secret."""
    red = Redactor.from_config(cfg(detect_encoding=True))
    raw = orjson.dumps(result(text("\u200b" + base64.b64encode(b"hello there, world").decode())))
    assert not red.might_contain_secret(raw)
    assert red.redact_line(raw).line == raw
