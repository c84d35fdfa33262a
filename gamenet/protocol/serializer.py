"""
Message bodies: compact UTF-8 JSON, as Pomelo and Pitaya clients expect.
"""

from __future__ import annotations

import json
from json.encoder import c_make_encoder, encode_basestring
from typing import Any

_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)

# What _encoder.encode uses, made once rather than on every call: the C
# encoder with _encoder's settings but no circular-reference markers (their
# bookkeeping is per call). A circular value then recurses until
# RecursionError, and dumps encodes it again with _encoder, for the
# ValueError it raises.
_encode = (
    None if c_make_encoder is None
    else c_make_encoder(None, _encoder.default, encode_basestring, None, ":", ",", False, False, False)
)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_decoder = json.JSONDecoder(parse_constant=_no_constant)
_decode = _decoder.decode
_scan = _decoder.scan_once

NAME = "json"


def dumps(value: Any) -> bytes:
    """
    Serialize a body.

    @raise ValueError: NaN or infinity, which JavaScript's C{JSON.parse}
        rejects, a circular reference, or arrays and objects nested deeper
        than Python's recursion limit.
    @raise TypeError: a value JSON cannot carry.
    """
    try:
        if _encode is None:
            return _encoder.encode(value).encode("utf-8")
        try:
            return "".join(_encode(value, 0)).encode("utf-8")
        except RecursionError:
            # Too deep, or circular: _encoder says which, as json.dumps would.
            return _encoder.encode(value).encode("utf-8")
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def loads(data: bytes) -> Any:
    """
    Parse a body; an empty body is C{None}.

    @raise ValueError: not UTF-8 JSON, or C{NaN}/C{Infinity}, which
        JavaScript's C{JSON} neither writes nor reads and L{dumps} refuses,
        or arrays and objects nested deeper than Python's recursion limit
        (a body of a thousand C{[}, say).
    """
    if not data:
        return None
    try:
        try:
            text = data.decode("utf-8")
            # A body that is one JSON value and nothing else is read by the
            # decoder's scanner alone, skipping the pure-Python whitespace
            # checks of _decode around it; anything else (whitespace around
            # the value, more after it, no value) goes through _decode, for
            # its value or its error.
            try:
                value, end = _scan(text, 0)
            except StopIteration:
                return _decode(text)
            return value if end == len(text) else _decode(text)
        except ValueError:
            # json.loads also reads UTF-16 and UTF-32, a UTF-8 byte order mark
            # and UTF-8-encoded surrogates, all of which fail the line above.
            return json.loads(data, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
