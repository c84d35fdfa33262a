"""
The Pomelo message layer, the body of a DATA package.

C{flag (1 byte) | [id, base-128 varint] | [route] | body}. The flag holds the
route-compressed bit (0x01), the type in bits 1-3, and Pitaya's two extensions:
the data-compressed bit (0x10, zlib) and the error bit (0x20).
"""

from __future__ import annotations

import zlib
from struct import Struct
from typing import Mapping

import attrs

from .errors import ProtocolError
from .package import DATA, MAX_BODY, encode as encode_package

REQUEST = 0
NOTIFY = 1
RESPONSE = 2
PUSH = 3

ROUTE_COMPRESSED = 0x01
DATA_COMPRESSED = 0x10
ERROR = 0x20

MAX_ID_BYTES = 5
MAX_ROUTE_LENGTH = 255

_TYPE_NAMES = {REQUEST: "request", NOTIFY: "notify", RESPONSE: "response", PUSH: "push"}

# The flag byte of a response, and of an error response (Pitaya's error bit).
_RESPONSE_FLAG = RESPONSE << 1
_ERROR_RESPONSE_FLAG = _RESPONSE_FLAG | ERROR


@attrs.define(slots=True)
class Message:
    """
    One decoded message.

    @ivar type: L{REQUEST}, L{NOTIFY}, L{RESPONSE} or L{PUSH}.
    @ivar id: the request id; 0 for notify and push.
    @ivar route: the route, already expanded from its dictionary code; empty for a response.
    @ivar body: the body bytes, inflated if the sender set the data-compressed bit.
    @ivar compressed_route: whether the sender used a dictionary code.
    @ivar error: Pitaya's error bit.
    """

    type: int
    id: int
    route: str
    body: bytes
    compressed_route: bool = False
    error: bool = False


def encode_varint(value: int) -> bytes:
    """
    Encode a message id as Pomelo does: base-128, least significant group first.

    @raise ValueError: the id does not fit L{MAX_ID_BYTES} groups, the most
        L{decode} accepts.
    """
    if value < 0x80:
        return bytes((value,))
    if value < 0x4000:
        # Two bytes, the most common length on a connection past its first 127 requests.
        return bytes((value & 0x7F | 0x80, value >> 7))
    if not 0 <= value < 1 << (7 * MAX_ID_BYTES):
        raise ValueError(f"message id {value} does not fit {MAX_ID_BYTES} bytes")
    return base128(value)


def base128(value: int) -> bytes:
    """
    A whole number of any size, not negative, in base 128, least significant
    group first, the high bit set on every byte but the last: Pomelo's
    message ids and protobuf's varints.
    """
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _encode_route(route: str, code: int | None) -> tuple[int, bytes]:
    if code is not None:
        return ROUTE_COMPRESSED, bytes((code >> 8, code & 0xFF))
    raw = route.encode("utf-8")
    if len(raw) > MAX_ROUTE_LENGTH:
        raise ValueError(f"route of {len(raw)} bytes exceeds {MAX_ROUTE_LENGTH}")
    return 0, bytes((len(raw),)) + raw


def encode(
    message_type: int,
    id: int = 0,
    route: str = "",
    body: bytes = b"",
    route_code: int | None = None,
    error: bool = False,
) -> bytes:
    """
    Encode a message; pass C{route_code} to send the route compressed.
    """
    flag = message_type << 1
    if error:
        flag |= ERROR
    parts = [b""]
    if message_type in (REQUEST, RESPONSE):
        parts.append(encode_varint(id))
    if message_type != RESPONSE:
        route_flag, route_bytes = _encode_route(route, route_code)
        flag |= route_flag
        parts.append(route_bytes)
    parts[0] = bytes((flag,))
    parts.append(body)
    return b"".join(parts)


def encode_response(id: int, body: bytes, error: bool = False) -> bytes:
    """
    Encode a response (the message alone: L{response_package} makes the
    whole package of an answer to a client).
    """
    head = _ERROR_RESPONSE_FLAG if error else _RESPONSE_FLAG
    if id < 0x80:
        return bytes((head, id)) + body
    return bytes((head,)) + encode_varint(id) + body


# The head of a DATA package holding a response with a one- or two-byte id:
# package type, body length (its high byte, then its low 16 bits), flag, id.
_RESPONSE_HEAD = Struct(">BBHBB").pack
_RESPONSE_HEAD_2 = Struct(">BBHBBB").pack


