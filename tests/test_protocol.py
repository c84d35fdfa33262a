"""
Tests for L{gamenet.protocol}, the pure Pomelo wire codec.

The golden byte strings come from the Pomelo reference implementation
(npm C{pomelo-protocol} 0.1.6) and are written out literally, so that these
tests check the wire format itself and not only that encode and decode agree.
"""

import base64
import hashlib
import json
import random
import zlib

from twisted.trial.unittest import SynchronousTestCase

from gamenet.protocol import ProtocolError, handshake, message, package, routes, serializer
from gamenet.protocol.message import Message

# Bodies used by the golden examples.
ENTER_ROUTE = b"connector.entryHandler.enter"
ENTER_BODY = b'{"username":"bob","rid":"r1"}'
CHAT_BODY = b'{"msg":"hi","from":"bob","target":"*"}'
RESPONSE_BODY = b'{"code":200}'
SEND_ROUTE = b"chat.chatHandler.send"
KICK_BODY = b'{"reason":"kick"}'
POMELO_HANDSHAKE = b'{"sys":{"type":"js-websocket","version":"0.0.1","rsa":{},"protoVersion":0}}'
PITAYA_HANDSHAKE = (
    b'{"sys":{"platform":"mac","libVersion":"0.3.5-release",'
    b'"clientBuildNumber":"20","clientVersion":"2.1"},"user":{"age":30}}'
)

# Known bug: message._inflate accepts a zlib stream that never ends.
CHAT_DEMO_HANDLERS = [
    "gate.gateHandler.queryEntry",
    "connector.entryHandler.enter",
    "chat.chatHandler.send",
]


def h(text):
    """
    @param text: hexadecimal digits, spaces allowed.
    @return: the bytes they spell.
    """
    return bytes.fromhex(text)


def decode_one(data, code_to_route=None):
    """
    Decode one whole DATA package.

    @param data: the package bytes, head included.
    @param code_to_route: the route dictionary, or C{None} for an empty one.
    @return: the decoded L{Message}.
    """
    packages = package.PackageDecoder().feed(data)
    assert len(packages) == 1, packages
    package_type, body = packages[0]
    assert package_type == package.DATA, package_type
    return message.decode(body, code_to_route or {})


class GoldenDataPackageTests(SynchronousTestCase):
    """
    DATA packages are byte for byte those of the Pomelo reference, both ways.
    """

    def test_requestUncompressedRoute(self):
        """
        A request with id 1 and a spelled-out route encodes to the reference
        bytes, and those bytes decode to the same request.
        """
        expected = h("04 00 00 3c 00 01 1c") + ENTER_ROUTE + ENTER_BODY
        encoded = package.encode(
            package.DATA,
            message.encode(message.REQUEST, 1, "connector.entryHandler.enter", ENTER_BODY),
        )
        self.assertEqual(encoded, expected)
        self.assertEqual(
            decode_one(expected),
            Message(message.REQUEST, 1, "connector.entryHandler.enter", ENTER_BODY, False, False),
        )

    def test_requestCompressedRouteLargeId(self):
        """
        A request with id 300 and route code 5 encodes the id as the varint
        C{ac 02} and the code as two big-endian bytes, and decodes back.
        """
        expected = h("04 00 00 07 01 ac 02 00 05 7b 7d")
        encoded = package.encode(
            package.DATA,
            message.encode(message.REQUEST, 300, "connector.entryHandler.enter", b"{}", route_code=5),
        )
        self.assertEqual(encoded, expected)
        self.assertEqual(
            decode_one(expected, {5: "connector.entryHandler.enter"}),
            Message(message.REQUEST, 300, "connector.entryHandler.enter", b"{}", True, False),
        )

    def test_pushUncompressedRoute(self):
        """
        A push on C{onChat} encodes to the reference bytes with both
        L{message.encode_push} and L{message.encode}, and decodes back.
        """
        expected = h("04 00 00 2e 06 06 6f 6e 43 68 61 74") + CHAT_BODY
        self.assertEqual(
            package.encode(package.DATA, message.encode_push("onChat", CHAT_BODY)), expected
        )
        self.assertEqual(
            package.encode(package.DATA, message.encode(message.PUSH, route="onChat", body=CHAT_BODY)),
            expected,
        )
        self.assertEqual(
            decode_one(expected), Message(message.PUSH, 0, "onChat", CHAT_BODY, False, False)
        )

    def test_pushCompressedRoute(self):
        """
        The same push with route code 6 encodes to the reference bytes and
        decodes back to C{onChat}.
        """
        expected = h("04 00 00 29 07 00 06") + CHAT_BODY
        self.assertEqual(
            package.encode(package.DATA, message.encode_push("onChat", CHAT_BODY, route_code=6)),
            expected,
        )
        self.assertEqual(
            package.encode(
                package.DATA,
                message.encode(message.PUSH, route="onChat", body=CHAT_BODY, route_code=6),
            ),
            expected,
        )
        self.assertEqual(
            decode_one(expected, {6: "onChat"}),
            Message(message.PUSH, 0, "onChat", CHAT_BODY, True, False),
        )

    def test_response(self):
        """
        A response to request 1 encodes to the reference bytes with both
        L{message.encode_response} and L{message.encode}, and decodes back
        with no route.
        """
        expected = h("04 00 00 0e 04 01 7b 22 63 6f 64 65 22 3a 32 30 30 7d")
        self.assertEqual(expected[6:], RESPONSE_BODY)
        self.assertEqual(
            package.encode(package.DATA, message.encode_response(1, RESPONSE_BODY)), expected
        )
        self.assertEqual(
            package.encode(package.DATA, message.encode(message.RESPONSE, 1, body=RESPONSE_BODY)),
            expected,
        )
        self.assertEqual(
            decode_one(expected), Message(message.RESPONSE, 1, "", RESPONSE_BODY, False, False)
        )

    def test_notify(self):
        """
        A notify has no id: it encodes to the reference bytes and decodes
        with id 0.
        """
        expected = h("04 00 00 19 02 15") + SEND_ROUTE + h("7b 7d")
        self.assertEqual(
            package.encode(
                package.DATA, message.encode(message.NOTIFY, route="chat.chatHandler.send", body=b"{}")
            ),
            expected,
        )
        self.assertEqual(
            decode_one(expected),
            Message(message.NOTIFY, 0, "chat.chatHandler.send", b"{}", False, False),
        )


