"""Payload kinds inside messages: images, audio, resources and blobs; look-alike spellings."""

from __future__ import annotations

import base64
import copy

import mcp.types
import orjson
import pytest

from aip.shared.dlp.redactor import Redactor
from tests.shared.dlpkit import AWS, AWS_MARK, PNG, assert_valid_call_result, cfg, result, text


def test_images_and_resources_survive_untouched(red: Redactor) -> None:
    image = {"type": "image", "data": PNG, "mimeType": "image/png"}
    audio = {"type": "audio", "data": PNG, "mimeType": "audio/wav"}
    resource = {
        "type": "resource",
        "resource": {"uri": "file:///a.txt", "mimeType": "text/plain", "text": f"k={AWS}"},
    }
    link = {"type": "resource_link", "uri": "file:///b", "name": "b", "mimeType": "text/plain"}
    msg = result(text(f"key {AWS}"), image, audio, resource, link, isError=False)
    before = copy.deepcopy(msg)
    out = red.redact_line(orjson.dumps(msg))
    assert out.line is not None
    decoded = assert_valid_call_result(out.line)
    content = decoded["result"]["content"]
    assert content[0] == text(f"key {AWS_MARK}")
    assert content[1] == image
    assert content[2] == audio
    assert content[3]["resource"] == {**resource["resource"], "text": f"k={AWS_MARK}"}  # type: ignore[dict-item]
    assert content[4] == link
    assert decoded["result"]["isError"] is False
    assert out.counts == {"aws-access-key": 2}
    assert msg == before  # the input is not mutated


def test_text_blob_is_decoded_redacted_and_reencoded(red: Redactor) -> None:
    blob = base64.b64encode(f"id: {AWS}\n".encode()).decode()
    msg = {
        "jsonrpc": "2.0",
        "id": 1,
        "result": {"contents": [{"uri": "file:///k", "mimeType": "text/plain", "blob": blob}]},
    }
    out = red.redact_line(orjson.dumps(msg))
    assert out.line is not None
    new_blob = orjson.loads(out.line)["result"]["contents"][0]["blob"]
    assert base64.b64decode(new_blob, validate=True) == f"id: {AWS_MARK}\n".encode()
    mcp.types.ReadResourceResult.model_validate(orjson.loads(out.line)["result"])


def test_binary_blob_with_a_secret_becomes_the_markers(red: Redactor) -> None:
    blob = base64.b64encode(b"\x00\xff\xfe" + AWS.encode() + b"\x00\x80").decode()
    new, counts = red.redact_value({"uri": "x", "mimeType": "application/zip", "blob": blob})
    assert base64.b64decode(new["blob"], validate=True) == AWS_MARK.encode()
    assert counts == {"aws-access-key": 1}


def test_media_is_scanned_with_builtins_only_and_stays_valid_base64() -> None:
    generic = Redactor.from_config(cfg(("generic", r"[A-Za-z0-9]{12,}"), builtin=True))
    image = {"type": "image", "data": PNG, "mimeType": "image/png"}
    new, counts = generic.redact_message(result(image))
    assert new["result"]["content"][0] is image  # policy patterns never touch media data
    disguised = {"type": "image", "data": "QUJ+" + AWS + "+QUJ", "mimeType": "image/png"}
    new, counts = generic.redact_message(result(disguised))
    data = new["result"]["content"][0]["data"]
    assert base64.b64decode(data, validate=True) == AWS_MARK.encode()
    assert counts == {"aws-access-key": 1}


def test_media_data_that_is_not_base64_is_a_string() -> None:
    red = Redactor.from_config(cfg(("word", r"secret-[a-z]+"), builtin=False))
    item = {"type": "image", "data": "not base64: secret-value", "mimeType": "image/png"}
    new, _ = red.redact_message(result(item))
    assert new["result"]["content"][0]["data"] == "not base64: [REDACTED:word]"


def test_odd_shapes_are_walked_without_errors(red: Redactor) -> None:
    odd = {
        "type": ["image"],
        "data": {"d": AWS},
        "blob": 5,
        "mimeType": {"x": 1},
        "resource": [AWS],
        "text": None,
        "n": [1.5, None, True, -(10**15)],
    }
    new, counts = red.redact_value([odd, odd, {"type": "image", "data": None}, "", []])
    assert counts == {"aws-access-key": 4}
    assert new[0]["data"] == {"d": AWS_MARK}
    assert new[0]["resource"] == [AWS_MARK]
    assert new[0]["n"] == [1.5, None, True, -(10**15)]


@pytest.mark.parametrize(
    "spelled",
    [
        "AKIA\u200bIOSFODNN7EXAMPLE",  # zero-width space
        "AKIA\u2060IOSF\u200dODNN7EXAMPLE",  # word joiner, zero-width joiner
        "\uff21\uff2b\uff29\uff21IOSFODNN7EXAMPLE",  # fullwidth letters
        "AKIA\u202eIOSFODNN7EXAMPLE",  # bidi override
    ],
)
def test_look_alike_spellings_are_caught(red: Redactor, spelled: str) -> None:
    raw = orjson.dumps(result(text(f"key {spelled} end")))
    assert red.might_contain_secret(raw)
    out = red.redact_line(raw)
    assert out.line is not None
    assert orjson.loads(out.line)["result"]["content"][0]["text"] == f"key {AWS_MARK} end"
    assert red.redact_line(out.line).counts == {}


def test_text_with_look_alike_characters_but_no_secret_is_kept(red: Redactor) -> None:
    msg = result(text("日本語\uff0cテキスト\u200b\uff08全角\uff09"))
    out = red.redact_line(orjson.dumps(msg))
    assert not out.counts
    assert orjson.loads(out.line or b"") == msg


def test_svg_image_is_text_and_is_redacted_inside(red: Redactor) -> None:
    svg = f'<svg xmlns="http://www.w3.org/2000/svg"><text>{AWS}</text></svg>'.encode()
    item = {"type": "image", "data": base64.b64encode(svg).decode(), "mimeType": "image/svg+xml"}
    raw = orjson.dumps(result(item))
    out = red.redact_line(raw)
    assert out.line is not None
    data = orjson.loads(out.line)["result"]["content"][0]["data"]
    assert base64.b64decode(data, validate=True) == svg.replace(AWS.encode(), AWS_MARK.encode())