def response_package(id: int, body: bytes, error: bool = False) -> bytes:
    """
    A response as a whole DATA package: the bytes of
    C{package.encode(DATA, encode_response(id, body, error))}, made in one
    step for the ids under 16384 (one or two bytes), since every answer to
    a client is one.

    @raise ValueError: as L{encode_varint} and L{package.encode} do.
    """
    size = len(body) + 2
    if 0 <= id < 0x80 and size <= MAX_BODY:
        return _RESPONSE_HEAD(DATA, size >> 16, size & 0xFFFF, _ERROR_RESPONSE_FLAG if error else _RESPONSE_FLAG,
                              id) + body
    if 0 <= id < 0x4000 and size < MAX_BODY:
        size += 1
        return _RESPONSE_HEAD_2(DATA, size >> 16, size & 0xFFFF, _ERROR_RESPONSE_FLAG if error else _RESPONSE_FLAG,
                                id & 0x7F | 0x80, id >> 7) + body
    return encode_package(DATA, encode_response(id, body, error))


def encode_push(route: str, body: bytes, route_code: int | None = None) -> bytes:
    """
    Encode a push, compressed when C{route_code} is given.
    """
    route_flag, route_bytes = _encode_route(route, route_code)
    return bytes((0x06 | route_flag,)) + route_bytes + body


def decode(data: bytes, code_to_route: Mapping[int, str], max_body: int = 1 << 20) -> Message:
    """
    Decode the body of a DATA package.

    @param code_to_route: the route dictionary, to expand compressed routes.
    @param max_body: the largest body a compressed body may inflate to.
    @raise ProtocolError: a truncated field, an unknown type or route code, or
        a compressed body that does not inflate.
    """
    size = len(data)
    if size > 4 and data[0] == ROUTE_COMPRESSED:
        # What clients send most: a request by route code with a one- or
        # two-byte id and a plain body, read in fewer steps. Anything else,
        # or an unknown code, is read (or refused) below.
        id = data[1]
        if id < 0x80:
            route = code_to_route.get((data[2] << 8) | data[3])
            if route is not None:
                return Message(REQUEST, id, route, data[4:], True, False)
        elif data[2] < 0x80:
            route = code_to_route.get((data[3] << 8) | data[4])
            if route is not None:
                return Message(REQUEST, id & 0x7F | data[2] << 7, route, data[5:], True, False)
    if size < 1:
        raise ProtocolError("empty message")
    flag = data[0]
    message_type = (flag >> 1) & 0x7
    if message_type > PUSH:
        raise ProtocolError(f"bad message type {message_type}")
    offset = 1
    id = 0
    if message_type == REQUEST or message_type == RESPONSE:
        # The first group read before the loop: most ids are one or two bytes.
        if size < 2:
            raise ProtocolError("truncated message id")
        byte = data[1]
        id = byte & 0x7F
        offset = 2
        shift = 7
        while byte >= 0x80:
            if offset >= size:
                raise ProtocolError("truncated message id")
            if shift >= 7 * MAX_ID_BYTES:
                raise ProtocolError("message id too long")
            byte = data[offset]
            offset += 1
            id |= (byte & 0x7F) << shift
            shift += 7
    route = ""
    compressed = flag & ROUTE_COMPRESSED != 0
    if message_type != RESPONSE:
        if compressed:
            if size - offset < 2:
                raise ProtocolError("truncated route code")
            code = (data[offset] << 8) | data[offset + 1]
            offset += 2
            try:
                route = code_to_route[code]
            except KeyError:
                raise ProtocolError(f"unknown route code {code}") from None
        else:
            if offset >= size:
                raise ProtocolError("truncated route length")
            length = data[offset]
            offset += 1
            if size - offset < length:
                raise ProtocolError("truncated route")
            try:
                route = data[offset : offset + length].decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolError("route is not UTF-8") from None
            offset += length
    body = data[offset:]
    if flag & DATA_COMPRESSED:
        try:
            body = _inflate(body, max_body)
        except zlib.error:
            raise ProtocolError("compressed body does not inflate") from None
    return Message(message_type, id, route, body, compressed, flag & ERROR != 0)


def _inflate(body: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj()
    out = inflater.decompress(body, limit)
    if inflater.unconsumed_tail:
        raise zlib.error("inflated body too large")
    if not inflater.eof:
        raise zlib.error("truncated compressed body")
    return out


def type_name(message_type: int) -> str:
    """
    @return: a readable name for a message type.
    """
    return _TYPE_NAMES.get(message_type, f"unknown({message_type})")