class GoldenControlPackageTests(SynchronousTestCase):
    """
    Heartbeat, handshake and kick packages match the Pomelo reference, both ways.
    """

    def test_heartbeat(self):
        """
        A heartbeat is C{03 00 00 00}, and the prebuilt constant agrees.
        """
        expected = h("03 00 00 00")
        self.assertEqual(package.encode(package.HEARTBEAT), expected)
        self.assertEqual(package.HEARTBEAT_PACKAGE, expected)
        self.assertEqual(package.PackageDecoder().feed(expected), [(package.HEARTBEAT, b"")])

    def test_handshakeAck(self):
        """
        A handshake ACK is C{02 00 00 00}, and the prebuilt constant agrees.
        """
        expected = h("02 00 00 00")
        self.assertEqual(package.encode(package.HANDSHAKE_ACK), expected)
        self.assertEqual(package.HANDSHAKE_ACK_PACKAGE, expected)
        self.assertEqual(package.PackageDecoder().feed(expected), [(package.HANDSHAKE_ACK, b"")])

    def test_kick(self):
        """
        A kick with a JSON reason is C{05 00 00 11} and the 17-byte body.
        """
        expected = h("05 00 00 11") + KICK_BODY
        self.assertEqual(package.encode(package.KICK, serializer.dumps({"reason": "kick"})), expected)
        self.assertEqual(package.PackageDecoder().feed(expected), [(package.KICK, KICK_BODY)])

    def test_pomeloClientHandshake(self):
        """
        The Pomelo JS client's handshake is a 75-byte body under head
        C{01 00 00 4b}; it parses as a Pomelo (not Pitaya) client.
        """
        expected = h("01 00 00 4b") + POMELO_HANDSHAKE
        self.assertEqual(len(POMELO_HANDSHAKE), 75)
        self.assertEqual(package.encode(package.HANDSHAKE, POMELO_HANDSHAKE), expected)
        [(package_type, body)] = package.PackageDecoder().feed(expected)
        self.assertEqual(package_type, package.HANDSHAKE)
        self.assertEqual(body, POMELO_HANDSHAKE)
        request = handshake.parse_request(body)
        self.assertEqual(request.client_type, "js-websocket")
        self.assertEqual(request.client_version, "0.0.1")
        self.assertIs(request.pitaya, False)
        self.assertIsNone(request.dict_version)
        self.assertIsNone(request.user)


class VarintTests(SynchronousTestCase):
    """
    Message ids are base-128 varints, least significant group first.
    """

    def assertId(self, id, expected):
        """
        Assert that request id C{id} encodes as C{expected} and decodes back.

        @param id: the message id.
        @param expected: its varint bytes.
        """
        self.assertEqual(message.encode_varint(id), expected)
        encoded = message.encode(message.REQUEST, id, "a", b"x")
        self.assertEqual(encoded, b"\x00" + expected + b"\x01ax")
        self.assertEqual(message.decode(encoded, {}).id, id)
        response = message.encode_response(id, b"x")
        self.assertEqual(response, b"\x04" + expected + b"x")
        self.assertEqual(message.decode(response, {}).id, id)

    def test_one(self):
        """
        Id 1 is the single byte C{01}.
        """
        self.assertId(1, h("01"))

    def test_zero(self):
        """
        Id 0 is the single byte C{00}.
        """
        self.assertId(0, h("00"))

    def test_largestOneByte(self):
        """
        Id 127 still fits one byte, C{7f}.
        """
        self.assertId(127, h("7f"))

    def test_smallestTwoBytes(self):
        """
        Id 128 takes two bytes, C{80 01}.
        """
        self.assertId(128, h("80 01"))

    def test_300(self):
        """
        Id 300 is C{ac 02}, as in the Pomelo reference.
        """
        self.assertId(300, h("ac 02"))

    def test_threeBytes(self):
        """
        Ids 16383 and 16384 sit on both sides of the two-byte limit.
        """
        self.assertId(16383, h("ff 7f"))
        self.assertId(16384, h("80 80 01"))

    def test_largeId(self):
        """
        A large id (2**32 - 1) round-trips through five bytes.
        """
        self.assertId(2**32 - 1, h("ff ff ff ff 0f"))

    def test_largestAcceptedId(self):
        """
        The largest id that fits the five bytes the decoder accepts round-trips.
        """
        self.assertId(2**35 - 1, h("ff ff ff ff 7f"))

    def test_tooLong(self):
        """
        An id of more than five bytes is a L{ProtocolError}.
        """
        data = b"\x00" + h("80 80 80 80 80 01") + b"\x01a"
        error = self.assertRaises(ProtocolError, message.decode, data, {})
        self.assertEqual(str(error), "message id too long")

    def test_encodeTooLarge(self):
        """
        Encoding an id the decoder would refuse raises L{ValueError}.
        """
        self.assertRaises(ValueError, message.encode_varint, 2**35)
        self.assertRaises(ValueError, message.encode_varint, -1)


class PackageEncodeTests(SynchronousTestCase):
    """
    L{package.encode} frames a body under a 4-byte head.
    """

    def test_lengthIsBigEndian(self):
        """
        The length takes three big-endian bytes.
        """
        body = b"x" * 0x010203
        self.assertEqual(package.encode(package.DATA, body)[:4], h("04 01 02 03"))

    def test_largestBody(self):
        """
        A body of exactly C{MAX_BODY} bytes fits, with length C{ff ff ff}.
        """
        encoded = package.encode(package.DATA, bytes(package.MAX_BODY))
        self.assertEqual(encoded[:4], h("04 ff ff ff"))
        self.assertEqual(len(encoded), package.MAX_BODY + 4)

    def test_bodyTooLarge(self):
        """
        A body longer than a 3-byte length can say is a L{ValueError}.
        """
        self.assertRaises(ValueError, package.encode, package.DATA, bytes(package.MAX_BODY + 1))

    def test_typeName(self):
        """
        Package types have readable names; unknown ones show their hex value.
        """
        self.assertEqual(
            [package.type_name(t) for t in range(1, 6)],
            ["handshake", "handshake-ack", "heartbeat", "data", "kick"],
        )
        self.assertEqual(package.type_name(0x06), "unknown(0x06)")


