"""
The wire half of L{gamenet.protocol.protobuf}: schemas compiled to fields,
and bodies written and read by them. Private: use L{protobuf.Codec}.

Each field carries the writer and the reader of its type, picked once, so
that encoding and decoding do no type dispatch per value.
"""

from __future__ import annotations

import math
import struct
from typing import Any, Callable, Mapping

from .errors import ProtobufError
from .message import base128

# The number types and their wire types; strings and messages are wire type 2.
_SIMPLE = {"uInt32": 0, "uInt64": 0, "sInt32": 0, "sInt64": 0, "int32": 0, "bool": 0, "float": 5, "double": 1}
_MAX_VARINT = 10
_float = struct.Struct("<f")
_double = struct.Struct("<d")
_SMALL = [bytes((n,)) for n in range(128)]


class _Field:
    __slots__ = ("name", "tag", "type", "repeated", "wire", "key", "message", "write", "read")

    def __init__(self, name: str, spec: Mapping[str, Any], message: Message | None) -> None:
        self.name = name
        self.tag = spec["tag"]
        self.type = spec["type"]
        self.repeated = spec["option"] == "repeated"
        self.wire = _SIMPLE.get(self.type, 2)
        self.key = _varint(self.tag << 3 | self.wire)
        self.message = message
        kind = "message" if message is not None else self.type
        self.write: Callable[[bytearray, _Field, Any], None] = _WRITERS[kind]
        self.read: Callable[[bytes, int, int, _Field], tuple[Any, int]] = _READERS[kind]


class Message:
    __slots__ = ("fields", "tags", "required")

    def __init__(self) -> None:
        self.fields: dict[str, _Field] = {}
        self.tags: dict[int, _Field] = {}
        self.required: frozenset[str] = frozenset()


def compile_message(parsed: Mapping[str, Any], where: str, top: Mapping[str, Any], done: dict[int, Message]) -> Message:
    compiled = done.get(id(parsed))
    if compiled is not None:
        return compiled
    done[id(parsed)] = compiled = Message()
    required = []
    for name, spec in parsed.items():
        if name in ("__messages", "__tags"):
            continue
        kind, nested = spec["type"], None
        if kind not in _SIMPLE and kind != "string":
            # Pomelo looks a message type up in the enclosing message, then at the top.
            scope = parsed.get("__messages", {}).get(kind) or top.get("message " + kind)
            if not isinstance(scope, Mapping):
                raise ProtobufError(f"{where}: field {name!r} has unknown type {kind!r}")
            nested = compile_message(scope, f"{where}.{kind}", top, done)
        field = _Field(name, spec, nested)
        compiled.fields[name] = compiled.tags[field.tag] = field
        if spec["option"] == "required":
            required.append(name)
    compiled.required = frozenset(required)
    return compiled


# Encoding: one writer per type appends a value (its key is the caller's).

def _varint(n: int) -> bytes:
    return _SMALL[n] if n < 0x80 else base128(n)


def _integer(value: Any, field: _Field) -> int:
    if type(value) is float and math.isfinite(value):
        return int(value)  # JavaScript's parseInt, for the numbers a value carries
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)  # an IntEnum, say, which JSON writes as its number
    raise ProtobufError(f"field {field.name!r} is not a number")


def _write_uint(out: bytearray, field: _Field, value: Any) -> None:
    if type(value) is not int:
        value = _integer(value, field)
    if 0 <= value < 0x80:
        out.append(value)
    elif 0 <= value < 1 << 64:
        out += _varint(value)
    else:
        raise ProtobufError(f"field {field.name!r} is out of range")


def _write_sint(out: bytearray, field: _Field, value: Any) -> None:
    if type(value) is not int:
        value = _integer(value, field)
    _write_uint(out, field, -2 * value - 1 if value < 0 else 2 * value)


def _write_bool(out: bytearray, field: _Field, value: Any) -> None:
    out.append(1 if value else 0)


def _write_string(out: bytearray, field: _Field, value: Any) -> None:
    if not isinstance(value, str):  # a StrEnum is one too
        raise ProtobufError(f"field {field.name!r} is not a string")
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtobufError(f"field {field.name!r} is not valid Unicode") from None
    size = len(raw)
    out += _SMALL[size] if size < 0x80 else _varint(size)
    out += raw


def _number(field: _Field, value: Any) -> float:
    try:
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    except OverflowError:
        number = math.nan
    if not math.isfinite(number):
        raise ProtobufError(f"field {field.name!r} is not a finite number")
    return number


def _write_float(out: bytearray, field: _Field, value: Any) -> None:
    number = _number(field, value)
    try:
        out += _float.pack(number)
    except OverflowError:  # beyond the float range: JavaScript rounds it to an infinity
        out += _float.pack(math.copysign(math.inf, number))


def _write_double(out: bytearray, field: _Field, value: Any) -> None:
    out += _double.pack(_number(field, value))


def _write_message(out: bytearray, field: _Field, value: Any) -> None:
    if not isinstance(value, Mapping):
        raise ProtobufError(f"field {field.name!r} is not an object")
    inner = bytearray()
    encode(inner, field.message, value)  # type: ignore[arg-type]
    out += _varint(len(inner))
    out += inner


