"""Redaction over decoded JSON: every string leaf and object key, media data and resource blobs.

The input is never mutated; unchanged subtrees are shared with the output (treat both as
immutable). The JSON-RPC envelope (``jsonrpc``, ``id``, ``method`` of the top-level object) is
never touched, so the output stays valid JSON-RPC with the same id and method.
"""

from __future__ import annotations

import binascii
from collections import Counter

import orjson

from aip.shared.dlp.scan import MARKER_PREFIX, MAX_PASSES, Scanner

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

ENVELOPE_KEYS: Final = frozenset({"jsonrpc", "id", "method"})
MEDIA_ITEM_TYPES: Final = frozenset({"image", "audio"})
MEDIA_MIME_PREFIXES: Final = ("image/", "audio/", "video/")
# A card number or other long digit string sent as a JSON number is scanned as its digits.
LARGE_INT: Final = 10**12
_TEXT_MIME_WORDS: Final = ("json", "xml", "yaml", "javascript", "ecmascript", "toml", "csv")
_TEXT_MIMES: Final = frozenset(
    {"application/x-sh", "application/sql", "application/graphql", "application/x-httpd-php"}
)


def is_text_mime(mime: str) -> bool:
    base = mime.split(";", 1)[0].strip().lower()
    if base.startswith("text/") or base in _TEXT_MIMES or base.endswith(("+xml", "+json")):
        return True  # image/svg+xml is text too
    return base.startswith("application/") and any(w in base for w in _TEXT_MIME_WORDS)


def _b64decode(data: str) -> bytes | None:
    import base64  # media and blobs only: not on a proxy's start-up path (~0.7 ms with struct)

    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None