class PackageDecoderTests(SynchronousTestCase):
    """
    L{package.PackageDecoder} gives the same packages however the bytes are split.
    """

    def setUp(self):
        self.packages = [
            (package.HANDSHAKE, POMELO_HANDSHAKE),
            (package.HANDSHAKE_ACK, b""),
            (package.DATA, message.encode(message.REQUEST, 1, ENTER_ROUTE.decode(), ENTER_BODY)),
            (package.HEARTBEAT, b""),
            (package.DATA, message.encode_push("onChat", CHAT_BODY, route_code=6)),
            (package.DATA, bytes(range(256)) * 5),
            (package.KICK, KICK_BODY),
        ]
        self.stream = b"".join(package.encode(t, body) for t, body in self.packages)
        # The offsets at which each package ends.
        self.boundaries = []
        end = 0
        for _, body in self.packages:
            end += package.HEAD_SIZE + len(body)
            self.boundaries.append(end)

    def expectedPending(self, fed):
        """
        @param fed: how many bytes of C{self.stream} have been fed.
        @return: how many of them a decoder should still hold.
        """
        last = max([0] + [b for b in self.boundaries if b <= fed])
        return fed - last

    def feedChunks(self, chunks):
        """
        Feed C{chunks} to a new decoder, checking C{pending} after each one.

        @param chunks: byte strings that join to C{self.stream}.
        @return: every package the decoder gave.
        """
        decoder = package.PackageDecoder()
        result = []
        fed = 0
        for chunk in chunks:
            result.extend(decoder.feed(chunk))
            fed += len(chunk)
            self.assertEqual(decoder.pending, self.expectedPending(fed))
        self.assertEqual(decoder.pending, 0)
        return result

    def test_wholeStream(self):
        """
        Several packages in one chunk all come out, in order.
        """
        self.assertEqual(self.feedChunks([self.stream]), self.packages)

    def test_oneByteAtATime(self):
        """
        Feeding one byte at a time gives exactly the packages feeding the
        whole stream gives.
        """
        chunks = [self.stream[i : i + 1] for i in range(len(self.stream))]
        self.assertEqual(self.feedChunks(chunks), self.packages)

    def test_randomSplits(self):
        """
        Splitting the stream at random points never changes the packages.
        """
        rng = random.Random(20240601)
        size = len(self.stream)
        for _ in range(400):
            cuts = sorted(rng.sample(range(1, size), rng.randint(0, 20)))
            bounds = [0, *cuts, size]
            chunks = [self.stream[a:b] for a, b in zip(bounds, bounds[1:])]
            self.assertEqual(self.feedChunks(chunks), self.packages)

    def test_emptyFeed(self):
        """
        Feeding no bytes gives no packages and keeps what is held.
        """
        decoder = package.PackageDecoder()
        self.assertEqual(decoder.feed(b""), [])
        self.assertEqual(decoder.feed(b"\x04\x00"), [])
        self.assertEqual(decoder.feed(b""), [])
        self.assertEqual(decoder.pending, 2)

    def test_pendingHoldsPartialHeadAndBody(self):
        """
        C{pending} counts a partial head, then a head with part of its body,
        and drops to zero when the package completes.
        """
        decoder = package.PackageDecoder()
        self.assertEqual(decoder.pending, 0)
        self.assertEqual(decoder.feed(h("04 00")), [])
        self.assertEqual(decoder.pending, 2)
        self.assertEqual(decoder.feed(h("00 03 aa")), [])
        self.assertEqual(decoder.pending, 5)
        self.assertEqual(decoder.feed(h("bb cc 03 00")), [(package.DATA, h("aa bb cc"))])
        self.assertEqual(decoder.pending, 2)
        self.assertEqual(decoder.feed(h("00 00")), [(package.HEARTBEAT, b"")])
        self.assertEqual(decoder.pending, 0)

    def test_bodyOfMaxBody(self):
        """
        A body of exactly C{max_body} bytes is accepted.
        """
        decoder = package.PackageDecoder(max_body=16)
        self.assertEqual(decoder.feed(h("04 00 00 10") + bytes(16)), [(package.DATA, bytes(16))])

    def test_defaultMaxBody(self):
        """
        By default the largest length a head can declare is accepted and
        the decoder waits for its body.
        """
        decoder = package.PackageDecoder()
        self.assertEqual(decoder.max_body, package.MAX_BODY)
        self.assertEqual(decoder.feed(h("04 ff ff ff 00")), [])
        self.assertEqual(decoder.pending, 5)

    def test_bodiesAreBytes(self):
        """
        Bodies come out as C{bytes}, also when split across feeds.
        """
        decoder = package.PackageDecoder()
        decoder.feed(h("04 00 00 02 aa"))
        [(_, body)] = decoder.feed(h("bb"))
        self.assertIsInstance(body, bytes)
        self.assertEqual(body, h("aa bb"))