def encode(out: bytearray, message: Message, value: Mapping[str, Any]) -> None:
    if message.required and not value.keys() >= message.required:
        raise ProtobufError(f"field {min(message.required - value.keys())!r} is required")
    fields = message.fields
    for name, item in value.items():
        field = fields.get(name)
        if field is None:
            continue
        if item is None:
            raise ProtobufError(f"field {name!r} is null")
        if not field.repeated:
            out += field.key
            field.write(out, field, item)
        elif type(item) not in (list, tuple):
            raise ProtobufError(f"field {name!r} is not an array")
        elif not item:
            continue
        elif field.wire != 2:
            out += field.key
            out += _varint(len(item))
            for element in item:
                field.write(out, field, element)
        else:
            for element in item:
                out += field.key
                field.write(out, field, element)


# Decoding: one reader per type reads a value at pos, before end.

def _read_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    for i in range(pos, min(end, pos + _MAX_VARINT)):
        byte = data[i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i + 1
        shift += 7
    raise ProtobufError("truncated varint" if end - pos < _MAX_VARINT else "varint longer than 10 bytes")


def _read_uint(data: bytes, pos: int, end: int, field: _Field) -> tuple[Any, int]:
    if pos < end and data[pos] < 0x80:
        return data[pos], pos + 1
    return _read_varint(data, pos, end)


def _read_sint(data: bytes, pos: int, end: int, field: _Field) -> tuple[Any, int]:
    n, pos = _read_uint(data, pos, end, field)
    return (-(n + 1) >> 1 if n & 1 else n >> 1), pos


def _read_bool(data: bytes, pos: int, end: int, field: _Field) -> tuple[Any, int]:
    n, pos = _read_uint(data, pos, end, field)
    return n != 0, pos


def _read_length(data: bytes, pos: int, end: int, field: _Field) -> tuple[int, int]:
    size, pos = _read_uint(data, pos, end, field)
    stop = pos + size
    if stop > end:
        raise ProtobufError(f"field {field.name!r}: length past the end")
    return pos, stop


def _read_string(data: bytes, pos: int, end: int, field: _Field) -> tuple[Any, int]:
    if pos < end and data[pos] < 0x80:  # the common short string, inline
        stop = pos + 1 + data[pos]
        pos += 1
        if stop > end:
            raise ProtobufError(f"field {field.name!r}: length past the end")
    else:
        pos, stop = _read_length(data, pos, end, field)
    try:
        return data[pos:stop].decode("utf-8"), stop
    except UnicodeDecodeError:
        raise ProtobufError(f"field {field.name!r} is not UTF-8") from None


def _read_message(data: bytes, pos: int, end: int, field: _Field) -> tuple[Any, int]:
    pos, stop = _read_length(data, pos, end, field)
    return decode(data, pos, stop, field.message), stop  # type: ignore[arg-type]


def _read_fixed(data: bytes, pos: int, end: int, field: _Field, codec: struct.Struct) -> tuple[Any, int]:
    stop = pos + codec.size
    if stop > end:
        raise ProtobufError(f"field {field.name!r}: length past the end")
    number = codec.unpack_from(data, pos)[0]
    if not math.isfinite(number):
        raise ProtobufError(f"field {field.name!r} is not a finite number")
    return number, stop


def _read_float(data: bytes, pos: int, end: int, field: _Field) -> tuple[Any, int]:
    return _read_fixed(data, pos, end, field, _float)


def _read_double(data: bytes, pos: int, end: int, field: _Field) -> tuple[Any, int]:
    return _read_fixed(data, pos, end, field, _double)


def decode(data: bytes, pos: int, end: int, message: Message) -> dict[str, Any]:
    value: dict[str, Any] = {}
    tags = message.tags
    while pos < end:
        if data[pos] < 0x80:
            key, pos = data[pos], pos + 1
        else:
            key, pos = _read_varint(data, pos, end)
        field = tags.get(key >> 3)
        if field is None:
            raise ProtobufError(f"unknown field number {key >> 3}")
        if key & 7 != field.wire:
            raise ProtobufError(f"field {field.name!r}: wire type {key & 7}, expected {field.wire}")
        if not field.repeated:
            value[field.name], pos = field.read(data, pos, end, field)
            continue
        items = value.setdefault(field.name, [])
        if field.wire == 2:
            item, pos = field.read(data, pos, end, field)
            items.append(item)
            continue
        count, pos = _read_varint(data, pos, end)
        if count > end - pos:
            raise ProtobufError(f"field {field.name!r}: length past the end")
        read = field.read
        for _ in range(count):
            item, pos = read(data, pos, end, field)
            items.append(item)
    if message.required and not value.keys() >= message.required:
        raise ProtobufError(f"field {min(message.required - value.keys())!r} is required")
    return value


_WRITERS = {
    "uInt32": _write_uint, "uInt64": _write_uint, "sInt32": _write_sint, "sInt64": _write_sint, "int32": _write_sint,
    "bool": _write_bool, "float": _write_float, "double": _write_double, "string": _write_string,
    "message": _write_message,
}
_READERS = {
    "uInt32": _read_uint, "uInt64": _read_uint, "sInt32": _read_sint, "sInt64": _read_sint, "int32": _read_sint,
    "bool": _read_bool, "float": _read_float, "double": _read_double, "string": _read_string,
    "message": _read_message,
}
