"""
Property tests for every decoder a client or a peer can reach: packages,
messages (compressed routes and bodies), handshakes, JSON bodies, node-link
batches, cluster files and server specs, block list entries, and a
frontend's connection, with JSON bodies and with protobuf ones (the protobuf
codec's own properties are in C{tests/test_protobuf.py}).

Each decoder gets two properties: arbitrary input raises only its module's
own documented error (L{ProtocolError}, L{ValueError}, L{WireError},
L{ConfigError}), and valid values round-trip. The number of examples comes
from a profile: C{ci} (the default, a few seconds for the module) or
C{long}, chosen with C{GAMENET_FUZZ=long} (see C{doc/protocol.md},
"Fuzzing"). C{FoundTests} pins the inputs these properties found.
"""

from __future__ import annotations

import json
import os
import zlib
from ipaddress import ip_network
from typing import Any

from hypothesis import HealthCheck, assume, given, settings, strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase
from twisted.logger import globalLogPublisher
from twisted.internet.testing import StringTransport
from twisted.spread import banana, pb
from twisted.trial.unittest import SynchronousTestCase

from gamenet.cluster import wire
from gamenet.config import ClusterConfig, ConfigError, ServerConfig, load, server_from_spec, server_spec
from gamenet.config._values import _CLUSTER_KEYS, _FRONTEND_KEYS, _HTTP_KEYS, _SERVER_KEYS
from gamenet.connector.blocklist import Blocklist
from gamenet.protocol import ProtocolError, handshake, message, package, serializer
from gamenet.protocol.protobuf import CLIENT_FILE, SERVER_FILE, Protos
from gamenet.protocol.routes import RouteDictionary

from .test_connection import ConnectionTestsMixin, handshake_package

settings.register_profile(
    "ci", max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
# The long run keeps what it finds in the work tree's .hypothesis/ (trial
# runs tests in _trial_temp, which the next run empties), to replay it first.
settings.register_profile(
    "long", max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow],
    database=DirectoryBasedExampleDatabase(
        os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".hypothesis", "examples")
    ),
)
_PROFILE = os.environ.get("GAMENET_FUZZ", "ci")
if _PROFILE not in ("ci", "long"):
    raise ValueError(f"GAMENET_FUZZ={_PROFILE!r} is not a fuzzing profile (expected ci or long)")
# Applied to each test rather than loaded for the whole process, so that
# other test modules keep their own settings.
fuzz = settings(settings.get_profile(_PROFILE))

# JSON values as serializer.dumps writes them: no NaN or infinity.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
# JSON nested deeper than Python's recursion limit, and shallower: cut
# short, or whole.
nested = st.tuples(st.sampled_from([b"[", b'{"a":', b"[1,"]), st.integers(0, 3000), st.binary(max_size=8)).map(
    lambda parts: parts[0] * parts[1] + parts[2]
) | st.integers(0, 3000).map(lambda depth: b"[" * depth + b"]" * depth)
routes = st.text(min_size=1, max_size=40).filter(lambda route: len(route.encode("utf-8")) <= message.MAX_ROUTE_LENGTH)


@st.composite
def splits(draw: Any, data: bytes) -> list[bytes]:
    """
    C{data} cut at arbitrary points, empty chunks included.
    """
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    return [data[start:end] for start, end in zip([0, *cuts], [*cuts, len(data)])]