class PackageDecoderRejectionTests(SynchronousTestCase):
    """
    L{package.PackageDecoder} rejects bad type bytes and oversized lengths.
    """

    def assertBadType(self, type_byte):
        """
        Assert that a package with C{type_byte} is a L{ProtocolError} naming it.

        @param type_byte: the package type byte.
        """
        decoder = package.PackageDecoder()
        error = self.assertRaises(ProtocolError, decoder.feed, bytes((type_byte, 0, 0, 0)))
        self.assertEqual(str(error), f"bad package type 0x{type_byte:02x}")

    def test_typeZero(self):
        """
        Type byte C{0x00} is rejected.
        """
        self.assertBadType(0x00)

    def test_typeSix(self):
        """
        Type byte C{0x06}, just past KICK, is rejected.
        """
        self.assertBadType(0x06)

    def test_typeFF(self):
        """
        Type byte C{0xff} is rejected.
        """
        self.assertBadType(0xFF)

    def test_badTypeAfterGoodPackage(self):
        """
        A bad type byte following a good package in the same chunk is rejected.
        """
        decoder = package.PackageDecoder()
        error = self.assertRaises(
            ProtocolError, decoder.feed, package.HEARTBEAT_PACKAGE + h("06 00 00 00")
        )
        self.assertEqual(str(error), "bad package type 0x06")

    def test_tooLongRejectedOnHead(self):
        """
        A declared length over C{max_body} is rejected as soon as the 4-byte
        head arrives, before any body.
        """
        decoder = package.PackageDecoder(max_body=16)
        error = self.assertRaises(ProtocolError, decoder.feed, h("04 00 00 11"))
        self.assertEqual(str(error), "data package of 17 bytes exceeds the limit of 16")

    def test_tooLongRejectedOnLastHeadByte(self):
        """
        A head split across feeds is rejected on the feed that completes it.
        """
        decoder = package.PackageDecoder(max_body=16)
        self.assertEqual(decoder.feed(h("01")), [])
        self.assertEqual(decoder.feed(h("ff")), [])
        self.assertEqual(decoder.feed(h("ff")), [])
        error = self.assertRaises(ProtocolError, decoder.feed, h("ff"))
        self.assertEqual(str(error), "handshake package of 16777215 bytes exceeds the limit of 16")

    def test_tooLongAfterGoodPackage(self):
        """
        An oversized package following a good one in the same chunk is rejected.
        """
        decoder = package.PackageDecoder(max_body=4)
        self.assertRaises(
            ProtocolError, decoder.feed, package.encode(package.KICK, b"ok") + h("05 00 01 00")
        )

    def test_isValueError(self):
        """
        L{ProtocolError} is a L{ValueError}, so callers catching bad input catch it.
        """
        self.assertTrue(issubclass(ProtocolError, ValueError))


class MessageEncodeTests(SynchronousTestCase):
    """
    L{message.encode} and its shortcuts build message flags, ids and routes.
    """

    def test_routeCodeBigEndian(self):
        """
        A route code takes two big-endian bytes, up to C{ff ff}.
        """
        self.assertEqual(message.encode_push("r", b"", route_code=0x0102), h("07 01 02"))
        self.assertEqual(message.encode_push("r", b"", route_code=0xFFFF), h("07 ff ff"))
        self.assertEqual(message.decode(h("07 ff ff"), {0xFFFF: "r"}).route, "r")

    def test_routeLengthInBytes(self):
        """
        A non-ASCII route's length counts UTF-8 bytes, and it decodes back.
        """
        route = "聊天.send"
        encoded = message.encode(message.NOTIFY, route=route)
        self.assertEqual(encoded, bytes((0x02, 11)) + route.encode("utf-8"))
        self.assertEqual(message.decode(encoded, {}).route, route)

    def test_longestRoute(self):
        """
        A 255-byte route fits and round-trips.
        """
        route = "r" * 255
        encoded = message.encode(message.NOTIFY, route=route)
        self.assertEqual(encoded[:2], h("02 ff"))
        self.assertEqual(message.decode(encoded, {}).route, route)

    def test_routeTooLong(self):
        """
        A route over 255 bytes is a L{ValueError}, for every kind of message.
        """
        route = "r" * 256
        self.assertRaises(ValueError, message.encode, message.NOTIFY, route=route)
        self.assertRaises(ValueError, message.encode, message.REQUEST, 1, route)
        self.assertRaises(ValueError, message.encode_push, route, b"")

    def test_notifyIgnoresId(self):
        """
        A notify carries no id even when one is given.
        """
        self.assertEqual(message.encode(message.NOTIFY, 5, "a", b"x"), h("02 01 61 78"))

    def test_responseIgnoresRoute(self):
        """
        A response carries no route even when one is given.
        """
        self.assertEqual(
            message.encode(message.RESPONSE, 1, "a.b.c", b"x", route_code=3), h("04 01 78")
        )

    def test_errorResponse(self):
        """
        An error response sets bit C{0x20}, both shortcut and general encoders,
        short and long ids.
        """
        for id in (1, 300):
            expected = bytes((0x24,)) + message.encode_varint(id) + b"{}"
            self.assertEqual(message.encode_response(id, b"{}", error=True), expected)
            self.assertEqual(message.encode(message.RESPONSE, id, body=b"{}", error=True), expected)

    def test_encodeResponseMatchesEncode(self):
        """
        L{message.encode_response} gives the same bytes as L{message.encode}
        on both sides of the one-byte id limit.
        """
        for id in (0, 1, 127, 128, 300, 2**20):
            self.assertEqual(
                message.encode_response(id, b"body"),
                message.encode(message.RESPONSE, id, body=b"body"),
            )

    def test_responsePackage(self):
        """
        L{message.response_package} gives the bytes of a whole DATA package
        holding L{message.encode_response}'s response, for ids of one, two
        and more bytes, with and without the error bit, and refuses what
        they refuse with the same L{ValueError}.
        """
        for id in (0, 1, 127, 128, 300, 16383, 16384, 2**20, 2**35 - 1):
            for body in (b"", b"{}", b"x" * 300):
                for error in (False, True):
                    self.assertEqual(message.response_package(id, body, error),
                                     package.encode(package.DATA, message.encode_response(id, body, error)))
        for id in (-1, 2**35):
            expected = self.assertRaises(ValueError, message.encode_response, id, b"{}")
            self.assertEqual(str(self.assertRaises(ValueError, message.response_package, id, b"{}")), str(expected))
        # The largest body each id length leaves room for, and one byte more.
        for id, room in ((5, package.MAX_BODY - 2), (300, package.MAX_BODY - 3), (20000, package.MAX_BODY - 4)):
            self.assertEqual(len(message.response_package(id, b"x" * room)), package.HEAD_SIZE + package.MAX_BODY)
            error = self.assertRaises(ValueError, message.response_package, id, b"x" * (room + 1))
            self.assertEqual(str(error), f"package body of {package.MAX_BODY + 1} bytes exceeds {package.MAX_BODY}")

    def test_requestsByCodeDecode(self):
        """
        Requests by route code, the clients' common message, decode to their
        id, route and body on both sides of the one- and two-byte id limits,
        with empty bodies too.
        """
        routes = {1: "a.b.c", 0x0102: "d.e.f"}
        for id in (0, 1, 127, 128, 300, 16383, 16384, 2**20):
            for code, route in routes.items():
                for body in (b"", b"{}"):
                    encoded = message.encode(message.REQUEST, id, route, body, route_code=code)
                    self.assertEqual(message.decode(encoded, routes),
                                     Message(message.REQUEST, id, route, body, True, False))

    def test_typeName(self):
        """
        Message types have readable names; unknown ones show their number.
        """
        self.assertEqual(
            [message.type_name(t) for t in range(4)], ["request", "notify", "response", "push"]
        )
        self.assertEqual(message.type_name(5), "unknown(5)")


