"""
Message bodies: compact UTF-8 JSON, as Pomelo and Pitaya clients expect.
"""

from __future__ import annotations

import json
from typing import Any

_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_decode = json.loads

NAME = "json"


def dumps(value: Any) -> bytes:
    """
    Serialize a body.

    @raise ValueError: NaN or infinity, which JavaScript's C{JSON.parse} rejects.
    @raise TypeError: a value JSON cannot carry.
    """
    return _encoder.encode(value).encode("utf-8")


def loads(data: bytes) -> Any:
    """
    Parse a body; an empty body is C{None}.

    @raise ValueError: not UTF-8 JSON.
    """
    if not data:
        return None
    return _decode(data)