class PackageTests(SynchronousTestCase):
    """
    L{package.PackageDecoder.feed}: bytes split anywhere.
    """

    @fuzz
    @given(st.data(), st.binary(max_size=200), st.integers(0, 64))
    def test_arbitraryBytes(self, data: Any, stream: bytes, max_body: int) -> None:
        """
        Arbitrary bytes, fed whole or in arbitrary chunks, give the same
        packages, or the same L{ProtocolError} after the same packages:
        never another exception, never a body over the limit.
        """
        def decode(chunks: list[bytes]) -> tuple[list[tuple[int, bytes]], str | None]:
            decoder = package.PackageDecoder(max_body)
            packages: list[tuple[int, bytes]] = []
            for chunk in chunks:
                try:
                    packages += decoder.feed(chunk)
                except ProtocolError as e:
                    return packages + e.packages, str(e)
            return packages, None

        whole = decode([stream])
        self.assertEqual(decode(data.draw(splits(stream))), whole)
        for package_type, body in whole[0]:
            self.assertIn(package_type, range(package.HANDSHAKE, package.KICK + 1))
            self.assertLessEqual(len(body), max_body)

    @fuzz
    @given(st.data(), st.lists(st.tuples(st.integers(package.HANDSHAKE, package.KICK), st.binary(max_size=40))))
    def test_roundTrip(self, data: Any, packages: list[tuple[int, bytes]]) -> None:
        """
        Encoded packages, their stream split at arbitrary points, decode to
        the same packages with nothing left pending.
        """
        stream = b"".join(package.encode(package_type, body) for package_type, body in packages)
        decoder = package.PackageDecoder()
        decoded = []
        for chunk in data.draw(splits(stream)):
            decoded += decoder.feed(chunk)
        self.assertEqual(decoded, packages)
        self.assertEqual(decoder.pending, 0)


@st.composite
def dictionaries(draw: Any) -> RouteDictionary:
    return RouteDictionary.build(draw(st.lists(routes, max_size=6)), draw(st.lists(routes, max_size=3)))


class MessageTests(SynchronousTestCase):
    """
    L{message.decode}: plain and compressed routes, zlib-compressed bodies.
    """

    @fuzz
    @given(st.binary(max_size=100), dictionaries(), st.integers(1, 64))
    def test_arbitraryBytes(self, data: bytes, dictionary: RouteDictionary, max_body: int) -> None:
        """
        Arbitrary bytes decode to a message or raise L{ProtocolError}.
        """
        try:
            decoded = message.decode(data, dictionary.code_to_route, max_body)
        except ProtocolError:
            return
        self.assertIn(decoded.type, (message.REQUEST, message.NOTIFY, message.RESPONSE, message.PUSH))
        self.assertIsInstance(decoded.route, str)

    @fuzz
    @given(st.data(), st.sampled_from(sorted(message._TYPE_NAMES)), st.integers(0, (1 << 35) - 1), routes,
           st.binary(max_size=60), st.booleans(), st.booleans())
    def test_roundTrip(self, data: Any, message_type: int, id: int, route: str, body: bytes, compress: bool,
                       error: bool) -> None:
        """
        An encoded message decodes to what was encoded: the id of a request
        or a response, the route of any other (through the dictionary when
        compressed), the body and the error bit.
        """
        dictionary = RouteDictionary.build([route, *data.draw(st.lists(routes, max_size=4))])
        code = dictionary.route_to_code[route] if compress else None
        encoded = message.encode(message_type, id, route, body, code, error)
        has_id = message_type in (message.REQUEST, message.RESPONSE)
        has_route = message_type != message.RESPONSE
        expected = message.Message(message_type, id if has_id else 0, route if has_route else "", body,
                                   compress and has_route, error)
        self.assertEqual(message.decode(encoded, dictionary.code_to_route), expected)

    @fuzz
    @given(st.integers(0, (1 << 35) - 1), routes, st.binary(max_size=60), st.booleans())
    def test_responseAndPush(self, id: int, route: str, body: bytes, error: bool) -> None:
        """
        L{message.encode_response} and L{message.encode_push} decode back.
        """
        dictionary = RouteDictionary.build([route])
        self.assertEqual(message.decode(message.encode_response(id, body, error), {}),
                         message.Message(message.RESPONSE, id, "", body, False, error))
        self.assertEqual(message.decode(message.encode_push(route, body), {}),
                         message.Message(message.PUSH, 0, route, body))
        self.assertEqual(message.decode(message.encode_push(route, body, 1), dictionary.code_to_route),
                         message.Message(message.PUSH, 0, route, body, True))

    @fuzz
    @given(st.binary(max_size=300), st.integers(-1, 9), st.integers(1, 400))
    def test_compressedBody(self, body: bytes, level: int, max_body: int) -> None:
        """
        A zlib-compressed body inflates to the body sent when it fits
        C{max_body}, and is a L{ProtocolError} when it does not.
        """
        encoded = message.encode(message.NOTIFY, route="a.b.c") + zlib.compress(body, level)
        encoded = bytes((encoded[0] | message.DATA_COMPRESSED,)) + encoded[1:]
        if len(body) > max_body:
            self.assertRaises(ProtocolError, message.decode, encoded, {}, max_body)
        else:
            self.assertEqual(message.decode(encoded, {}, max_body).body, body)

    @fuzz
    @given(st.data(), st.binary(max_size=300), st.integers(1, 400))
    def test_damagedCompressedBody(self, data: Any, body: bytes, max_body: int) -> None:
        """
        A compressed body cut short, with bytes changed, or with bytes
        appended inflates to at most C{max_body} bytes or raises
        L{ProtocolError}.
        """
        deflated = bytearray(zlib.compress(body))
        for _ in range(data.draw(st.integers(0, 3))):
            deflated[data.draw(st.integers(0, len(deflated) - 1))] = data.draw(st.integers(0, 255))
        deflated = deflated[: data.draw(st.integers(0, len(deflated)))] + data.draw(st.binary(max_size=8))
        encoded = bytes((message.DATA_COMPRESSED | message.RESPONSE << 1, 1)) + bytes(deflated)
        try:
            decoded = message.decode(encoded, {}, max_body)
        except ProtocolError:
            return
        self.assertLessEqual(len(decoded.body), max_body)