class MessageDecodeRejectionTests(SynchronousTestCase):
    """
    L{message.decode} rejects malformed messages with a L{ProtocolError}
    whose message says what is wrong.
    """

    def assertRejected(self, data, reason, code_to_route=None):
        """
        Assert that decoding C{data} is a L{ProtocolError} saying C{reason}.

        @param data: a message (the body of a DATA package).
        @param reason: the expected error message.
        @param code_to_route: the route dictionary, or C{None} for an empty one.
        """
        error = self.assertRaises(ProtocolError, message.decode, data, code_to_route or {})
        self.assertEqual(str(error), reason)

    def test_empty(self):
        """
        An empty message is rejected.
        """
        self.assertRejected(b"", "empty message")

    def test_truncatedIdMissing(self):
        """
        A request or response with no id byte at all is rejected.
        """
        self.assertRejected(h("00"), "truncated message id")
        self.assertRejected(h("04"), "truncated message id")

    def test_truncatedIdContinued(self):
        """
        An id whose last byte says more follows is rejected.
        """
        self.assertRejected(h("00 ac"), "truncated message id")
        self.assertRejected(h("04 80 80"), "truncated message id")

    def test_truncatedRouteLength(self):
        """
        A request or notify that ends before its route length is rejected.
        """
        self.assertRejected(h("00 01"), "truncated route length")
        self.assertRejected(h("02"), "truncated route length")
        self.assertRejected(h("06"), "truncated route length")

    def test_truncatedRoute(self):
        """
        A route shorter than its declared length is rejected.
        """
        self.assertRejected(h("02 05") + b"abc", "truncated route")
        self.assertRejected(h("00 01 01"), "truncated route")

    def test_truncatedRouteCode(self):
        """
        A compressed route with fewer than two code bytes is rejected.
        """
        self.assertRejected(h("03"), "truncated route code", {1: "a"})
        self.assertRejected(h("03 00"), "truncated route code", {1: "a"})
        self.assertRejected(h("01 01 00"), "truncated route code", {1: "a"})

    def test_unknownRouteCode(self):
        """
        A route code missing from the dictionary is rejected, naming the code.
        """
        self.assertRejected(h("03 00 09"), "unknown route code 9", {1: "a"})
        self.assertRejected(h("07 01 00") + b"{}", "unknown route code 256", {1: "a"})

    def test_unknownRouteCodeAnyId(self):
        """
        An unknown route code is rejected after ids of one, two and three bytes.
        """
        for id in (5, 300, 20000):
            self.assertRejected(message.encode(message.REQUEST, id, body=b"{}", route_code=9), "unknown route code 9",
                                {1: "a.b.c"})

    def test_badMessageType(self):
        """
        Message types 4 to 7 are rejected.
        """
        for message_type in range(4, 8):
            self.assertRejected(
                bytes((message_type << 1,)) + b"\x01a", f"bad message type {message_type}"
            )

    def test_routeNotUtf8(self):
        """
        A route that is not UTF-8 is rejected.
        """
        self.assertRejected(h("02 02 ff fe"), "route is not UTF-8")

    def test_compressedBodyNotZlib(self):
        """
        A body flagged as compressed (C{0x10}) that is not zlib is rejected.
        """
        self.assertRejected(h("14 01") + b"not zlib", "compressed body does not inflate")

    def test_compressedBodyCorruptChecksum(self):
        """
        A zlib body with a wrong checksum is rejected.
        """
        data = bytearray(zlib.compress(b'{"a":1}'))
        data[-1] ^= 0xFF
        self.assertRejected(h("14 01") + bytes(data), "compressed body does not inflate")

    def test_compressedBodyTooLarge(self):
        """
        A compressed body that inflates past C{max_body} is rejected.
        """
        data = h("14 01") + zlib.compress(b"x" * 101)
        error = self.assertRaises(ProtocolError, message.decode, data, {}, 100)
        self.assertEqual(str(error), "compressed body does not inflate")

    def test_compressedBodyBombTooLarge(self):
        """
        A small zlib body that would inflate to megabytes is rejected under
        the default limit.
        """
        data = h("16 01 61") + zlib.compress(bytes(8 << 20), 9)
        self.assertLess(len(data), 10000)
        self.assertRaises(ProtocolError, message.decode, data, {})

    def test_compressedBodyTruncated(self):
        """
        A zlib body cut short (here, missing its checksum and the end of its
        data) is rejected rather than decoded to a partial body.
        """
        for cut in range(1, 7):
            data = h("14 01") + zlib.compress(b'{"a":1}')[:-cut]
            self.assertRaises(ProtocolError, message.decode, data, {})


    def test_compressedBodyEmpty(self):
        """
        A body flagged as compressed but empty is not a zlib stream and is rejected.
        """
        self.assertRaises(ProtocolError, message.decode, h("14 01"), {})


    def test_compressedBodyTruncatedTooLarge(self):
        """
        A truncated zlib body whose data already exceeds C{max_body} is
        rejected, not cut silently to C{max_body} bytes.
        """
        data = h("14 01") + zlib.compress(b"a" * 10)[:-5]
        self.assertRaises(ProtocolError, message.decode, data, {}, 9)