def _b64encode(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


class Walker:
    """Applies a ``Scanner`` to decoded JSON values, counting redactions per rule name.

    ``media`` is the scanner for base64 image/audio/video data: the built-in rules only, which
    do not fire on random base64; free-form policy patterns would (``[A-Za-z0-9]{32}``) and turn
    a picture into garbage. None: media data is left alone.
    """

    def __init__(self, scanner: Scanner, media: Scanner | None) -> None:
        self._scanner = scanner
        self._media = media

    def clean(self, v: Any, *, top: bool) -> bool:
        """One RE2 pass over every string the walk would scan, joined: True means the walk
        would change nothing (saves a regex call per leaf on results with many strings).

        The pieces are gathered as ``str`` and encoded once: UTF-8 (surrogatepass too) encodes
        code point by code point, so these are the bytes of the encoded pieces joined."""
        if not top:
            # The value's JSON text, when no string in it needs an escape, answers in one pass
            # without gathering (PreCheck.maybe_json); a "maybe" there (structure triggers: a
            # list of strings) is looked at again the finer way below.
            try:
                raw = orjson.dumps(v)
            except TypeError:  # orjson.JSONEncodeError: not JSON (surrogates, huge ints, keys)
                raw = b"\\"
            if b"\\" not in raw and not self._scanner.maybe_json(raw):
                return True
        pieces: list[str] = []
        if not self._gather(v, pieces, top=top):
            return False
        joined = "\n".join(pieces).encode("utf-8", "surrogatepass")
        return not self._scanner.maybe_decoded(joined)

    def _gather(self, v: Any, out: list[str], *, top: bool = False) -> bool:
        """Collect what the walk scans (strings, keys, long ints, joined text runs); False when
        the walk must run anyway (a blob to decode). The common leaves (strings, flat values)
        are handled in the loops, without a call each."""
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, dict):
            if isinstance(v.get("blob"), str):
                return False  # decoded by the walk: not visible here
            if isinstance(v.get("data"), str) and is_text_mime(str(v.get("mimeType") or "")):
                return False  # likewise (an SVG image)
            for key, x in v.items():
                if top and key in ENVELOPE_KEYS:
                    continue
                if isinstance(key, str):
                    out.append(key)
                if isinstance(x, str):
                    out.append(x)
                elif isinstance(x, dict | list):
                    if not self._gather(x, out):
                        return False
                elif type(x) is int and abs(x) >= LARGE_INT:
                    out.append(str(x))
        elif isinstance(v, list):
            if top:  # a batch
                return all(self._gather(x, out, top=True) for x in v)
            run: list[str] = []
            for x in v:
                if isinstance(x, str):  # the common case, inlined: rows of strings
                    out.append(x)
                    run.append(x)
                    continue
                if not self._gather(x, out):
                    return False
                kind = _text_kind(x)
                if kind is not None:
                    run.append(_text_of(x, kind))
                    continue
                _add_run(run, out)
                run = []
            _add_run(run, out)
        elif type(v) is int and abs(v) >= LARGE_INT:
            out.append(str(v))
        return True

    def message(self, obj: Any, counts: Counter[str]) -> Any:
        if isinstance(obj, dict):
            return self._dict(obj, counts, top=True)
        if isinstance(obj, list):  # a JSON-RPC batch: each element is a message
            new = [self.message(item, counts) for item in obj]
            return obj if all(a is b for a, b in zip(new, obj, strict=True)) else new
        return self.value(obj, counts)

    def value(self, v: Any, counts: Counter[str]) -> Any:
        if isinstance(v, str):
            return self.text(v, counts)
        if isinstance(v, dict):
            return self._dict(v, counts, top=False)
        if isinstance(v, list):
            return self._list(v, counts)
        if type(v) is int and abs(v) >= LARGE_INT:
            red = self.text(str(v), counts)
            return v if red == str(v) else red
        return v

    def text(self, s: str, counts: Counter[str]) -> str:
        red, c = self._scanner.redact_views(s.encode("utf-8", "surrogatepass"))
        if not c:
            return s
        counts.update(c)
        return red.decode("utf-8", "surrogatepass")

    def _dict(self, d: dict[Any, Any], counts: Counter[str], *, top: bool) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        changed = False
        new_v: Any  # a value or a redacted blob (str): typed by its first assignment otherwise
        kind = d.get("type")
        media = (
            isinstance(kind, str) and kind in MEDIA_ITEM_TYPES and isinstance(d.get("data"), str)
        )
        blob = isinstance(d.get("blob"), str)
        for key, v in d.items():
            if top and key in ENVELOPE_KEYS:
                out[key] = v
                continue
            new_key = self.text(key, counts) if isinstance(key, str) and not top else key
            if (media and key == "data") or (blob and key == "blob"):
                new_v = self._blob(v, str(d.get("mimeType") or ""), counts, media=media)
            else:
                new_v = self.value(v, counts)
            if new_key is not key or new_v is not v:
                changed = True
            while new_key in out:  # two keys redacted alike: keep both values
                new_key = f"{new_key}'"
            out[new_key] = new_v
        return out if changed else d

    def _media_data(self, data: str, counts: Counter[str]) -> str:
        if not data.isascii() or _b64decode(data) is None:
            return self.text(data, counts)  # not base64: an ordinary string
        if self._media is None:
            return data
        _, c = self._media.redact(data.encode())
        if not c:
            return data
        counts.update(c)
        # Splicing a marker into base64 would make it invalid; the media is lost either way,
        # so the whole field becomes the markers, base64-encoded.
        return _b64encode(_markers(c))

    def _blob(self, blob: str, mime: str, counts: Counter[str], *, media: bool = False) -> str:
        """Base64 data: text types decoded, redacted, re-encoded; media by ``_media_data``."""
        if not is_text_mime(mime) and (media or mime.lower().startswith(MEDIA_MIME_PREFIXES)):
            return self._media_data(blob, counts)
        decoded = _b64decode(blob) if blob.isascii() else None
        if decoded is None:
            return self.text(blob, counts)
        red, c = self._scanner.redact(decoded)
        if not c:
            return blob
        counts.update(c)
        if not is_text_mime(mime):
            try:
                decoded.decode("utf-8")
            except UnicodeDecodeError:
                # Binary content with a secret inside: a patched binary is still a leak
                # waiting to happen and no longer the file; send only the markers.
                red = _markers(c)
        return _b64encode(red)

    def _list(self, items: list[Any], counts: Counter[str]) -> list[Any]:
        new = [self.value(x, counts) for x in items]
        new = self._split_pass(new, counts)
        return items if all(a is b for a, b in zip(new, items, strict=True)) else new

    def _split_pass(self, items: list[Any], counts: Counter[str]) -> list[Any]:
        """Catch a secret split across consecutive text items (joined with "" and "\n").

        A text item is a string, or an object with a string ``text`` or ``resource.text``;
        any other item ends the run (the raw prefilter looks for exactly these neighbours).
        """
        runs: list[list[tuple[int, str]]] = [[]]
        for i, item in enumerate(items):
            kind = _text_kind(item)
            if kind is None:
                runs.append([])
            else:
                runs[-1].append((i, kind))
        out = items
        for run in runs:
            if len(run) < 2:
                continue
            texts = [_text_of(items[i], kind) for i, kind in run]
            new = self._split_run(texts, counts)
            if new is None:
                continue
            if out is items:
                out = list(items)
            for (i, kind), old, text in zip(run, texts, new, strict=True):
                if text != old:
                    out[i] = _with_text(items[i], kind, text)
        return out

    def _split_run(self, texts: list[str], counts: Counter[str]) -> list[str] | None:
        pieces = [t.encode("utf-8", "surrogatepass") for t in texts]
        changed = False
        for _ in range(MAX_PASSES):
            before = pieces
            newline_cut = False
            for sep in (b"", b"\n"):
                res = self._scanner.redact_pieces(pieces, sep)
                if res is not None:
                    pieces, c = res
                    counts.update(c)
                    newline_cut = bool(sep)
            if pieces is before:
                break
            changed = True
            # A cut can expose a new match inside one piece (an encoded run that now stands
            # alone, a word boundary next to the marker): redact the pieces on their own again.
            settled = not newline_cut  # the "" pass re-scanned until it found nothing more
            for n, (old, new) in enumerate(zip(before, pieces, strict=True)):
                if new != old:
                    pieces[n], c = self._scanner.redact(new)
                    counts.update(c)
                    settled = settled and not c
            if settled:
                break
        if not changed:
            return None
        return [p.decode("utf-8", "surrogatepass") for p in pieces]


def _add_run(run: list[str], out: list[str]) -> None:
    if len(run) >= 2:
        out.append("".join(run))
        out.append("\n".join(run))


def _text_kind(item: Any) -> str | None:
    if isinstance(item, str):
        return ""
    if isinstance(item, dict):
        if isinstance(item.get("text"), str):
            return "text"
        resource = item.get("resource")
        if isinstance(resource, dict) and isinstance(resource.get("text"), str):
            return "resource"
    return None


def _markers(counts: Counter[str]) -> bytes:
    return b"".join(MARKER_PREFIX + name.encode() + b"]" for name in counts)


def _text_of(item: Any, kind: str) -> str:
    if kind == "":
        return str(item)
    if kind == "text":
        return str(item["text"])
    return str(item["resource"]["text"])


def _with_text(item: Any, kind: str, text: str) -> Any:
    if kind == "":
        return text
    if kind == "text":
        return {**item, "text": text}
    return {**item, "resource": {**item["resource"], "text": text}}