pomelo_sys = st.fixed_dictionaries(
    {"type": st.text(max_size=20), "version": st.text(max_size=10)},
    optional={"dictVersion": st.text(max_size=24), "protoVersion": st.text(max_size=24) | st.integers()},
)
pitaya_sys = st.fixed_dictionaries(
    {"platform": st.text(max_size=20), "libVersion": st.text(max_size=10)},
    optional={"clientVersion": st.text(max_size=10), "clientBuildNumber": st.text(max_size=10)},
)


class HandshakeTests(SynchronousTestCase):
    """
    L{handshake.parse_request} and what the server reads of the request.
    """

    responder = handshake.HandshakeResponder(5, RouteDictionary.build(["a.b.c"]))

    def check(self, body: bytes) -> None:
        try:
            request = handshake.parse_request(body)
        except ProtocolError:
            return
        self.assertIsInstance(request.client_type, str)
        self.assertIsInstance(request.client_version, str)
        self.assertIsInstance(request.pitaya, bool)
        self.assertIn(type(request.dict_version), (str, type(None)))
        self.assertIsInstance(json.loads(self.responder.accept(request)), dict)

    @fuzz
    @given(st.binary(max_size=100) | nested)
    def test_arbitraryBytes(self, body: bytes) -> None:
        """
        Arbitrary bytes are a request or a L{ProtocolError}.
        """
        self.check(body)

    @fuzz
    @given(json_values | st.fixed_dictionaries({"sys": json_values}, optional={"user": json_values}))
    def test_arbitraryJSON(self, value: Any) -> None:
        """
        Arbitrary JSON, and objects with any C{sys} and C{user}, are a
        request the server can read and answer, or a L{ProtocolError}.
        """
        self.check(serializer.dumps(value))

    @fuzz
    @given(pomelo_sys | pitaya_sys, st.none() | json_values)
    def test_roundTrip(self, sys: dict[str, Any], user: Any) -> None:
        """
        A Pomelo or a Pitaya request gives back its C{sys} and C{user}, its
        client type and version, and which shape it has.
        """
        value = {"sys": sys} if user is None else {"sys": sys, "user": user}
        request = handshake.parse_request(serializer.dumps(value))
        self.assertEqual((request.sys, request.user), (sys, user))
        pitaya = "platform" in sys
        self.assertEqual(request.pitaya, pitaya)
        self.assertEqual(request.client_type, sys["platform" if pitaya else "type"])
        self.assertEqual(request.client_version, sys["libVersion" if pitaya else "version"])


class SerializerTests(SynchronousTestCase):
    """
    L{serializer.loads}, which reads every JSON body a client sends.
    """

    @fuzz
    @given(st.binary(max_size=100) | st.text(max_size=60).map(lambda text: text.encode("utf-8")) | nested)
    def test_arbitraryBytes(self, data: bytes) -> None:
        """
        Arbitrary bytes, UTF-8 or not, nested deep or not, are JSON or a
        L{ValueError}.
        """
        try:
            serializer.loads(data)
        except ValueError:
            pass

    @fuzz
    @given(json_values)
    def test_roundTrip(self, value: Any) -> None:
        """
        What L{serializer.dumps} writes, L{serializer.loads} reads back.
        """
        self.assertEqual(serializer.loads(serializer.dumps(value)), value)