class MessageFlagTests(SynchronousTestCase):
    """
    Pitaya's flag bits: C{0x10} (zlib body) and C{0x20} (error).
    """

    def test_compressedBodyInflated(self):
        """
        A response body with the C{0x10} bit is inflated.
        """
        data = h("14 01") + zlib.compress(RESPONSE_BODY)
        self.assertEqual(
            message.decode(data, {}), Message(message.RESPONSE, 1, "", RESPONSE_BODY, False, False)
        )

    def test_compressedBodyWithCompressedRoute(self):
        """
        A request with both a route code and a zlib body is decoded in full.
        """
        data = h("11 ac 02 00 05") + zlib.compress(ENTER_BODY)
        self.assertEqual(
            message.decode(data, {5: "connector.entryHandler.enter"}),
            Message(message.REQUEST, 300, "connector.entryHandler.enter", ENTER_BODY, True, False),
        )

    def test_compressedBodyOfMaxBody(self):
        """
        A compressed body inflating to exactly C{max_body} bytes is accepted.
        """
        data = h("14 01") + zlib.compress(b"x" * 100)
        self.assertEqual(message.decode(data, {}, 100).body, b"x" * 100)

    def test_uncompressedBodyNotLimited(self):
        """
        C{max_body} limits inflation only; a plain body is left to the package layer.
        """
        self.assertEqual(message.decode(h("04 01") + bytes(200), {}, 100).body, bytes(200))

    def test_errorBitResponse(self):
        """
        A response with the C{0x20} bit decodes with C{error} set.
        """
        self.assertEqual(
            message.decode(h("24 01") + b"{}", {}), Message(message.RESPONSE, 1, "", b"{}", False, True)
        )

    def test_errorBitWithCompressedBody(self):
        """
        The error and compression bits decode together.
        """
        data = h("34 07") + zlib.compress(b'{"code":"PIT-500"}')
        self.assertEqual(
            message.decode(data, {}),
            Message(message.RESPONSE, 7, "", b'{"code":"PIT-500"}', False, True),
        )

    def test_errorBitPush(self):
        """
        A push with the error bit round-trips through L{message.encode}.
        """
        encoded = message.encode(message.PUSH, route="onChat", body=b"{}", error=True)
        self.assertEqual(encoded, h("26 06") + b"onChat{}")
        self.assertEqual(
            message.decode(encoded, {}), Message(message.PUSH, 0, "onChat", b"{}", False, True)
        )


class HandshakeRequestTests(SynchronousTestCase):
    """
    L{handshake.parse_request} accepts Pomelo and Pitaya handshakes and
    rejects anything else.
    """

    def test_pitaya(self):
        """
        Pitaya's shape (C{sys.platform}, C{sys.libVersion}) sets C{pitaya} and
        fills the client type and version; C{user} is kept.
        """
        request = handshake.parse_request(PITAYA_HANDSHAKE)
        self.assertIs(request.pitaya, True)
        self.assertEqual(request.client_type, "mac")
        self.assertEqual(request.client_version, "0.3.5-release")
        self.assertEqual(request.user, {"age": 30})

    def test_pitayaAnyKey(self):
        """
        Any one of Pitaya's keys is enough to set C{pitaya}.
        """
        for key in ("platform", "libVersion", "clientVersion", "clientBuildNumber"):
            body = json.dumps({"sys": {key: "x"}}).encode()
            self.assertIs(handshake.parse_request(body).pitaya, True, key)

    def test_emptySys(self):
        """
        An empty C{sys} object is accepted, with empty client type and version.
        """
        request = handshake.parse_request(b'{"sys":{}}')
        self.assertEqual(request.client_type, "")
        self.assertEqual(request.client_version, "")
        self.assertIs(request.pitaya, False)
        self.assertIsNone(request.dict_version)

    def test_dictVersion(self):
        """
        C{sys.dictVersion} is read when it is a string, and ignored otherwise.
        """
        self.assertEqual(
            handshake.parse_request(b'{"sys":{"dictVersion":"abc=="}}').dict_version, "abc=="
        )
        self.assertIsNone(handshake.parse_request(b'{"sys":{"dictVersion":5}}').dict_version)

    def assertRejected(self, body, reason):
        """
        Assert that C{body} is a L{ProtocolError} saying C{reason}.

        @param body: a handshake package body.
        @param reason: the expected error message.
        """
        error = self.assertRaises(ProtocolError, handshake.parse_request, body)
        self.assertEqual(str(error), reason)

    def test_notJson(self):
        """
        A body that is not JSON, or not UTF-8, is rejected.
        """
        self.assertRejected(b"hello", "handshake is not JSON")
        self.assertRejected(b'{"sys":{}', "handshake is not JSON")
        self.assertRejected(b'{"sys":"\xff"}', "handshake is not JSON")

    def test_missingSys(self):
        """
        An empty body, a non-object, or an object without C{sys} is rejected.
        """
        self.assertRejected(b"", "handshake has no sys object")
        self.assertRejected(b"[]", "handshake has no sys object")
        self.assertRejected(b'"sys"', "handshake has no sys object")
        self.assertRejected(b'{"user":{}}', "handshake has no sys object")

    def test_invalidSys(self):
        """
        A C{sys} that is not an object is rejected.
        """
        self.assertRejected(b'{"sys":1}', "handshake has no sys object")
        self.assertRejected(b'{"sys":[]}', "handshake has no sys object")
        self.assertRejected(b'{"sys":null}', "handshake has no sys object")


