"""
Message bodies in Pomelo's protobuf format, by route: the bytes of npm
C{pomelo-protobuf} / C{pinus-protobuf}.

Schemas come as Pomelo's C{clientProtos.json} and C{serverProtos.json}
(C{{"required string msg": 1, "message Item": {...}}} per route). L{parse}
turns them into the form the handshake sends (C{protos}) and L{Protos.build}
compiles one L{Codec} per route, once. The format is Pomelo's, not Google's:
C{int32} is zigzag-encoded like C{sInt32}; a repeated number field is one
key, the I{count} of elements and the elements; fields go out in the order
of the value's keys, and keys the schema does not name are left out.

Tested by C{tests/test_protobuf.py}.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import Any, Mapping

import attrs

from ._protowire import Message, compile_message, decode, encode
from .errors import ProtobufError

NAME = "protobuf"
CLIENT_FILE = "clientProtos.json"
SERVER_FILE = "serverProtos.json"

_OPTIONS = ("required", "optional", "repeated")

__all__ = ["CLIENT_FILE", "NAME", "SERVER_FILE", "Codec", "ProtobufError", "Protos", "codecs", "load_dir", "parse"]


def parse(protos: Any) -> dict[str, Any]:
    """
    The parsed form of a protos file (pinus-protobuf's C{Protobuf.parse}),
    keys in JavaScript's order: what the handshake sends as C{protos.server}
    and C{protos.client}.

    @raise ProtobufError: not an object of schemas, or a key that is not
        C{"<option> <type> <name>"} with a unique positive tag, or
        C{"message <Name>"} with an object.
    """
    if not isinstance(protos, Mapping):
        raise ProtobufError("protos are not a JSON object")
    return _js_order({str(route): _parse_message(schema, str(route)) for route, schema in protos.items()})


def _parse_message(schema: Any, where: str) -> dict[str, Any]:
    if not isinstance(schema, Mapping):
        raise ProtobufError(f"{where}: not a JSON object")
    fields: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    tags: dict[str, str] = {}
    for key, tag in schema.items():
        words = key.split(" ")
        if len(words) == 2 and words[0] == "message":
            messages[words[1]] = _parse_message(tag, f"{where}.{words[1]}")
            continue
        if len(words) != 3 or words[0] not in _OPTIONS:
            raise ProtobufError(f"{where}: {key!r} is neither '<option> <type> <name>' nor 'message <Name>'")
        if type(tag) is not int or not 0 < tag < 1 << 29:
            raise ProtobufError(f"{where}: {key!r} has tag {tag!r}, not a whole number from 1")
        if str(tag) in tags or words[2] in fields:
            raise ProtobufError(f"{where}: {key!r} repeats a tag or a name")
        fields[words[2]] = {"option": words[0], "type": words[1], "tag": tag}
        tags[str(tag)] = words[2]
    return _js_order({**fields, "__messages": _js_order(messages), "__tags": _js_order(tags)})


def _js_order(obj: dict[str, Any]) -> dict[str, Any]:
    # A JavaScript object lists integer-like keys first, ascending.
    def index(key: str) -> bool:
        return key.isascii() and key.isdigit() and (key == "0" or key[0] != "0") and int(key) < 0xFFFFFFFF
    numbers = sorted((key for key in obj if index(key)), key=int)
    return {**{key: obj[key] for key in numbers}, **{k: v for k, v in obj.items() if not index(k)}}


@attrs.frozen
class Codec:
    """
    The body codec of one route, compiled once.

    @ivar route: the route (or C{message <Name>}) the schema is for.
    """

    route: str
    _message: Message = attrs.field(repr=False)

    def dumps(self, value: Any) -> bytes:
        """
        Encode a body; an object with no field to send is C{b""}.

        @raise ProtobufError: not an object, a required field missing, or a
            value of the wrong type for its field.
        """
        if type(value) is not dict and not isinstance(value, Mapping):
            raise ProtobufError(f"{self.route}: the body is not an object")
        out = bytearray()
        try:
            encode(out, self._message, value)
        except ProtobufError as e:
            raise ProtobufError(f"{self.route}: {e}") from None
        except RecursionError:
            raise ProtobufError(f"{self.route}: the body is nested too deeply") from None
        return bytes(out)

    def loads(self, data: bytes) -> dict[str, Any]:
        """
        Decode a body.

        @raise ProtobufError: an unknown field number, a wire type other than
            the field's, a length past the end, a truncated varint, a string
            that is not UTF-8, a number that is not finite or a required
            field missing.
        """
        try:
            return decode(data, 0, len(data), self._message)
        except ProtobufError as e:
            raise ProtobufError(f"{self.route}: {e}") from None
        except RecursionError:
            raise ProtobufError(f"{self.route}: the body is nested too deeply") from None


def codecs(parsed: Mapping[str, Any]) -> dict[str, Codec]:
    """
    A L{Codec} for every route of a parsed protos object (L{parse}'s form, as
    a handshake carries it).

    @raise ProtobufError: a field's type is neither a Pomelo type nor a
        message found in its message or at the top.
    """
    done: dict[int, Message] = {}
    try:
        return {route: Codec(route, compile_message(schema, route, parsed, done)) for route, schema in parsed.items()}
    except (KeyError, TypeError, AttributeError):
        raise ProtobufError("protos are not in the parsed form") from None


@attrs.frozen
class Protos:
    """
    A server's protobuf schemas.

    @ivar client: codecs of the routes whose requests and notifies are protobuf.
    @ivar server: codecs of the routes whose pushes and responses are protobuf.
    @ivar version: Pomelo's C{protoVersion}: base64 MD5 of both parsed forms as JSON.
    @ivar handshake: C{{"server", "client", "version"}}, as the handshake sends it.
    """

    client: dict[str, Codec]
    server: dict[str, Codec]
    version: str
    handshake: dict[str, Any]

    @classmethod
    def build(cls, client: Any, server: Any) -> Protos:
        """
        Compile the two files' contents (L{parse}'s input).

        @raise ProtobufError: as L{parse} and L{codecs}.
        """
        return cls.from_parsed(parse(client), parse(server))

    @classmethod
    def from_parsed(cls, client: dict[str, Any], server: dict[str, Any]) -> Protos:
        """
        Compile two parsed forms, as a handshake's C{protos} carries them.

        @raise ProtobufError: as L{codecs}.
        """
        text = _json(client) + _json(server)
        version = base64.b64encode(hashlib.md5(text.encode("utf-8")).digest()).decode("ascii")
        handshake = {"server": server, "client": client, "version": version}
        return cls(codecs(client), codecs(server), version, handshake)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def load_dir(path: str) -> Protos:
    """
    Read C{clientProtos.json} and C{serverProtos.json} from C{path}; a
    missing one is C{{}}, as in Pomelo.

    @raise ProtobufError: neither file exists, or one is not JSON or not valid protos.
    """
    parsed = []
    for name in (CLIENT_FILE, SERVER_FILE):
        file = os.path.join(path, name)
        try:
            with open(file, encoding="utf-8") as f:
                parsed.append(parse(json.load(f)))
            codecs(parsed[-1])
        except FileNotFoundError:
            parsed.append(None)
        except (OSError, ValueError) as e:
            raise ProtobufError(f"{file}: {getattr(e, 'strerror', None) or e}") from None
    if parsed == [None, None]:
        raise ProtobufError(f"{path} has neither {CLIENT_FILE} nor {SERVER_FILE}")
    return Protos.from_parsed(parsed[0] or {}, parsed[1] or {})