records = st.lists(st.tuples(st.integers(0, 0xFFFFFFFF), st.integers(0, 255), st.binary(max_size=30)), max_size=6)
sessions = st.dictionaries(st.text(max_size=8), json_values, max_size=5)


class WireTests(SynchronousTestCase):
    """
    Node-link batches: L{wire.unpack}, L{wire.decode_forward}, L{wire.decode_call}.
    """

    @fuzz
    @given(st.binary(max_size=120) | records.map(wire.pack).map(lambda batch: batch[:-1]))
    def test_arbitraryBatch(self, batch: bytes) -> None:
        """
        Arbitrary bytes, and batches cut short, are records or a L{wire.WireError}.
        """
        try:
            list(wire.unpack(batch))
        except wire.WireError:
            pass

    @fuzz
    @given(records)
    def test_batchRoundTrip(self, batch: list[tuple[int, int, bytes]]) -> None:
        """
        A packed batch unpacks to its records.
        """
        self.assertEqual(list(wire.unpack(wire.pack(batch))), batch)

    @fuzz
    @given(st.binary(max_size=120)
           | st.tuples(st.integers(0, 255), st.integers(0, 0xFFFFFFFF), st.binary(max_size=100) | nested).map(
               lambda parts: bytes((parts[0],)) + parts[1].to_bytes(4, "big") + parts[2]))
    def test_arbitraryForward(self, payload: bytes) -> None:
        """
        Arbitrary payloads are a forwarded message or a L{wire.WireError}.
        """
        try:
            route, session, _ = wire.decode_forward(payload)
        except wire.WireError:
            return
        self.assertIsInstance(route, str)
        self.assertIsInstance(session, dict)

    @fuzz
    @given(st.text(max_size=40).filter(lambda route: len(route.encode("utf-8")) <= 255), sessions,
           st.binary(max_size=60))
    def test_forwardRoundTrip(self, route: str, session: dict[str, Any], body: bytes) -> None:
        """
        A forwarded message decodes to its route, session and body.
        """
        self.assertEqual(wire.decode_forward(wire.encode_forward(route, session, body)), (route, session, body))

    @fuzz
    @given(st.binary(max_size=100) | json_values.map(serializer.dumps) | nested)
    def test_arbitraryCall(self, payload: bytes) -> None:
        """
        Arbitrary payloads, JSON or not, are a call or a L{wire.WireError}.
        """
        try:
            name, args = wire.decode_call(payload)
        except wire.WireError:
            return
        self.assertIsInstance(name, str)
        self.assertIsInstance(args, list)

    @fuzz
    @given(st.text(max_size=30), st.lists(json_values, max_size=4))
    def test_callRoundTrip(self, name: str, args: list[Any]) -> None:
        """
        An encoded call decodes to its name and arguments.
        """
        self.assertEqual(wire.decode_call(wire.encode_call(name, args)), (name, args))


_KEYS = sorted({*_CLUSTER_KEYS, *_FRONTEND_KEYS, *_HTTP_KEYS, *_SERVER_KEYS})
# Values with no path separator, so that keys naming files stay in the test's directory.
_words = st.text(st.characters(blacklist_characters="/\\\x00", blacklist_categories=("Cs",)), max_size=12)
_values = st.one_of(
    _words, st.integers(-5, 70000).map(str), st.sampled_from(["true", "false", "json", "hybrid", "static", "0", ""]),
)
_sections = st.sampled_from(["cluster", "frontend", "http", "server:a", "server:b", "server:", "other"]) | _words


@st.composite
def cluster_files(draw: Any) -> str:
    """
    Cluster file text: sections and keys mostly known, values arbitrary.
    """
    lines = []
    for section in draw(st.lists(_sections, max_size=5)):
        lines.append(f"[{section}]")
        for key in draw(st.lists(st.sampled_from(_KEYS) | _words, max_size=6)):
            lines.append(f"{key} = {draw(_values)}")
    return "\n".join(lines)


