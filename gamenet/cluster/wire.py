"""
What crosses a node link: batches of calls and of results, packed as bytes.

Perspective Broker moves one bytes argument several times faster than the
same data as nested lists and dicts (jelly and banana walk every item in
Python), so a batch is one bytes value: a run of records
C{id (4 bytes) | kind or status (1 byte) | length (4 bytes) | payload}.
"""

from __future__ import annotations

import re
import struct
from typing import Any, Iterator

from twisted.python.reflect import fullyQualifiedName
from twisted.spread import banana, pb

from ..connector.tcp import write_now
from ..protocol import serializer

_HEAD = struct.Struct(">IBI")
HEAD_SIZE = _HEAD.size

# Call kinds
FORWARD = 1  # a client request for another server type: route, session, body
NOTIFY = 2  # the same for a notify: no result is sent back
RPC = 3  # app.rpc: remote route and arguments
SYS = 4  # a frontend's sys remote: session and channel operations
PING = 5  # link health: answered with an empty result
DRAIN = 6  # the caller is stopping: route no new calls to it (answered once earlier calls have reached it)

_LIST, _INT, _STRING, _NEG, _FLOAT, _LONGINT, _LONGNEG, _VOCAB = range(0x80, 0x88)  # banana's type bytes
_DOUBLE = struct.Struct("!d")
_BYTES = {bytes}

# Result statuses
OK = 0
ERROR = 1


class WireError(ValueError):
    """
    A batch that does not parse.
    """


def pack(records: list[tuple[int, int, bytes]]) -> bytes:
    """
    Pack C{(id, kind or status, payload)} records into one batch.
    """
    out = []
    for id, kind, payload in records:
        out.append(_HEAD.pack(id, kind, len(payload)))
        out.append(payload)
    return b"".join(out)


def unpack(batch: bytes) -> Iterator[tuple[int, int, bytes]]:
    """
    The records of a batch.

    @raise WireError: a truncated record.
    """
    offset = 0
    end = len(batch)
    while offset < end:
        if end - offset < HEAD_SIZE:
            raise WireError("truncated record head")
        id, kind, size = _HEAD.unpack_from(batch, offset)
        offset += HEAD_SIZE
        if end - offset < size:
            raise WireError("truncated record payload")
        yield id, kind, batch[offset : offset + size]
        offset += size


def encode_forward(route: str, session: dict[str, Any], body: bytes) -> bytes:
    """
    A forwarded client message: its route, the session's export, the body as received.
    """
    route_bytes = route.encode("utf-8")
    session_bytes = serializer.dumps(session)
    return struct.pack(">BI", len(route_bytes), len(session_bytes)) + route_bytes + session_bytes + body


def decode_forward(payload: bytes) -> tuple[str, dict[str, Any], bytes]:
    """
    The route, session export and body of a forwarded client message.

    @raise WireError: it does not parse.
    """
    try:
        route_size, session_size = struct.unpack_from(">BI", payload)
        start = 5 + route_size
        route = payload[5:start].decode("utf-8")
        session = serializer.loads(payload[start : start + session_size])
    except (struct.error, ValueError) as e:
        raise WireError(f"bad forwarded message: {e}") from None
    if not isinstance(session, dict):
        raise WireError("bad forwarded message: session is not an object")
    return route, session, payload[start + session_size :]


def encode_call(name: str, args: Any) -> bytes:
    """
    An RPC or sys call: a name and JSON arguments.
    """
    return serializer.dumps([name, args])


def decode_call(payload: bytes) -> tuple[str, list[Any]]:
    """
    @raise WireError: not C{[name, [args...]]}.
    """
    try:
        name, args = serializer.loads(payload)
    except (ValueError, TypeError) as e:
        raise WireError(f"bad call: {e}") from None
    if not isinstance(name, str) or not isinstance(args, list):
        raise WireError("bad call: expected [name, [args]]")
    return name, args


_PREFIX_END = re.compile(rb"[\x80-\xff]")  # a banana item's type byte ends its number


def _b128(number: int, out: bytearray) -> None:
    """
    Append a non-negative number as banana writes it: 7 bits a byte, lowest first.
    """
    if not number:
        out.append(0)
    while number:
        out.append(number & 0x7F)
        number >>= 7


