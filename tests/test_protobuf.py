"""
Tests for L{gamenet.protocol.protobuf}: golden bytes against npm
C{pinus-protobuf} (run through C{tests/interop/protobuf_golden.js}), every
kind of bad input, the schema files, and a property test.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import subprocess
from enum import IntEnum, StrEnum
from typing import Any

from hypothesis import given, settings, strategies as st
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from gamenet.protocol.protobuf import Protos, ProtobufError, load_dir, parse

from ._node import install, node_tools

INTEROP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "interop")
WEB_CODEC = os.path.join(os.path.dirname(INTEROP), "..", "examples", "chat", "web", "protobuf.js")

CHAT = {"onChat": {"required string msg": 1, "required string from": 2, "required string target": 3}}
SCHEMAS = {
    "message Point": {"required sInt32 x": 1, "required sInt32 y": 2},
    "area.all": {
        "optional uInt32 u32": 1,
        "optional sInt32 s32": 2,
        "optional int32 i32": 3,
        "optional uInt64 u64": 4,
        "optional sInt64 s64": 5,
        "optional float f": 6,
        "optional double d": 7,
        "optional string s": 8,
        "optional bool b": 9,
        "message Item": {
            "required string name": 1,
            "optional uInt32 count": 2,
            "repeated Tag tags": 3,
            "message Tag": {"required string label": 1},
        },
        "optional Item item": 10,
        "repeated Item items": 11,
        "repeated uInt32 ru": 12,
        "repeated sInt32 rs": 13,
        "repeated double rd": 14,
        "repeated float rf": 15,
        "repeated string rstr": 16,
        "optional Point at": 17,
        "repeated Point path": 18,
        "repeated int32 ri": 19,
        "repeated uInt64 ru64": 20,
        "repeated sInt64 rs64": 21,
        "repeated bool rb": 22,
        "optional string far": 300,
    },
    **CHAT,
}
ITEM = {"name": "sword", "count": 3, "tags": [{"label": "sharp"}, {"label": "é"}]}
CASES: list[tuple[str, dict[str, Any]]] = [
    ("onChat", {"msg": "hi", "from": "bob", "target": "*"}),
    ("onChat", {"target": "", "msg": "héllo 世界 🎮", "from": ""}),
    ("area.all", {"u32": 0, "s32": 0, "i32": 0, "u64": 0, "s64": 0, "f": 0.0, "d": 0.0, "s": "", "b": False}),
    ("area.all", {"u32": 4294967295, "s32": -2147483648, "i32": -1, "u64": 9007199254740991,
                  "s64": -4503599627370495, "f": -0.25, "d": -1e300, "s": "ünïcödé", "b": True}),
    ("area.all", {"s32": 2147483647, "i32": 2147483647, "u32": 300, "f": 3.4028234663852886e38, "d": 5e-324}),
    ("area.all", {"f": 0.1, "d": 0.1, "far": "far away"}),
    ("area.all", {"item": ITEM, "items": [ITEM, {"name": ""}], "at": {"x": -5, "y": 7},
                  "path": [{"x": 1, "y": -1}, {"x": 100000, "y": -100000}]}),
    ("area.all", {"ru": [0, 1, 127, 128, 16384, 4294967295], "rs": [-1, 1, -64, 64, -2147483648],
                  "rd": [1.5, -2.25, 1e100], "rf": [1.5, -0.125, 65504.0], "rstr": ["a", "", "日本"],
                  "ri": [-3, 3], "ru64": [2 ** 40, 2 ** 53]}),
    ("area.all", {"rs64": [-4503599627370495, 0, 4503599627370495], "rb": [True, False, True],
                  "i32": -2147483648, "u64": 2 ** 53, "s64": 4503599627370495, "far": "\u00e9" * 70}),
    # Lengths past one varint byte: a 300-byte string, a nested message of over 128 bytes.
    ("area.all", {"s": "\u4e16" * 100, "item": {"name": "n" * 130, "tags": [{"label": "\U0001f3ae" * 40}]},
                  "items": [{"name": "m" * 200, "count": 2 ** 32 - 1}], "ru": list(range(0, 2 ** 21, 2 ** 14))}),
    ("area.all", {"item": {"name": "empty", "tags": []}, "ru": [], "rstr": []}),
    ("area.all", {"item": {"name": "x"}, "unknown": "left out", "s": "kept"}),
    ("area.all", {}),
]


_golden: dict[str, Any] = {}


def golden(case: SynchronousTestCase) -> dict[str, Any]:
    """
    What npm pinus-protobuf makes of L{SCHEMAS} and L{CASES}: every case
    encoded, and the bytes gamenet encodes decoded (one node run per test run).
    """
    if not _golden:
        try:
            node, npm = node_tools("the protobuf golden tests (tests/interop/protobuf_golden.js)")
            install(INTEROP, npm)
        except RuntimeError as e:
            case.fail(str(e))
        protos = Protos.build({}, SCHEMAS)
        document = {
            "client": {}, "server": SCHEMAS, "encode": CASES, "web": os.path.abspath(WEB_CODEC),
            "decode": [[route, base64.b64encode(protos.server[route].dumps(value)).decode()] for route, value in CASES],
        }
        result = subprocess.run(
            [node, "protobuf_golden.js"], input=json.dumps(document), cwd=INTEROP, capture_output=True, text=True,
            timeout=60, check=False,
        )
        if result.returncode != 0:
            case.fail(f"node exited {result.returncode}: {result.stderr}")
        _golden.update(json.loads(result.stdout))
    return _golden


class GoldenTests(SynchronousTestCase):
    """
    gamenet's codec and npm C{pinus-protobuf} 1.7.4 agree byte for byte, both ways.
    """

    def setUp(self) -> None:
        self.protos = Protos.build({}, SCHEMAS)
        self.npm = golden(self)

    def test_parsedForm(self) -> None:
        """
        The parsed schemas (what the handshake sends as C{protos}) are npm's,
        keys in the same order, and so is the version computed from them.
        """
        self.assertEqual(json.dumps(self.protos.handshake["server"], separators=(",", ":"), ensure_ascii=False),
                         self.npm["server"])
        self.assertEqual(json.dumps(self.protos.handshake["client"]), self.npm["client"])
        self.assertEqual(self.protos.version, self.npm["version"])
        self.assertEqual(self.protos.handshake["version"], self.protos.version)

    def test_encode(self) -> None:
        """
        Every case encodes to npm's bytes: each type, nested and repeated,
        negative and large numbers, empty and non-ASCII strings; an object
        with nothing to send is an empty body where npm returns C{null}.
        """
        for (route, value), expected in zip(CASES, self.npm["encoded"]):
            ours = self.protos.server[route].dumps(value)
            self.assertEqual(ours, base64.b64decode(expected) if expected is not None else b"", (route, value))

    def test_decodeNpm(self) -> None:
        """
        npm's bytes decode in gamenet to the values npm encoded (less the
        keys the schema does not have, and the empty arrays, which are not sent).
        """
        for (route, value), encoded in zip(CASES, self.npm["encoded"]):
            data = base64.b64decode(encoded) if encoded is not None else b""
            self.assertEqual(self.protos.server[route].loads(data), expected_value(value), (route, value))

    def test_npmDecodes(self) -> None:
        """
        npm decodes gamenet's bytes to the values gamenet encoded.
        """
        for (route, value), decoded in zip(CASES, self.npm["decoded"]):
            self.assertEqual(decoded, expected_value(value), (route, value))

    def test_webCodec(self) -> None:
        """
        The chat page's own codec (C{examples/chat/web/protobuf.js}, run in
        Node) encodes every case to npm's bytes, and decodes gamenet's.
        """
        for (route, value), expected, ours in zip(CASES, self.npm["encoded"], self.npm["web_encoded"]):
            self.assertEqual(base64.b64decode(ours), base64.b64decode(expected) if expected else b"", (route, value))
        for (route, value), decoded in zip(CASES, self.npm["web_decoded"]):
            self.assertEqual(decoded, expected_value(value), (route, value))

    def test_chatPush(self) -> None:
        """
        The demo's C{onChat} push is the byte example of research/pomelo.md §1.7.
        """
        self.assertEqual(self.protos.server["onChat"].dumps({"msg": "hi", "from": "bob", "target": "*"}),
                         bytes.fromhex("0a 02 68 69 12 03 62 6f 62 1a 01 2a"))


def expected_value(value: dict[str, Any]) -> dict[str, Any]:
    """
    C{value} as it comes back: keys outside L{SCHEMAS} and empty arrays
    dropped, floats as 32-bit floats.
    """
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key == "unknown" or item == []:
            continue
        if key in ("f", "rf"):
            item = [struct.unpack("<f", struct.pack("<f", x))[0] for x in item] if key == "rf" else \
                struct.unpack("<f", struct.pack("<f", item))[0]
        elif isinstance(item, dict):
            item = expected_value(item)
        elif isinstance(item, list) and item and isinstance(item[0], dict):
            item = [expected_value(x) for x in item]
        out[key] = item
    return out


class BadInputTests(SynchronousTestCase):
    """
    Bytes and values that do not fit a schema raise L{ProtobufError} with a
    sentence naming what is wrong, and nothing else.
    """

    def setUp(self) -> None:
        self.protos = Protos.build({}, SCHEMAS)
        self.chat = self.protos.server["onChat"]
        self.all = self.protos.server["area.all"]

    def assertBad(self, codec: Any, data: bytes, message: str) -> None:
        error = self.assertRaises(ProtobufError, codec.loads, data)
        self.assertEqual(str(error), message)

    def test_wrongWireType(self) -> None:
        """
        A field sent with a wire type other than its type's.
        """
        self.assertBad(self.chat, bytes.fromhex("0802"), "onChat: field 'msg': wire type 0, expected 2")
        self.assertBad(self.all, bytes.fromhex("0a01"), "area.all: field 'u32': wire type 2, expected 0")

    def test_lengthPastTheEnd(self) -> None:
        """
        A string, a nested message or a packed count longer than what is left.
        """
        self.assertBad(self.chat, bytes.fromhex("0a0568"), "onChat: field 'msg': length past the end")
        self.assertBad(self.all, bytes.fromhex("52050a01"), "area.all: field 'item': length past the end")
        self.assertBad(self.all, bytes.fromhex("600501"), "area.all: field 'ru': length past the end")
        self.assertBad(self.all, bytes.fromhex("3500"), "area.all: field 'f': length past the end")

    def test_unknownFieldNumber(self) -> None:
        """
        A field number the schema does not have.
        """
        self.assertBad(self.chat, bytes.fromhex("2001"), "onChat: unknown field number 4")

    def test_truncatedVarint(self) -> None:
        """
        A varint cut short, and one longer than 10 bytes.
        """
        self.assertBad(self.all, bytes.fromhex("0880"), "area.all: truncated varint")
        self.assertBad(self.all, bytes.fromhex("08" + "ff" * 11 + "01"), "area.all: varint longer than 10 bytes")

    def test_badContent(self) -> None:
        """
        A string that is not UTF-8, a float that is not finite, a required
        field missing, in a nested message too.
        """
        self.assertBad(self.chat, bytes.fromhex("0a01ff"), "onChat: field 'msg' is not UTF-8")
        self.assertBad(self.all, bytes.fromhex("350000c07f"), "area.all: field 'f' is not a finite number")
        self.assertBad(self.chat, bytes.fromhex("0a0168"), "onChat: field 'from' is required")
        self.assertBad(self.all, bytes.fromhex("5200"), "area.all: field 'name' is required")

    def test_badValues(self) -> None:
        """
        Values the schema cannot carry are refused when encoding.
        """
        for codec, value, message in [
            (self.chat, {"msg": "hi"}, "onChat: field 'from' is required"),
            (self.chat, {"msg": 1, "from": "", "target": ""}, "onChat: field 'msg' is not a string"),
            (self.chat, {"msg": None, "from": "", "target": ""}, "onChat: field 'msg' is null"),
            (self.chat, ["hi"], "onChat: the body is not an object"),
            (self.all, {"u32": -1}, "area.all: field 'u32' is out of range"),
            (self.all, {"u64": 2 ** 64}, "area.all: field 'u64' is out of range"),
            (self.all, {"s32": "1"}, "area.all: field 's32' is not a number"),
            (self.all, {"d": float("nan")}, "area.all: field 'd' is not a finite number"),
            (self.all, {"ru": 3}, "area.all: field 'ru' is not an array"),
            (self.all, {"item": "x"}, "area.all: field 'item' is not an object"),
            (self.all, {"items": [{}]}, "area.all: field 'name' is required"),
        ]:
            error = self.assertRaises(ProtobufError, codec.dumps, value)
            self.assertEqual(str(error), message)

    def test_enums(self) -> None:
        """
        Subclasses of C{int} and C{str} (an C{IntEnum}, a C{StrEnum}), which
        JSON writes as their values, encode as those values; a C{bool} is
        not a number, as in npm's encoder.
        """
        class Level(IntEnum):
            HIGH = 300

        class Kind(StrEnum):
            SWORD = "sword"

        value = {"u32": Level.HIGH, "s32": Level.HIGH, "d": Level.HIGH, "s": Kind.SWORD, "ru": [Level.HIGH]}
        plain = {"u32": 300, "s32": 300, "d": 300, "s": "sword", "ru": [300]}
        self.assertEqual(self.all.dumps(value), self.all.dumps(plain))
        for key in ("u32", "s32", "d"):
            error = self.assertRaises(ProtobufError, self.all.dumps, {key: True})
            self.assertIn(f"field {key!r} is not a", str(error))

    def test_tooDeep(self) -> None:
        """
        A self-nesting schema: bytes nested deeper than Python recurses are an error, not a crash.
        """
        codec = Protos.build({}, {"message Node": {"optional Node child": 1}, "tree": {"optional Node root": 1}})
        data = b"\x0a\x00"
        for _ in range(3000):
            size = len(data)
            length = bytes([size & 0x7F | 0x80, size >> 7]) if size >= 128 else bytes([size])
            data = b"\x0a" + length + data
        error = self.assertRaises(ProtobufError, codec.server["tree"].loads, data)
        self.assertEqual(str(error), "tree: the body is nested too deeply")


class SchemaTests(SynchronousTestCase):
    """
    Schemas that cannot be compiled, and the files they come from.
    """

    def test_badSchemas(self) -> None:
        """
        Each mistake is one sentence naming the route and the key.
        """
        for protos, message in [
            ([], "protos are not a JSON object"),
            ({"r": []}, "r: not a JSON object"),
            ({"r": {"required msg": 1}}, "r: 'required msg' is neither '<option> <type> <name>' nor 'message <Name>'"),
            ({"r": {"needed string msg": 1}},
             "r: 'needed string msg' is neither '<option> <type> <name>' nor 'message <Name>'"),
            ({"r": {"required string msg": "1"}}, "r: 'required string msg' has tag '1', not a whole number from 1"),
            ({"r": {"required string msg": 0}}, "r: 'required string msg' has tag 0, not a whole number from 1"),
            ({"r": {"required string a": 1, "optional uInt32 b": 1}}, "r: 'optional uInt32 b' repeats a tag or a name"),
            ({"r": {"required Thing a": 1}}, "r: field 'a' has unknown type 'Thing'"),
            ({"r": {"message A": {"required B b": 1}, "message B": {}, "optional A a": 1}},
             "r.A: field 'b' has unknown type 'B'"),
        ]:
            error = self.assertRaises(ProtobufError, Protos.build, {}, protos)
            self.assertEqual(str(error), message)

    def test_scope(self) -> None:
        """
        As in Pomelo, a message type is looked up in the message that uses
        it, then among the top-level C{message} entries.
        """
        protos = Protos.build({}, {"message B": {"required uInt32 n": 1},
                                   "r": {"message A": {"required B b": 1}, "optional A a": 1}})
        self.assertEqual(protos.server["r"].loads(protos.server["r"].dumps({"a": {"b": {"n": 5}}})),
                         {"a": {"b": {"n": 5}}})

    def test_loadDir(self) -> None:
        """
        L{load_dir} reads both files; a missing one is empty; neither, or a
        bad one, is an error naming the file.
        """
        path = FilePath(self.mktemp())
        path.makedirs()
        error = self.assertRaises(ProtobufError, load_dir, path.path)
        self.assertEqual(str(error), f"{path.path} has neither clientProtos.json nor serverProtos.json")
        path.child("serverProtos.json").setContent(json.dumps(CHAT).encode())
        protos = load_dir(path.path)
        self.assertEqual((list(protos.client), list(protos.server)), ([], ["onChat"]))
        self.assertEqual(protos.version, Protos.build({}, CHAT).version)
        path.child("clientProtos.json").setContent(b"{nope")
        error = self.assertRaises(ProtobufError, load_dir, path.path)
        self.assertTrue(str(error).startswith(path.child("clientProtos.json").path + ": Expecting"), str(error))
        path.child("clientProtos.json").setContent(b'{"r": {"required Thing a": 1}}')
        error = self.assertRaises(ProtobufError, load_dir, path.path)
        self.assertEqual(str(error), path.child("clientProtos.json").path + ": r: field 'a' has unknown type 'Thing'")

    def test_chatExample(self) -> None:
        """
        The chat example's schemas load, and give the byte examples of
        doc/protocol.md: a C{chat.chatHandler.send} request body and the
        C{onChat} push of research/pomelo.md §1.7.
        """
        protos = load_dir(os.path.join(os.path.dirname(INTEROP), "..", "examples", "chat", "config"))
        self.assertEqual(protos.client["chat.chatHandler.send"].dumps({"content": "hi", "target": "*"}),
                         bytes.fromhex("0a 02 68 69 12 01 2a"))
        self.assertEqual(protos.server["onChat"].dumps({"msg": "hi", "from": "bob", "target": "*"}),
                         bytes.fromhex("0a 02 68 69 12 03 62 6f 62 1a 01 2a"))

    def test_parseKeepsJavaScriptOrder(self) -> None:
        """
        Integer-like keys come first, ascending, as in a JavaScript object.
        """
        self.assertEqual(list(parse({"b": {}, "10": {}, "2": {}, "a": {}})), ["2", "10", "b", "a"])


# The property test: random schemas, values and bytes.

TYPES = {
    "uInt32": st.integers(0, 2 ** 32 - 1), "uInt64": st.integers(0, 2 ** 64 - 1),
    "sInt32": st.integers(-2 ** 31, 2 ** 31 - 1), "sInt64": st.integers(-2 ** 63, 2 ** 63 - 1),
    "int32": st.integers(-2 ** 31, 2 ** 31 - 1), "bool": st.booleans(), "string": st.text(max_size=20),
    "float": st.floats(width=32, allow_nan=False, allow_infinity=False),
    "double": st.floats(allow_nan=False, allow_infinity=False),
}


@st.composite
def schemas(draw: Any, depth: int = 0) -> dict[str, Any]:
    """
    A random message schema: up to six fields of random types and options,
    and up to one nested message (two levels deep at most) its fields may use.
    """
    count = draw(st.integers(0, 6))
    names = draw(st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,5}", fullmatch=True), min_size=count, max_size=count,
                          unique=True))
    tags = draw(st.lists(st.integers(1, 3000), min_size=count, max_size=count, unique=True))
    schema: dict[str, Any] = {}
    kinds = list(TYPES)
    if depth < 2 and draw(st.booleans()):
        schema[f"message M{depth}"] = draw(schemas(depth + 1))
        kinds.append(f"M{depth}")
    for name, tag in zip(names, tags):
        option = draw(st.sampled_from(["required", "optional", "repeated"]))
        schema[f"{option} {draw(st.sampled_from(kinds))} {name}"] = tag
    return schema


@st.composite
def values(draw: Any, schema: dict[str, Any]) -> dict[str, Any]:
    """
    A random value of C{schema}: every required field, some optional ones,
    repeated ones with zero to three elements, in a random order.
    """
    value: dict[str, Any] = {}
    for key in draw(st.permutations([key for key in schema if not key.startswith("message ")])):
        option, kind, name = key.split(" ")
        if option == "optional" and not draw(st.booleans()):
            continue

        def one() -> Any:
            return draw(values(schema[f"message {kind}"]) if kind.startswith("M") else TYPES[kind])
        value[name] = [one() for _ in range(draw(st.integers(0, 3)))] if option == "repeated" else one()
    return value


def sent(value: Any) -> Any:
    """
    What comes back of a value: empty arrays are not sent.
    """
    if isinstance(value, dict):
        return {key: sent(item) for key, item in value.items() if item != []}
    if isinstance(value, list):
        return [sent(item) for item in value]
    return value


class PropertyTests(SynchronousTestCase):
    """
    Random values under random schemas round-trip; random bytes under a
    schema decode or raise L{ProtobufError}, nothing else.
    """

    @settings(max_examples=300, deadline=None, database=None)
    @given(st.data())
    def test_roundTrip(self, data: Any) -> None:
        schema = data.draw(schemas())
        codec = Protos.build({}, {"r": schema}).server["r"]
        value = data.draw(values(schema))
        self.assertEqual(codec.loads(codec.dumps(value)), sent(value))

    @settings(max_examples=500, deadline=None, database=None)
    @given(st.data())
    def test_randomBytes(self, data: Any) -> None:
        schema = data.draw(schemas())
        codec = Protos.build({}, {"r": schema}).server["r"]
        garbage = data.draw(st.binary(max_size=64))
        try:
            result = codec.loads(garbage)
        except ProtobufError:
            return
        self.assertIsInstance(result, dict)