server_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,9}", fullmatch=True).filter(lambda word: word != "master")
ports = st.integers(1, 65535)


@st.composite
def server_specs(draw: Any) -> dict[str, Any]:
    """
    A valid spec: a backend or a frontend, some options, distinct ports.
    """
    node_port, client_port, metrics_port = draw(st.lists(ports, min_size=3, max_size=3, unique=True))
    spec: dict[str, Any] = {
        "id": draw(server_ids), "type": draw(server_ids), "host": draw(st.sampled_from(["127.0.0.1", "::1", "h"])),
        "node_port": node_port,
    }
    if draw(st.booleans()):
        spec.update(frontend=True, client_port=client_port)
        spec.update(draw(st.fixed_dictionaries({}, optional={
            "transport": st.sampled_from(["hybrid", "websocket", "tcp"]),
            "heartbeat": st.floats(0, 1000),
            "max_body_size": st.integers(1, 0xFFFFFF),
            "messages_per_second": st.integers(1, 10000),
            "allowed_origins": st.lists(server_ids, min_size=1, max_size=3),
            "use_dict": st.booleans(),
            "single_session": st.booleans(),
        })))
    spec.update(draw(st.fixed_dictionaries({}, optional={
        "auto_restart": st.booleans(), "metrics_port": st.just(metrics_port),
        "http_max_connections": st.integers(1, 5000), "http_request_timeout": st.floats(0.5, 100),
    })))
    return spec


# What banana carries on a node link: ints of any size and sign, bytes,
# floats, nested lists.
banana_values = st.recursive(
    st.integers() | st.binary(max_size=20) | st.floats(allow_nan=False),
    lambda children: st.lists(children, max_size=4),
    max_leaves=12,
)


def banana_read(broker_class: type, chunks: list[bytes]) -> tuple[list[Any], Any]:
    """
    The expressions a broker of C{broker_class} reads from C{chunks}, and the
    type of the error that stopped it (C{None} when none did).
    """
    broker = broker_class()
    broker.currentDialect = b"pb"
    got: list[Any] = []
    broker.expressionReceived = got.append
    try:
        for chunk in chunks:
            broker.dataReceived(chunk)
    except Exception as e:
        return got, type(e)
    return got, None


class NodeBrokerTests(SynchronousTestCase):
    """
    L{wire.NodeBroker} reads banana exactly as Twisted's C{Broker} does.
    """

    @fuzz
    @given(st.data(), st.lists(banana_values, min_size=1, max_size=3))
    def test_sameExpressions(self, data: Any, values: list[Any]) -> None:
        """
        Encoded expressions, cut anywhere, read as the same expressions.
        """
        chunks = data.draw(splits(b"".join(banana.encode(value) for value in values)))
        self.assertEqual(banana_read(wire.NodeBroker, chunks), banana_read(pb.Broker, chunks))

    @fuzz
    @given(st.data(), st.binary(max_size=80))
    def test_arbitraryBytes(self, data: Any, stream: bytes) -> None:
        """
        Arbitrary bytes (vocabulary numbers, bad type bytes, long prefixes
        and sizes) read as the same expressions and stop with the same error.
        """
        chunks = data.draw(splits(stream))
        self.assertEqual(banana_read(wire.NodeBroker, chunks), banana_read(pb.Broker, chunks))

    @fuzz
    @given(st.lists(banana_values | st.sampled_from([b"tuple", b"None", b"dictionary", b"answer"])
                    | st.integers(-2 ** 500, 2 ** 500) | st.text(max_size=2) | st.binary(min_size=120, max_size=300),
                    max_size=5),
           st.booleans())
    def test_sameBytes(self, value: list[Any], pb_dialect: bool) -> None:
        """
        Expressions are sent as the same bytes, vocabulary and large
        numbers included, and what C{Broker} cannot send fails the same way.
        """
        sent = []
        for broker_class in (wire.NodeBroker, pb.Broker):
            broker = broker_class()
            broker.setPrefixLimit(banana._PREFIX_LIMIT)  # as connectionMade does
            broker.currentDialect = b"pb" if pb_dialect else b"none"
            broker.transport = StringTransport()
            try:
                broker.sendEncoded(value)
            except banana.BananaError as e:
                sent.append(("error", str(e), broker.transport.value()))
            else:
                sent.append(("sent", broker.transport.value()))
        self.assertEqual(sent[0], sent[1])

    @fuzz
    @given(st.tuples(st.binary(max_size=20)) | st.lists(st.binary(max_size=4), max_size=3).map(tuple)
           | st.dictionaries(st.text(max_size=4), st.binary(max_size=4), max_size=2)
           | st.tuples(st.text(max_size=4), st.binary(max_size=4)) | st.lists(st.text(max_size=4), max_size=3)
           | st.none() | banana_values)
    def test_sameJelly(self, value: Any) -> None:
        """
        Call arguments are jellied to the same expressions, and those read
        back to the same values.
        """
        sexp = wire.NodeBroker().serialize(value)
        self.assertEqual(sexp, pb.Broker().serialize(value))
        self.assertEqual(wire.NodeBroker().unserialize(sexp), pb.Broker().unserialize(sexp))
        self.assertEqual(wire.NodeBroker().unserialize(sexp), value)