class HandshakeResponderTests(SynchronousTestCase):
    """
    L{handshake.HandshakeResponder} answers a handshake with the heartbeat
    and route dictionary, and L{handshake.refuse} refuses one.
    """

    def setUp(self):
        self.dictionary = routes.RouteDictionary.build(CHAT_DEMO_HANDLERS, ["onChat", "onAdd"])
        self.responder = handshake.HandshakeResponder(3.0, self.dictionary)
        self.request = handshake.parse_request(POMELO_HANDSHAKE)

    def test_accept(self):
        """
        The answer has code 200, an integer heartbeat, the dictionary, its
        version, C{useDict} and the serializer name.
        """
        answer = json.loads(self.responder.accept(self.request))
        self.assertEqual(
            answer,
            {
                "code": 200,
                "sys": {
                    "serializer": "json",
                    "heartbeat": 3,
                    "useDict": True,
                    "dictVersion": self.dictionary.version,
                    "dict": {
                        "chat.chatHandler.send": 1,
                        "connector.entryHandler.enter": 2,
                        "gate.gateHandler.queryEntry": 3,
                        "onChat": 4,
                        "onAdd": 5,
                    },
                },
            },
        )
        self.assertIsInstance(answer["sys"]["heartbeat"], int)

    def test_acceptIsCompactJson(self):
        """
        The answer is compact JSON, with the whole heartbeat written as an integer.
        """
        body = self.responder.accept(self.request)
        self.assertNotIn(b" ", body)
        self.assertIn(b'"heartbeat":3,', body)
        self.assertIn(b'"code":200', body)

    def test_fractionalHeartbeat(self):
        """
        A fractional heartbeat is sent as it is.
        """
        responder = handshake.HandshakeResponder(2.5, None)
        self.assertEqual(json.loads(responder.accept(self.request))["sys"]["heartbeat"], 2.5)

    def test_integerHeartbeat(self):
        """
        An C{int} heartbeat is sent as an integer.
        """
        responder = handshake.HandshakeResponder(10, None)
        self.assertIn(b'"heartbeat":10', responder.accept(self.request))

    def test_currentDictVersion(self):
        """
        A client that sends the current C{dictVersion} gets no C{dict}, but
        still the version and C{useDict}.
        """
        body = json.dumps({"sys": {"type": "js", "dictVersion": self.dictionary.version}})
        answer = json.loads(self.responder.accept(handshake.parse_request(body.encode())))
        self.assertNotIn("dict", answer["sys"])
        self.assertEqual(answer["sys"]["dictVersion"], self.dictionary.version)
        self.assertIs(answer["sys"]["useDict"], True)

    def test_staleDictVersion(self):
        """
        A client with another C{dictVersion} gets the dictionary.
        """
        request = handshake.parse_request(b'{"sys":{"dictVersion":"old"}}')
        answer = json.loads(self.responder.accept(request))
        self.assertEqual(answer["sys"]["dict"], self.dictionary.route_to_code)

    def test_noHeartbeat(self):
        """
        A heartbeat of 0 leaves C{heartbeat} out.
        """
        responder = handshake.HandshakeResponder(0, self.dictionary)
        answer = json.loads(responder.accept(self.request))
        self.assertNotIn("heartbeat", answer["sys"])
        self.assertEqual(answer["code"], 200)

    def test_noDictionary(self):
        """
        Without a dictionary the answer has no C{dict}, C{dictVersion} or C{useDict}.
        """
        responder = handshake.HandshakeResponder(3, None)
        self.assertEqual(
            json.loads(responder.accept(self.request)),
            {"code": 200, "sys": {"serializer": "json", "heartbeat": 3}},
        )

    def test_user(self):
        """
        A C{user} value is added to the answer, and the dictionary still sent.
        """
        answer = json.loads(self.responder.accept(self.request, {"uid": 7}))
        self.assertEqual(answer["user"], {"uid": 7})
        self.assertIn("dict", answer["sys"])

    def test_acceptCached(self):
        """
        Answers without C{user} are built once and reused.
        """
        self.assertIs(self.responder.accept(self.request), self.responder.accept(self.request))

    def test_refuse(self):
        """
        C{refuse(501)} is exactly C{{"code":501}}.
        """
        self.assertEqual(handshake.refuse(501), b'{"code":501}')
        self.assertEqual(handshake.refuse(handshake.CODE_OLD_CLIENT), b'{"code":501}')

    def test_refuseWithMessage(self):
        """
        A refusal with a message carries it.
        """
        self.assertEqual(
            json.loads(handshake.refuse(400, "bad handshake")),
            {"code": 400, "message": "bad handshake"},
        )


