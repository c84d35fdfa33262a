"""
L{gamenet.protocol.serializer} writes, through orjson, the very bytes the
stdlib's C{json} module writes: values compared one by one with
L{serializer._json_dumps}, the C{json}-only path, over every kind of value
whose bytes the two could write differently.
"""

from __future__ import annotations

import enum
import json
import random
import struct
import sys
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from gamenet.protocol import serializer


class Colour(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


@dataclass
class Point:
    x: int


def floats(count: int) -> list[float]:
    """
    C{count} floats of every magnitude: random bit patterns, random values
    of game-like size and rounding, and each power of ten with a few mantissas.
    """
    rnd = random.Random(17)
    values = [struct.unpack("<d", rnd.getrandbits(64).to_bytes(8, "little"))[0] for _ in range(count)]
    values += [rnd.uniform(-1e6, 1e6) for _ in range(count)]
    values += [round(rnd.uniform(-1000, 1000), rnd.randint(0, 8)) for _ in range(count)]
    values += [float(f"{m}e{e}") for e in range(-323, 308) for m in (1, 1.5, 9.999999999999999, 1.2345678901234567)]
    values += [0.0, -0.0, 5e-324, sys.float_info.max, sys.float_info.min]
    return values


class SameBytesTests(SynchronousTestCase):
    """
    L{serializer.dumps} gives the bytes of C{json.dumps(value,
    separators=(",", ":"), ensure_ascii=False, allow_nan=False)} encoded as UTF-8.
    """

    def assertSame(self, value: Any) -> None:
        expected = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
        self.assertEqual(serializer.dumps(value), expected, f"for {value!r}")

    def test_floats(self) -> None:
        """
        Every float, including those under 1e-4 that orjson writes otherwise.
        """
        values = [value for value in floats(20000) if value == value and abs(value) != float("inf")]
        for value in values:
            self.assertSame(value)
        self.assertSame(values)

    def test_nanAndInfinity(self) -> None:
        """
        NaN and infinity are a L{ValueError}, not the C{null} orjson writes.
        """
        for value in (float("nan"), float("inf"), -float("inf")):
            self.assertRaises(ValueError, serializer.dumps, {"v": [value]})

    def test_text(self) -> None:
        """
        Every character, alone and among others, escaped (control
        characters, quote, backslash) or written as UTF-8 as C{json} does.
        """
        characters = [chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF]
        for start in range(0, len(characters), 4096):
            chunk = "".join(characters[start:start + 4096])
            self.assertSame(chunk)
            self.assertSame({chunk[:100]: chunk[100:200]})
        for c in range(0x80):
            self.assertSame(f"a{chr(c)}b")

    def test_loneSurrogate(self) -> None:
        """
        A string with a lone surrogate is the L{UnicodeEncodeError} (a
        L{ValueError}) of encoding C{json}'s text as UTF-8.
        """
        self.assertRaises(UnicodeEncodeError, serializer.dumps, {"a": "x\ud800"})

    def test_integers(self) -> None:
        """
        Integers at and past the 64-bit limits, and booleans.
        """
        for value in (0, -1, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**40,
                      True, False):
            self.assertSame([value, {"n": value}])

    def test_containers(self) -> None:
        """
        Key order, tuples, non-string keys (written as text by C{json}),
        subclasses of dict and int, and C{None}.
        """
        for value in ({"b": 1, "a": [1, (2, 3)], "c": None}, {1: "x", 2.5: "y", None: "z", False: 1},
                      OrderedDict(b=1, a=2), [Level.HIGH, {"level": Level.HIGH}], {}, [], "", [[[]]]):
            self.assertSame(value)

    def test_deep(self) -> None:
        """
        Nesting past orjson's limit (254) and below the recursion limit is
        written as C{json} writes it.
        """
        value: list = [1]
        for _ in range(400):
            value = [value]
        self.assertSame(value)

    def test_enumAndUuid(self) -> None:
        """
        An enum is written as its value and a UUID as its text, wherever
        they are and whatever else the body holds.
        """
        key = uuid.UUID(int=5)
        for extra in ("text", None, 1e-7):
            self.assertEqual(serializer.loads(serializer.dumps({"c": Colour.RED, "id": key, "x": extra})),
                             {"c": "red", "id": str(key), "x": extra})

    def test_refused(self) -> None:
        """
        Dataclasses, datetimes, bytes and sets are a L{TypeError}, as with C{json}.
        """
        for value in (Point(1), datetime(2026, 1, 1), b"x", {1}, object()):
            self.assertRaises(TypeError, serializer.dumps, {"v": value})
