"""
How Pomelo's chat demo picks a server: C{abs(crc32(key)) % n}, with the demo's
C{crc} package, which hashes the low byte of each character and returns a
signed 32-bit value. For ASCII keys and two servers this equals
C{zlib.crc32(key) % 2}; for other keys it can differ, so it is done exactly.
"""

from __future__ import annotations

import zlib
from typing import Sequence, TypeVar

T = TypeVar("T")


def demo_crc32(key: str) -> int:
    """
    C{Math.abs(crc.crc32(key))} as the demo computes it.
    """
    unsigned = zlib.crc32(bytes(ord(c) & 0xFF for c in key))
    return abs(unsigned - (1 << 32) if unsigned >= 1 << 31 else unsigned)


def dispatch(key: str, servers: Sequence[T]) -> T:
    """
    The server for C{key}.
    """
    return servers[demo_crc32(key) % len(servers)]
