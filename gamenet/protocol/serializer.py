"""
Message bodies: compact UTF-8 JSON, as Pomelo and Pitaya clients expect.
"""

from __future__ import annotations

import json
from json.encoder import c_make_encoder, encode_basestring
from typing import Any

_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_decode = json.JSONDecoder(parse_constant=_no_constant).decode

NAME = "json"


def dumps(value: Any) -> bytes:
    """
    Serialize a body.

    @raise ValueError: NaN or infinity, which JavaScript's C{JSON.parse} rejects.
    @raise TypeError: a value JSON cannot carry.
    """
    if c_make_encoder is None:
        return _encoder.encode(value).encode("utf-8")
    # What _encoder.encode does, less its pure-Python set-up on every call: a
    # C encoder with _encoder's settings and fresh circular-reference markers.
    encode = c_make_encoder({}, _encoder.default, encode_basestring, None, ":", ",", False, False, False)
    return "".join(encode(value, 0)).encode("utf-8")


def loads(data: bytes) -> Any:
    """
    Parse a body; an empty body is C{None}.

    @raise ValueError: not UTF-8 JSON, or C{NaN}/C{Infinity}, which
        JavaScript's C{JSON} neither writes nor reads and L{dumps} refuses.
    """
    if not data:
        return None
    try:
        return _decode(data.decode("utf-8"))
    except ValueError:
        # json.loads also reads UTF-16 and UTF-32, a UTF-8 byte order mark and
        # UTF-8-encoded surrogates, all of which fail the line above.
        return json.loads(data, parse_constant=_no_constant)