class ConfigTests(SynchronousTestCase):
    """
    L{load} of cluster files and L{server_from_spec} of server specs.
    """

    cluster = ClusterConfig("/nonexistent/cluster.ini", "fuzz", "secret", "development", (), (), (), ())

    def setUp(self) -> None:
        self.directory = self.mktemp()
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, "cluster.ini")

    def load(self, content: bytes, environ: dict[str, str]) -> ClusterConfig | None:
        with open(self.path, "wb") as f:
            f.write(content)
        try:
            return load(self.path, environ)
        except ConfigError as e:
            self.assertTrue(e.problems)
            return None

    @fuzz
    @given(cluster_files(), st.sampled_from([{}, {"GAMENET_SECRET": "s"}]))
    def test_arbitraryFile(self, text: str, environ: dict[str, str]) -> None:
        """
        A file of known and unknown sections and keys with arbitrary values
        loads or raises L{ConfigError}.
        """
        self.load(text.encode("utf-8"), environ)

    @fuzz
    @given(st.binary(max_size=200) | st.text(max_size=200).map(lambda text: text.encode("utf-8")))
    def test_arbitraryBytes(self, content: bytes) -> None:
        """
        Arbitrary bytes, UTF-8 or not, load or raise L{ConfigError}.
        """
        self.load(content, {})

    @fuzz
    @given(json_values | st.fixed_dictionaries(
        {"id": json_values}, optional={key: json_values for key in _KEYS}
    ) | st.dictionaries(st.sampled_from(_KEYS), json_values).map(lambda spec: {**spec, "id": "x"}))
    def test_arbitrarySpec(self, spec: Any) -> None:
        """
        Arbitrary JSON is a server or a L{ConfigError}.
        """
        try:
            server = server_from_spec(spec, self.cluster)
        except ConfigError as e:
            self.assertTrue(e.problems)
            return
        self.assertIsInstance(server, ServerConfig)

    @fuzz
    @given(server_specs())
    def test_specRoundTrip(self, spec: dict[str, Any]) -> None:
        """
        A valid spec gives a server; its L{server_spec}, through JSON, gives
        the same server back.
        """
        server = server_from_spec(spec, self.cluster)
        self.assertEqual((server.id, server.type, server.node_port), (spec["id"], spec["type"], spec["node_port"]))
        again = json.loads(json.dumps(server_spec(server)))
        self.assertEqual(server_from_spec(again, self.cluster), server)

    @fuzz
    @given(st.lists(server_specs(), min_size=1, max_size=3, unique_by=lambda spec: spec["id"]))
    def test_fileRoundTrip(self, specs: list[dict[str, Any]]) -> None:
        """
        Servers written as the sections of a cluster file load as the same
        servers as their specs give.
        """
        ports = [port for spec in specs for key, port in spec.items() if key.endswith("_port")]
        assume(len(set(ports)) == len(ports))
        lines = ["[cluster]", "name = fuzz", "secret = s"]
        for spec in specs:
            lines.append(f"[server:{spec['id']}]")
            for key, value in spec.items():
                if key != "id":
                    lines.append(f"{key} = {_text(value)}")
        config = self.load("\n".join(lines).encode("utf-8"), {})
        assert config is not None
        expected = [server_from_spec(spec, config) for spec in specs]
        self.assertEqual(list(config.servers), expected)


