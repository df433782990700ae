"""Request bodies as JSON, refusing what is hostile before anything walks it.

Every JSON route parses its body here, and every refusal is a 400 in OpenAI's error shape
(code ``invalid_json``), never a 500 with a traceback:

- not UTF-8 (RFC 8259 asks for it; no guessing UTF-16/32), a byte-order mark;
- nested deeper than :data:`MAX_DEPTH` (the standard parser recurses: 1,000 levels raise
  ``RecursionError``, and any later walk of a deep value would too);
- more than :data:`MAX_VALUES` arrays, objects and scalars (a 32 MB body of ``[0,0,...]``
  costs seconds of parsing while holding the interpreter; images are a few long strings);
- ``NaN``/``Infinity`` and numbers that overflow to them, integers over Python's digit limit;
- a key given twice in one object (which one wins differs between parsers);
- strings with lone surrogates (``"\\ud800"``: valid JSON escapes, but no UTF-8 encodes
  them, so they would fail later, when the answer or a log line is written).

The cheap checks run first on the raw bytes (counts of structural characters, a search for
surrogate escapes); the walk of the parsed value only runs when they cannot rule a case out.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from safeclip_guardrail.errors import ServiceError

__all__ = ["MAX_DEPTH", "MAX_VALUES", "parse_json"]

MAX_DEPTH = 32
"""Deepest nesting of arrays and objects accepted (chat messages need fewer than 10)."""
MAX_VALUES = 100_000
"""Most JSON values (arrays, objects, scalars) in one body."""

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_NOT_JSON = "the body is not valid JSON: "


def parse_json(raw: bytes) -> Any:
    """The body's JSON value, or a :class:`ServiceError` (400) saying what is wrong with it."""
    if _values_at_most(raw) > MAX_VALUES:
        msg = (f"the body holds more than {MAX_VALUES} JSON values; send fewer texts or "
               "messages per request")
        raise _bad(msg)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        msg = (f"the body is not UTF-8 (byte {exc.start} is not); send JSON encoded as "
               "UTF-8")
        raise _bad(msg) from None
    try:
        value = json.loads(text, object_pairs_hook=_object, parse_constant=_constant,
                           parse_float=_float)
    except RecursionError:
        msg = (f"the body is nested too deeply; at most {MAX_DEPTH} levels of arrays "
               "and objects are accepted")
        raise _bad(msg) from None
    except ValueError as exc:  # the parser's own refusals (the hooks below raise ours)
        msg = f"{_NOT_JSON}{_first_line(exc)}"
        raise _bad(msg) from None
    brackets = raw.count(b"[") + raw.count(b"{")
    if brackets > MAX_DEPTH or _SURROGATE_ESCAPE.search(raw) is not None:
        _walk(value)
    return value


def _values_at_most(raw: bytes) -> int:
    """An upper bound on the JSON values in ``raw`` (exact once strings are cut out)."""
    def count(b: bytes) -> int:
        return b.count(b",") + b.count(b"[") + b.count(b"{") + 1

    bound = count(raw)
    if bound <= MAX_VALUES:
        return bound
    return count(_STRING.sub(b'""', raw))  # commas and brackets inside strings are text


def _walk(value: Any) -> None:
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, str):
            _check_string(v)
        elif isinstance(v, (dict, list)):
            if depth >= MAX_DEPTH:
                msg = (f"the body is nested too deeply; at most {MAX_DEPTH} levels of "
                       "arrays and objects are accepted")
                raise _bad(msg)
            if isinstance(v, dict):
                for k, item in v.items():
                    _check_string(k)
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in v)


def _check_string(s: str) -> None:
    if s.isascii():
        return
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        msg = ("the body holds a string with an unpaired surrogate escape (e.g. "
               "\\ud800); send valid Unicode text")
        raise _bad(msg) from None


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                msg = f"{_NOT_JSON}the key {key[:40]!r} appears twice in one object"
                raise _bad(msg)
            seen.add(key)
    return out


def _constant(name: str) -> Any:
    msg = f"{_NOT_JSON}{name} is not a JSON number; send finite numbers"
    raise _bad(msg)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        msg = f"{_NOT_JSON}the number {text[:40]} is too large for a float"
        raise _bad(msg)
    return value


def _first_line(exc: ValueError) -> str:
    return str(exc).splitlines()[0][:200]


def _bad(message: str) -> ServiceError:
    return ServiceError(400, message, code="invalid_json")