class RouteDictionaryTests(SynchronousTestCase):
    """
    L{routes.RouteDictionary.build} numbers routes as Pomelo does.
    """

    def test_chatDemo(self):
        """
        The chat demo's connector dictionary numbers its three handler routes
        in sorted order.
        """
        dictionary = routes.RouteDictionary.build(CHAT_DEMO_HANDLERS)
        self.assertEqual(
            dictionary.route_to_code,
            {
                "chat.chatHandler.send": 1,
                "connector.entryHandler.enter": 2,
                "gate.gateHandler.queryEntry": 3,
            },
        )
        self.assertEqual(
            dictionary.code_to_route,
            {
                1: "chat.chatHandler.send",
                2: "connector.entryHandler.enter",
                3: "gate.gateHandler.queryEntry",
            },
        )

    def test_versionIsPomeloDictVersion(self):
        """
        The version is the base64 MD5 of the dictionary's compact JSON, as
        Node's C{JSON.stringify} writes it.
        """
        text = (
            b'{"chat.chatHandler.send":1,"connector.entryHandler.enter":2,'
            b'"gate.gateHandler.queryEntry":3}'
        )
        expected = base64.b64encode(hashlib.md5(text).digest()).decode("ascii")
        self.assertEqual(routes.RouteDictionary.build(CHAT_DEMO_HANDLERS).version, expected)

    def test_extraRoutesAfter(self):
        """
        Extra routes come after the handler routes, in the order given, unsorted.
        """
        dictionary = routes.RouteDictionary.build(["b.h.m", "a.h.m"], ["onZ", "onA"])
        self.assertEqual(
            list(dictionary.route_to_code.items()),
            [("a.h.m", 1), ("b.h.m", 2), ("onZ", 3), ("onA", 4)],
        )

    def test_duplicatesKeepFirstCode(self):
        """
        A route given twice keeps its first code, and codes stay consecutive.
        """
        dictionary = routes.RouteDictionary.build(
            ["b.h.m", "a.h.m", "b.h.m"], ["onA", "a.h.m", "onA", "onB"]
        )
        self.assertEqual(
            dictionary.route_to_code, {"a.h.m": 1, "b.h.m": 2, "onA": 3, "onB": 4}
        )
        self.assertEqual(dictionary.code_to_route, {1: "a.h.m", 2: "b.h.m", 3: "onA", 4: "onB"})

    def test_iterables(self):
        """
        Generators work as well as lists.
        """
        dictionary = routes.RouteDictionary.build(
            (r for r in CHAT_DEMO_HANDLERS), (r for r in ["onChat"])
        )
        self.assertEqual(dictionary.route_to_code["onChat"], 4)

    def test_versionStable(self):
        """
        The same routes, in any handler order, give the same version.
        """
        first = routes.RouteDictionary.build(CHAT_DEMO_HANDLERS, ["onChat"])
        second = routes.RouteDictionary.build(reversed(CHAT_DEMO_HANDLERS), ["onChat"])
        self.assertEqual(first.version, second.version)
        self.assertEqual(first, second)

    def test_versionChanges(self):
        """
        Different routes, or a different extra route order, give another version.
        """
        base = routes.RouteDictionary.build(CHAT_DEMO_HANDLERS, ["onChat", "onAdd"])
        versions = {
            base.version,
            routes.RouteDictionary.build(CHAT_DEMO_HANDLERS).version,
            routes.RouteDictionary.build(CHAT_DEMO_HANDLERS, ["onAdd", "onChat"]).version,
            routes.RouteDictionary.build(CHAT_DEMO_HANDLERS[:2], ["onChat", "onAdd"]).version,
        }
        self.assertEqual(len(versions), 4)

    def test_empty(self):
        """
        The empty dictionary has no routes and the version of C{{}}.
        """
        dictionary = routes.RouteDictionary.empty()
        self.assertEqual(dictionary.route_to_code, {})
        self.assertEqual(dictionary.code_to_route, {})
        self.assertEqual(
            dictionary.version, base64.b64encode(hashlib.md5(b"{}").digest()).decode("ascii")
        )

    def test_nonAsciiVersion(self):
        """
        Non-ASCII routes are hashed as UTF-8 JSON, not as C{\\u} escapes.
        """
        dictionary = routes.RouteDictionary.build([], ["oné"])
        text = '{"oné":1}'.encode("utf-8")
        expected = base64.b64encode(hashlib.md5(text).digest()).decode("ascii")
        self.assertEqual(dictionary.version, expected)

    def test_codesDecode(self):
        """
        The dictionary's codes are the ones L{message.decode} expands.
        """
        dictionary = routes.RouteDictionary.build(CHAT_DEMO_HANDLERS)
        code = dictionary.route_to_code["gate.gateHandler.queryEntry"]
        encoded = message.encode(
            message.REQUEST, 2, "gate.gateHandler.queryEntry", b"{}", route_code=code
        )
        self.assertEqual(encoded, h("01 02 00 03 7b 7d"))
        self.assertEqual(
            message.decode(encoded, dictionary.code_to_route).route, "gate.gateHandler.queryEntry"
        )

    def test_tooManyRoutes(self):
        """
        65535 routes fit 2-byte codes; one more is a L{ValueError}.
        """
        names = [f"r{i}" for i in range(0xFFFF)]
        self.assertEqual(len(routes.RouteDictionary.build(names).route_to_code), 0xFFFF)
        self.assertRaises(ValueError, routes.RouteDictionary.build, names, ["one.more"])


class SerializerTests(SynchronousTestCase):
    """
    L{serializer} writes compact UTF-8 JSON and reads it back.
    """

    def test_name(self):
        """
        The serializer calls itself C{json}.
        """
        self.assertEqual(serializer.NAME, "json")

    def test_compact(self):
        """
        JSON is written with no spaces after separators.
        """
        self.assertEqual(
            serializer.dumps({"a": 1, "b": [1, 2], "c": {"d": None}}),
            b'{"a":1,"b":[1,2],"c":{"d":null}}',
        )

    def test_nonAscii(self):
        """
        Non-ASCII text is written as UTF-8, not C{\\u} escapes.
        """
        self.assertEqual(
            serializer.dumps({"msg": "héllo ☃ 😀"}), '{"msg":"héllo ☃ 😀"}'.encode("utf-8")
        )

    def test_roundTrip(self):
        """
        What is written reads back equal.
        """
        value = {"msg": "héllo ☃", "n": [1, 2.5, True, None], "o": {}}
        self.assertEqual(serializer.loads(serializer.dumps(value)), value)

    def test_emptyIsNone(self):
        """
        An empty body reads as C{None}.
        """
        self.assertIsNone(serializer.loads(b""))

    def test_invalidJson(self):
        """
        A body that is not JSON is a L{ValueError}.
        """
        self.assertRaises(ValueError, serializer.loads, b"{not json")
        self.assertRaises(ValueError, serializer.loads, b" ")

    def test_invalidUtf8(self):
        """
        A body that is not UTF-8 is a L{ValueError}.
        """
        self.assertRaises(ValueError, serializer.loads, b'"\xff"')

    def test_whitespaceAround(self):
        """
        Whitespace around the value is allowed, as C{json.loads} allows it.
        """
        self.assertEqual(serializer.loads(b' {"a":1}\r\n'), {"a": 1})
        self.assertEqual(serializer.loads(b"\t[1]"), [1])

    def test_extraData(self):
        """
        More after the value, whitespace aside, is a L{ValueError}.
        """
        self.assertRaises(ValueError, serializer.loads, b'{"a":1}x')
        self.assertRaises(ValueError, serializer.loads, b"1 2")
        self.assertRaises(ValueError, serializer.loads, b"[1] ]")

    def test_circular(self):
        """
        A circular value is a L{ValueError}, as with C{json.dumps}, and
        leaves L{serializer.dumps} usable.
        """
        value: list = []
        value.append(value)
        error = self.assertRaises(ValueError, serializer.dumps, value)
        self.assertEqual(str(error), "Circular reference detected")
        self.assertEqual(serializer.dumps([[1]]), b"[[1]]")

    def test_tooDeep(self):
        """
        A value nested deeper than the recursion limit (a handler echoing a
        deep message, say) is a L{ValueError}, which a frontend answers as
        an error, not the L{RecursionError} of C{json.dumps}.
        """
        import sys

        value: list = []
        for _ in range(sys.getrecursionlimit() + 10):
            value = [value]
        error = self.assertRaises(ValueError, serializer.dumps, value)
        self.assertEqual(str(error), "JSON nested too deeply")