def _text(value: Any) -> str:
    """
    A spec value as written in a cluster file.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return " ".join(value)
    return repr(value) if isinstance(value, float) else str(value)


networks = st.one_of(
    st.ip_addresses().map(str),
    st.tuples(st.ip_addresses(v=4), st.integers(0, 32)).map(lambda p: str(ip_network(f"{p[0]}/{p[1]}", strict=False))),
    st.tuples(st.ip_addresses(v=6), st.integers(0, 128)).map(lambda p: str(ip_network(f"{p[0]}/{p[1]}", strict=False))),
)


class BlocklistTests(SynchronousTestCase):
    """
    L{Blocklist} entries, as the admin API and the stored block list give them.
    """

    @fuzz
    @given(st.lists(st.text(max_size=45) | json_values, max_size=4), st.text(max_size=45))
    def test_arbitraryEntries(self, entries: list[Any], host: str) -> None:
        """
        Arbitrary entries make a block list or raise L{ValueError}; a block
        list answers C{blocks} of any text with a bool.
        """
        try:
            blocklist = Blocklist(entries)
        except ValueError:
            return
        self.assertIsInstance(blocklist.blocks(host), bool)

    @fuzz
    @given(st.lists(networks, max_size=5))
    def test_roundTrip(self, entries: list[str]) -> None:
        """
        Entries come back in canonical form, the list they make reads back
        the same, and each blocks its own address.
        """
        blocklist = Blocklist(entries)
        again = Blocklist(list(blocklist))
        self.assertEqual(list(again), list(blocklist))
        for entry in entries:
            self.assertTrue(blocklist.blocks(entry.split("/")[0]))


# Protobuf schemas of the frontend's routes (ProtobufConnectionTests). The
# echo's answer schema is not its request's, so some answers do not fit.
CLIENT_PROTOS = {"connector.game.echo": {"required string text": 1, "repeated sInt32 n": 2},
                 "connector.game.note": {"optional double d": 1}, "connector.game.fail": {}}
SERVER_PROTOS = {"connector.game.echo": {"required string text": 1, "optional uInt32 n": 2}}
protobuf_bodies = st.fixed_dictionaries(
    {"text": st.text(max_size=8)}, optional={"n": st.lists(st.integers(-2 ** 31, 2 ** 31 - 1), max_size=3)}
).map(Protos.build(CLIENT_PROTOS, {}).client["connector.game.echo"].dumps)


@st.composite
def client_streams(draw: Any) -> bytes:
    """
    What a client may send: maybe a handshake and its ack, then packages of
    any type whose bodies are messages to the frontend's routes (JSON,
    deeply nested JSON, protobuf or garbage), messages of any bytes, or any bytes.
    """
    bodies = json_values.map(serializer.dumps) | nested | protobuf_bodies | st.binary(max_size=20)
    messages = st.builds(
        message.encode, st.sampled_from([message.REQUEST, message.NOTIFY]), st.integers(0, 1000),
        st.sampled_from(["connector.game.echo", "connector.game.note", "connector.game.fail", "x.y.z"]), bodies,
    )
    packages = st.builds(package.encode, st.integers(package.HANDSHAKE, package.KICK),
                         messages | st.binary(max_size=20)) | st.binary(max_size=12)
    opening = draw(st.sampled_from([b"", handshake_package(), handshake_package() + package.HANDSHAKE_ACK_PACKAGE]))
    return opening + b"".join(draw(st.lists(packages, max_size=6)))


class ConnectionTests(ConnectionTestsMixin, SynchronousTestCase):
    """
    Everything a client can send, through a frontend's connection: its
    packages, handshake, messages and bodies reach the decoders above and
    the dispatcher.
    """

    options = {"messages_per_second": 1000000, "max_connections": 1000000}

    def setUp(self) -> None:
        super().setUp()
        self.dispatcher.add("connector.game.fail", lambda msg, session: 1 / 0)
        self.failures: list[Any] = []

        def observe(event: dict[str, Any]) -> None:
            if "log_failure" in event:
                self.failures.append(event["log_failure"])

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

    @fuzz
    @given(st.data(), client_streams())
    def test_arbitraryStream(self, data: Any, stream: bytes) -> None:
        """
        Whatever the client sends, split anywhere, raises nothing out of
        the connection and logs no failure but the handler's own.
        """
        self.check_stream(data, stream)

    def check_stream(self, data: Any, stream: bytes) -> None:
        """
        Feed C{stream}, split as C{data} draws, to a new connection, and
        close it: nothing raises, and no failure but the handler's is logged.
        """
        del self.failures[:]
        link, connection = self.connect()
        for chunk in data.draw(splits(stream)):
            connection.data_received(chunk)
        connection.connection_lost()
        self.flushLoggedErrors(ZeroDivisionError)
        self.assertEqual([f for f in self.failures if not f.check(ZeroDivisionError)], [])


@st.composite
def protobuf_streams(draw: Any) -> bytes:
    """
    A handshake and its ack, then requests and notifies to the frontend's
    routes with protobuf, garbage or JSON bodies.
    """
    bodies = protobuf_bodies | st.binary(max_size=20) | json_values.map(serializer.dumps)
    messages = st.builds(
        message.encode, st.sampled_from([message.REQUEST, message.NOTIFY]), st.integers(1, 1000),
        st.sampled_from(["connector.game.echo", "connector.game.note", "connector.game.fail"]), bodies,
    )
    return handshake_package() + package.HANDSHAKE_ACK_PACKAGE + b"".join(
        package.encode(package.DATA, body) for body in draw(st.lists(messages, max_size=6)))


class ProtobufConnectionTests(ConnectionTests):
    """
    The same, through a frontend with protobuf schemas for its routes
    (L{CLIENT_PROTOS}, L{SERVER_PROTOS}): bodies reach the protobuf decoder,
    and answers its encoder.
    """

    def setUp(self) -> None:
        path = os.path.abspath(self.mktemp())
        os.makedirs(path)
        for name, protos in ((CLIENT_FILE, CLIENT_PROTOS), (SERVER_FILE, SERVER_PROTOS)):
            with open(os.path.join(path, name), "w", encoding="utf-8") as f:
                json.dump(protos, f)
        self.options = {**ConnectionTests.options, "protos_dir": path}
        super().setUp()
        self.assertIsNotNone(self.frontend.protos)

    @fuzz
    @given(st.data(), client_streams() | protobuf_streams())
    def test_arbitraryStream(self, data: Any, stream: bytes) -> None:
        """
        Whatever the client sends, split anywhere, raises nothing out of
        the connection and logs no failure but the handler's own.
        """
        self.check_stream(data, stream)


class FoundTests(SynchronousTestCase):
    """
    Inputs the properties above found, each once raising something other
    than its module's documented error.
    """

    def test_deepJSON(self) -> None:
        """
        A body of ten thousand C{[} is a L{ValueError}, not a
        L{RecursionError}, for a message body, a handshake and the node
        link's calls and forwarded sessions.
        """
        deep = b"[" * 10000
        self.assertRaises(ValueError, serializer.loads, deep)
        self.assertRaises(ValueError, serializer.loads, b" " + deep)
        self.assertRaises(ValueError, serializer.loads, deep.decode().encode("utf-16"))
        self.assertRaises(ProtocolError, handshake.parse_request, deep)
        self.assertRaises(wire.WireError, wire.decode_call, deep)
        forward = bytes((0,)) + len(deep).to_bytes(4, "big") + deep
        self.assertRaises(wire.WireError, wire.decode_forward, forward)

    def test_configNotUTF8(self) -> None:
        """
        A cluster file that is not UTF-8 is a L{ConfigError} naming the line,
        not a L{UnicodeDecodeError}.
        """
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"[cluster]\nname = caf\xe9\n")
        e = self.assertRaises(ConfigError, load, path, {})
        self.assertEqual(e.problems, [f"{path}: line 2 is not UTF-8 text (expected a UTF-8 file)"])
