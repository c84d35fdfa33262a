"""
Message bodies: compact UTF-8 JSON, as Pomelo and Pitaya clients expect.

Bodies are written by orjson when its bytes are sure to be those of the
stdlib's C{json} module, and by the C{json} module otherwise; they are read
by the C{json} module (see C{doc/protocol.md}, "JSON bodies", for why).
"""

from __future__ import annotations

import json
from enum import Enum
from json.encoder import c_make_encoder, encode_basestring
from typing import Any
from uuid import UUID

import orjson


def _default(value: Any) -> Any:
    """
    What orjson writes for the types it knows and C{json} does not: an
    enum's value, a UUID's text; anything else, as C{json}, a L{TypeError}.
    """
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_default)

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


# Subclasses of str, int, dict and list (IntEnum, OrderedDict, ...),
# dataclasses and datetimes are left to json, which writes the first as
# their base type and refuses the others.
_ORJSON = orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
_orjson_dumps = orjson.dumps
_U, _MINUS, _DOT = b"u-."  # a byte of each of "null", "e-" and "0.0000" (see dumps)


def dumps(value: Any) -> bytes:
    """
    Serialize a body: the bytes of the stdlib's C{json.dumps} with compact
    separators and UTF-8 text, and an enum as its value, a UUID as its text.

    @raise ValueError: NaN or infinity, which JavaScript's C{JSON.parse}
        rejects, a circular reference, or arrays and objects nested deeper
        than Python's recursion limit.
    @raise TypeError: a value JSON cannot carry.
    """
    try:
        data = _orjson_dumps(value, option=_ORJSON)
    except TypeError:
        # A type or a dict key orjson leaves to json, an integer over 64
        # bits, a string with a lone surrogate, more than 254 levels of
        # nesting, or a circular value: json says what they are.
        return _json_dumps(value)
    # Where orjson's bytes may not be json's: it writes NaN and infinity as
    # null, and a float under 1e-4 as 1e-5 or 0.00001 where json writes
    # 1e-05. Every other float, string and integer it writes as json does
    # (tests/test_serializer.py compares them). A body with one of these,
    # even inside a string, is written again by json. Each is looked for
    # only when a byte of it is in the body: a byte is found with memchr,
    # and bytes.find costs six times as much, most of it reading its
    # argument ("in" with a bytes argument, twice as much again).
    if ((_U in data and data.find(b"null") >= 0) or (_MINUS in data and data.find(b"e-") >= 0)
            or (_DOT in data and data.find(b"0.0000") >= 0)):
        return _json_dumps(value)
    return data


def _json_dumps(value: Any) -> bytes:
    """
    L{dumps} by the stdlib's C{json} module alone.
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
            text = data.decode()
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