class NodeBroker(pb.Broker):
    """
    Perspective Broker for node links, reading banana as C{Broker} does,
    bytes for bytes and error for error, but without a Python generator
    step per byte read: Banana's own C{dataReceived} walks every number and
    type byte through C{iterbytes} and a call per item, about a third of
    the Python calls of a forwarded chat message. The batches' arguments
    (one bytes value) are jellied and unjellied without jelly's walk, to the
    same expressions, and what it sends goes straight to the socket when
    the socket can take it (see the chat path in doc/benchmarks.md).
    """

    def serialize(self, object: Any, perspective: Any = None, method: Any = None, args: Any = None,
                  kw: Any = None) -> Any:
        """
        Jelly as C{Broker} does; the arguments of every batch (one bytes
        value), no keywords and the C{None} a batch's method returns
        without walking them through jelly.
        """
        if object is None:
            return [b"None"]
        if type(object) is tuple and set(map(type, object)) <= _BYTES:
            return [b"tuple", *object]
        if type(object) is dict and not object:
            return [b"dictionary"]
        return super().serialize(object, perspective, method, args, kw)

    def unserialize(self, sexp: Any, perspective: Any = None) -> Any:
        """
        Unjelly as C{Broker} does; a tuple of bytes (every batch's
        arguments) and no keywords without walking them through unjelly.
        """
        if type(sexp) is list and sexp:
            head = sexp[0]
            if head == b"tuple" and set(map(type, sexp)) <= _BYTES:
                return tuple(sexp[1:])
            if head == b"dictionary" and len(sexp) == 1:
                return {}
        return super().unserialize(sexp, perspective)

    def sendEncoded(self, obj: Any) -> None:
        """
        Send the bytes C{Banana} would, encoded without its call per item
        and per 7 bits of each number, straight to the socket when it can
        take them (see L{write_now}): a batch is written outside any read.

        @raise banana.BananaError: as C{Banana}'s, before anything is sent.
        """
        out = bytearray()
        self._put(obj, out)
        write_now(self.transport, bytes(out))

    def _put(self, obj: Any, out: bytearray) -> None:
        if isinstance(obj, (list, tuple)):
            if len(obj) > banana.SIZE_LIMIT:
                raise banana.BananaError(f"list/tuple is too long to send ({len(obj)})")
            if len(obj) < 0x80:
                out.append(len(obj))
            else:
                _b128(len(obj), out)
            out.append(_LIST)
            symbols = self.outgoingSymbols if self.currentDialect == b"pb" else {}
            for item in obj:
                # The common items inline: short strings, vocabulary, small ints.
                kind = type(item)
                if kind is bytes:
                    symbol = symbols.get(item)
                    if symbol is not None and symbol < 0x80:
                        out.append(symbol)
                        out.append(_VOCAB)
                        continue
                    if symbol is None and len(item) < 0x80:
                        out.append(len(item))
                        out.append(_STRING)
                        out += item
                        continue
                elif kind is int and 0 <= item < 0x80:
                    out.append(item)
                    out.append(_INT)
                    continue
                self._put(item, out)
        elif isinstance(obj, int):
            if obj < self._smallestLongInt or obj > self._largestLongInt:
                raise banana.BananaError(f"int is too large to send ({obj})")
            if obj < self._smallestInt:
                _b128(-obj, out)
                out.append(_LONGNEG)
            elif obj < 0:
                _b128(-obj, out)
                out.append(_NEG)
            else:
                _b128(obj, out)
                out.append(_INT if obj <= self._largestInt else _LONGINT)
        elif isinstance(obj, float):
            out.append(_FLOAT)
            out += _DOUBLE.pack(obj)
        elif isinstance(obj, bytes):
            if self.currentDialect == b"pb" and obj in self.outgoingSymbols:
                _b128(self.outgoingSymbols[obj], out)
                out.append(_VOCAB)
            else:
                if len(obj) > banana.SIZE_LIMIT:
                    raise banana.BananaError(f"byte string is too long to send ({len(obj)})")
                _b128(len(obj), out)
                out.append(_STRING)
                out += obj
        else:
            raise banana.BananaError(f"Banana cannot send {fullyQualifiedName(type(obj))} objects: {obj!r}")

    def dataReceived(self, chunk: bytes) -> None:
        buffer = self.buffer + chunk
        list_stack = self.listStack
        limit = self.prefixLimit
        while buffer:
            self.buffer = buffer
            end = _PREFIX_END.search(buffer)
            if end is None:
                if len(buffer) > limit:
                    raise banana.BananaError(f"Security precaution: more than {limit} bytes of prefix")
                return
            pos = end.start()
            if pos > limit:
                raise banana.BananaError(f"Security precaution: longer than {limit} bytes worth of prefix")
            num = shift = 0
            for digit in buffer[:pos]:
                num |= digit << shift
                shift += 7
            type_byte = buffer[pos]
            rest = pos + 1
            if type_byte == _LIST:
                if num > banana.SIZE_LIMIT:
                    raise banana.BananaError("Security precaution: List too long.")
                buffer = buffer[rest:]
                if num:
                    list_stack.append((num, []))
                    continue
                item: Any = []
            elif type_byte == _STRING:
                if num > banana.SIZE_LIMIT:
                    raise banana.BananaError("Security precaution: String too long.")
                if len(buffer) - rest < num:
                    return
                item = buffer[rest:rest + num]
                buffer = buffer[rest + num:]
            elif type_byte == _INT or type_byte == _LONGINT:
                item, buffer = num, buffer[rest:]
            elif type_byte == _NEG or type_byte == _LONGNEG:
                item, buffer = -num, buffer[rest:]
            elif type_byte == _VOCAB:
                buffer = buffer[rest:]
                item = self.incomingVocabulary[num]
                if self.currentDialect != b"pb":
                    raise NotImplementedError(f"Invalid item for pb protocol {item!r}")
            elif type_byte == _FLOAT:
                if len(buffer) - rest < 8:
                    return
                item, buffer = _DOUBLE.unpack_from(buffer, rest)[0], buffer[rest + 8:]
            else:
                raise NotImplementedError(f"Invalid Type Byte {bytes((type_byte,))!r}")
            # The item ends every list it completes, innermost first.
            while True:
                if not list_stack:
                    self.callExpressionReceived(item)
                    break
                top = list_stack[-1][1]
                top.append(item)
                if len(top) != list_stack[-1][0]:
                    break
                item = list_stack.pop()[1]
        self.buffer = b""
