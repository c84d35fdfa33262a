"""
Deterministic tests of L{gamenet.connector.connection.Connection}, the state
machine behind every connector, and of the liveness sweep of
L{gamenet.connector.frontend.Frontend}: no sockets, a L{task.Clock} for time,
and a fake link (or a L{StringTransport} under a real
L{gamenet.connector.tcp.TCPLink}) that records what the server sends.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from gamenet.config import FrontendOptions
from gamenet.connector import Connection, Frontend, State
from gamenet.connector.tcp import TCPLink
from gamenet.dispatch import Dispatcher
from gamenet.errors import GamenetError
from gamenet.hooks import HookRegistry
from gamenet.protocol import message, package, serializer
from gamenet.protocol.routes import RouteDictionary
from gamenet.session import SessionService

POMELO_SYS = {"type": "js-websocket", "version": "0.0.1", "rsa": {}, "protoVersion": 0}
PITAYA_SYS = {"platform": "mac", "libVersion": "0.3.5-release", "clientBuildNumber": "20", "clientVersion": "2.1"}


class FakeLink:
    """
    A link that records what the connection sends and how it closes.
    """

    transport_name = "tcp"
    peer = ("10.0.0.7", 4242)

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closes = 0
        self.aborts = 0

    def send(self, data: bytes) -> None:
        self.sent.append(data)

    def close(self) -> None:
        self.closes += 1

    def abort(self) -> None:
        self.aborts += 1


class CountingTransport(StringTransport):
    """
    A L{StringTransport} that also keeps each write apart.
    """

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        super().write(data)


class Learner:
    """
    A session learner that records what it is told.
    """

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def on_connect(self, session: Any) -> None:
        self.events.append(("connect", session.id))

    def on_disconnect(self, session: Any, reason: str) -> None:
        self.events.append(("disconnect", reason))


def data(message_type: int, id: int = 0, route: str = "", body: Any = None, raw: bytes | None = None) -> bytes:
    """
    A DATA package as a client would send it, route uncompressed.
    """
    encoded = raw if raw is not None else serializer.dumps({} if body is None else body)
    return package.encode(package.DATA, message.encode(message_type, id, route, encoded))


def handshake_package(sys: dict[str, Any] | None = None, user: Any = None) -> bytes:
    body: dict[str, Any] = {"sys": POMELO_SYS if sys is None else sys}
    if user is not None:
        body["user"] = user
    return package.encode(package.HANDSHAKE, serializer.dumps(body))


class ConnectionTestsMixin:
    """
    A frontend on a L{Clock} with one handler route, C{connector.game.echo},
    and helpers to drive a connection and read what it sent.
    """

    options: dict[str, Any] = {}

    def setUp(self) -> None:
        self.clock = Clock()
        self.hooks = HookRegistry()
        self.dispatcher = Dispatcher("connector-1", self.hooks)
        self.notified: list[Any] = []
        self.dispatcher.add("connector.game.echo", lambda msg, session: msg)
        self.dispatcher.add("connector.game.note", lambda msg, session: self.notified.append(msg))
        self.sessions = SessionService("connector-1")
        self.learner = Learner()
        self.sessions.learners.append(self.learner)
        dictionary = RouteDictionary.build(self.dispatcher.handlers, ["onPush"])
        self.frontend = Frontend(
            "connector-1", FrontendOptions(**self.options), dictionary, self.dispatcher, self.sessions,
            self.hooks, self.clock,
        )
        self.frontend.start()
        self.addCleanup(lambda: self.frontend._sweeper.running and self.frontend._sweeper.stop())
        self.link, self.connection = self.connect()
        self._read = 0

    def connect(self) -> tuple[Any, Any]:
        link = FakeLink()
        return link, Connection(self.frontend, link)

    def seconds(self, n: int) -> None:
        """
        Let C{n} seconds pass, one sweep each (the sweep counts its runs, so a
        single long advance would be one tick).
        """
        self.clock.pump([1] * n)

    def wire(self) -> bytes:
        """
        Everything the server has sent so far.
        """
        return b"".join(self.link.sent)

    def received(self) -> list[tuple[int, bytes]]:
        """
        The packages sent since the last call, as C{(type, body)}.
        """
        wire = self.wire()
        new, self._read = wire[self._read:], len(wire)
        return package.PackageDecoder().feed(new)

    def feed(self, *chunks: bytes) -> None:
        self.connection.data_received(b"".join(chunks))

    def lose(self) -> None:
        """
        The transport reports the connection gone, as it does after a close or an abort.
        """
        self.connection.connection_lost()

    def open(self, sys: dict[str, Any] | None = None) -> Any:
        """
        Handshake and ack; returns the new session.
        """
        self.feed(handshake_package(sys), package.HANDSHAKE_ACK_PACKAGE)
        self.received()
        self.assertEqual(self.connection.state, State.WORKING)
        return self.connection.session

    def assertKicked(self, reason: str) -> None:
        """
        The last package sent is a kick with C{reason} and the link was asked to close.
        """
        packages = self.received()
        self.assertTrue(packages, "nothing was sent")
        self.assertEqual(packages[-1], (package.KICK, serializer.dumps({"reason": reason})))
        self.assertEqual(self.link.closes, 1)
        self.assertTrue(self.connection.closing)

    def responses(self) -> list[message.Message]:
        """
        The DATA packages sent since the last read, decoded.
        """
        found = []
        for package_type, body in self.received():
            self.assertEqual(package_type, package.DATA)
            found.append(message.decode(body, self.frontend.code_to_route))
        return found


class HandshakeTests(ConnectionTestsMixin, SynchronousTestCase):
    """
    The opening of a connection: handshake, answer, ack.
    """

    def test_answer(self):
        """
        A client's handshake is answered with code 200, the heartbeat interval,
        the serializer and the route dictionary, byte for byte.
        """
        self.feed(handshake_package())
        dictionary = self.frontend.responder.dictionary
        expected = serializer.dumps({
            "code": 200,
            "sys": {
                "serializer": "json", "heartbeat": 30, "useDict": True,
                "dictVersion": dictionary.version, "dict": dictionary.route_to_code,
            },
        })
        self.assertEqual(self.wire(), package.encode(package.HANDSHAKE, expected))
        self.assertEqual(self.connection.state, State.WAIT_ACK)
        self.assertIsNone(self.connection.session)
        self.assertEqual(len(self.sessions), 0)

    def test_answerWithoutDictionary(self):
        """
        A client that already holds the dictionary's version is not sent it again.
        """
        version = self.frontend.responder.dictionary.version
        self.feed(handshake_package({**POMELO_SYS, "dictVersion": version}))
        [(package_type, body)] = self.received()
        self.assertEqual(package_type, package.HANDSHAKE)
        self.assertNotIn("dict", json.loads(body)["sys"])

    def test_ack(self):
        """
        The ack creates the client's session, tells the learners, and the server
        sends its first heartbeat at once.
        """
        self.feed(handshake_package())
        self.received()
        self.feed(package.HANDSHAKE_ACK_PACKAGE)
        self.assertEqual(self.connection.state, State.WORKING)
        self.assertEqual(self.received(), [(package.HEARTBEAT, b"")])
        session = self.connection.session
        self.assertEqual(list(self.sessions), [session])
        self.assertEqual(session.transport, "tcp")
        self.assertEqual(session.remote_address, ("10.0.0.7", 4242))
        self.assertEqual(self.learner.events, [("connect", session.id)])

    def test_handshakeAndAckTogether(self):
        """
        A handshake and its ack arriving in one read open the connection.
        """
        self.feed(handshake_package(), package.HANDSHAKE_ACK_PACKAGE)
        self.assertEqual(self.connection.state, State.WORKING)
        self.assertEqual([t for t, _ in self.received()], [package.HANDSHAKE, package.HEARTBEAT])

    def test_splitAnywhere(self):
        """
        Packages split at every byte still open the connection and serve requests.
        """
        for byte in handshake_package() + package.HANDSHAKE_ACK_PACKAGE + data(message.REQUEST, 3, "connector.game.echo", [1]):
            self.feed(bytes((byte,)))
        packages = self.received()
        self.assertEqual([t for t, _ in packages], [package.HANDSHAKE, package.HEARTBEAT, package.DATA])
        self.assertEqual(message.decode(packages[2][1], {}).body, b"[1]")

    def test_dataBeforeHandshake(self):
        """
        A DATA package before the handshake is kicked with a reason, and no session is made.
        """
        self.feed(data(message.REQUEST, 1, "connector.game.echo"))
        self.assertKicked("expected a handshake, got data")
        self.assertEqual(len(self.sessions), 0)
        self.assertEqual(self.frontend.metrics["protocol_errors"], 1)

    def test_dataBeforeAck(self):
        """
        A DATA package after the answer but before the ack is kicked.
        """
        self.feed(handshake_package())
        self.received()
        self.feed(data(message.REQUEST, 1, "connector.game.echo"))
        self.assertKicked("expected a handshake ack, got data")

    def test_heartbeatBeforeAckIgnored(self):
        """
        A heartbeat between the answer and the ack is harmless.
        """
        self.feed(handshake_package())
        self.received()
        self.feed(package.HEARTBEAT_PACKAGE)
        self.assertEqual(self.received(), [])
        self.assertFalse(self.connection.closing)

    def test_badHandshake(self):
        """
        A handshake that is not JSON with a C{sys} object is refused with code
        500 (as Pomelo does), and the connection closed without a kick.
        """
        self.feed(package.encode(package.HANDSHAKE, b'{"user":1}'))
        self.assertEqual(
            self.received(), [(package.HANDSHAKE, serializer.dumps({"code": 500, "message": "handshake has no sys object"}))]
        )
        self.assertEqual(self.link.closes, 1)
        self.assertEqual(self.frontend.metrics["handshakes_refused"], 1)
        self.lose()
        self.assertEqual(len(self.sessions), 0)

    def test_secondHandshake(self):
        """
        A second handshake is a protocol error.
        """
        self.feed(handshake_package())
        self.received()
        self.feed(handshake_package())
        self.assertKicked("expected a handshake ack, got handshake")


class ValidatorTests(ConnectionTestsMixin, SynchronousTestCase):
    """
    The application's handshake validators.
    """

    def test_syncUser(self):
        """
        A validator's return value reaches the client as C{user} in the answer;
        the validator sees the client's C{sys} and C{user}.
        """
        seen = []
        self.frontend.handshake_validators = [lambda request: seen.append(request) or {"welcome": request.user}]
        self.feed(handshake_package(user={"token": "t"}))
        [(package_type, body)] = self.received()
        self.assertEqual(package_type, package.HANDSHAKE)
        answer = json.loads(body)
        self.assertEqual((answer["code"], answer["user"]), (200, {"welcome": {"token": "t"}}))
        self.assertEqual(seen[0].sys, POMELO_SYS)
        self.feed(package.HANDSHAKE_ACK_PACKAGE)
        self.assertEqual(self.connection.state, State.WORKING)

    def test_deferred(self):
        """
        A validator returning a Deferred holds the answer until it fires.
        """
        d: Deferred[Any] = Deferred()
        self.frontend.handshake_validators = [lambda request: d]
        self.feed(handshake_package())
        self.assertEqual(self.received(), [])
        d.callback({"level": 3})
        [(package_type, body)] = self.received()
        self.assertEqual(json.loads(body)["user"], {"level": 3})
        self.feed(package.HANDSHAKE_ACK_PACKAGE)
        self.assertEqual(self.connection.state, State.WORKING)

    def test_coroutine(self):
        """
        An C{async def} validator is awaited like a Deferred.
        """
        async def validator(request):
            return {"async": True}

        self.frontend.handshake_validators = [validator]
        self.feed(handshake_package())
        [(package_type, body)] = self.received()
        answer = json.loads(body)
        self.assertEqual((package_type, answer["code"], answer["user"]), (package.HANDSHAKE, 200, {"async": True}))

    def test_refused(self):
        """
        A validator raising a L{GamenetError} refuses the handshake with that
        code and message; the connection closes without a session.
        """
        def validator(request):
            raise GamenetError("banned", 403)

        self.frontend.handshake_validators = [validator]
        self.feed(handshake_package())
        self.assertEqual(
            self.received(), [(package.HANDSHAKE, serializer.dumps({"code": 403, "message": "banned"}))]
        )
        self.assertEqual(self.link.closes, 1)
        self.assertEqual(self.frontend.metrics["handshakes_refused"], 1)
        self.lose()
        self.assertEqual(len(self.sessions), 0)
        self.assertEqual(self.learner.events, [])

    def test_refusedByDeferred(self):
        """
        A validator's Deferred failing with a L{GamenetError} refuses with its code.
        """
        self.frontend.handshake_validators = [lambda request: fail(GamenetError("old client", 501))]
        self.feed(handshake_package())
        self.assertEqual(
            self.received(), [(package.HANDSHAKE, serializer.dumps({"code": 501, "message": "old client"}))]
        )

    def test_crashed(self):
        """
        A validator raising anything else refuses with code 500 and a generic
        message; the traceback goes to the log only.
        """
        def validator(request):
            raise ValueError("secret detail")

        self.frontend.handshake_validators = [validator]
        self.feed(handshake_package())
        self.assertEqual(
            self.received(), [(package.HANDSHAKE, serializer.dumps({"code": 500, "message": "handshake failed"}))]
        )
        self.assertEqual(self.link.closes, 1)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_laterValidatorsStillRun(self):
        """
        Every validator runs; the last value that is not C{None} is the C{user} sent.
        """
        self.frontend.handshake_validators = [lambda r: {"a": 1}, lambda r: None, lambda r: succeed({"b": 2})]
        self.feed(handshake_package())
        self.assertEqual(json.loads(self.received()[0][1])["user"], {"b": 2})

    def test_ackWhileValidating(self):
        """
        A client that sends its ack and a request before the answer, while a
        validator is still deciding, is kicked: the validator cannot be skipped.
        """
        d: Deferred[Any] = Deferred()
        self.frontend.handshake_validators = [lambda request: d]
        self.feed(
            handshake_package(), package.HANDSHAKE_ACK_PACKAGE, data(message.REQUEST, 1, "connector.game.echo", 1)
        )
        self.assertKicked("unexpected handshake-ack package during the handshake")
        self.assertIsNone(self.connection.session)
        self.assertEqual(len(self.sessions), 0)
        d.errback(GamenetError("banned", 403))
        self.assertEqual(self.received(), [])
        self.lose()
        self.assertEqual(self.learner.events, [])

    def test_kickedWhileValidating(self):
        """
        A validator that refuses after the connection was kicked (here by the
        handshake timeout) sends nothing after the kick and counts no refusal.
        """
        d: Deferred[Any] = Deferred()
        self.frontend.handshake_validators = [lambda request: d]
        self.feed(handshake_package())
        self.seconds(11)
        self.assertKicked("handshake timeout")
        d.errback(GamenetError("banned", 403))
        self.assertEqual(self.received(), [])
        self.assertEqual(self.frontend.metrics["handshakes_refused"], 0)

    def test_goneWhileValidating(self):
        """
        A validator that accepts after the client left sends nothing and makes no session.
        """
        d: Deferred[Any] = Deferred()
        self.frontend.handshake_validators = [lambda request: d]
        self.feed(handshake_package())
        self.lose()
        d.callback({"late": True})
        self.assertEqual(self.wire(), b"")
        self.assertEqual(len(self.sessions), 0)
        self.assertEqual(self.learner.events, [])


class WorkingTests(ConnectionTestsMixin, SynchronousTestCase):
    """
    A connection through its handshake: requests, heartbeats and protocol errors.
    """

    def test_request(self):
        """
        A request is answered with a response carrying its id.
        """
        self.open()
        self.feed(data(message.REQUEST, 300, "connector.game.echo", {"a": "é"}))
        [response] = self.responses()
        self.assertEqual((response.type, response.id, response.error), (message.RESPONSE, 300, False))
        self.assertEqual(json.loads(response.body), {"a": "é"})
        self.assertEqual(self.frontend.metrics["requests"], 1)

    def test_requestsCountedPerRead(self):
        """
        The frontend counts every request and notify of a read, those before
        a bad message in it too, and none twice over later reads.
        """
        self.open()
        self.feed(data(message.REQUEST, 1, "connector.game.echo", {}), data(message.NOTIFY, 0, "connector.game.note"),
                  data(message.REQUEST, 2, "connector.game.echo", {}))
        self.assertEqual(self.frontend.metrics["requests"], 3)
        self.feed(data(message.REQUEST, 3, "connector.game.echo", {}))
        self.assertEqual(self.frontend.metrics["requests"], 4)
        self.feed(data(message.NOTIFY, 0, "connector.game.note"),
                  package.encode(package.DATA, message.encode(message.RESPONSE, 4, body=b"{}")))
        self.assertKicked("clients may not send a response")
        self.assertEqual(self.frontend.metrics["requests"], 5)

    def test_compressedRoute(self):
        """
        A request whose route is a dictionary code reaches its handler.
        """
        self.open()
        code = self.frontend.responder.dictionary.route_to_code["connector.game.echo"]
        raw = message.encode(message.REQUEST, 2, "connector.game.echo", b"7", route_code=code)
        self.feed(package.encode(package.DATA, raw))
        self.assertEqual(self.responses()[0].body, b"7")

    def test_notify(self):
        """
        A notify reaches its handler and gets no answer.
        """
        self.open()
        self.feed(data(message.NOTIFY, 0, "connector.game.note", {"n": 1}))
        self.assertEqual(self.notified, [{"n": 1}])
        self.assertEqual(self.received(), [])

    def test_heartbeatEcho(self):
        """
        Each client heartbeat is echoed.
        """
        self.open()
        self.feed(package.HEARTBEAT_PACKAGE, package.HEARTBEAT_PACKAGE)
        self.assertEqual(self.received(), [(package.HEARTBEAT, b""), (package.HEARTBEAT, b"")])

    def test_badPackageType(self):
        """
        A package of an unknown type is kicked with a reason naming it.
        """
        self.open()
        self.feed(b"\x07\x00\x00\x00")
        self.assertKicked("bad package type 0x07")
        self.assertEqual(self.frontend.metrics["protocol_errors"], 1)

    def test_kickPackageFromClient(self):
        """
        A client may not send a kick package.
        """
        self.open()
        self.feed(package.encode(package.KICK, b"{}"))
        self.assertKicked("unexpected kick package")

    def test_oversizeBody(self):
        """
        A package head declaring a body over C{max_body_size} is kicked as soon as
        the head arrives, before any of the body.
        """
        self.open()
        limit = self.frontend.options.max_body_size
        self.assertEqual(limit, 64 * 1024)
        self.feed(bytes((package.DATA, 0x01, 0x00, 0x01)))
        self.assertKicked(f"data package of {limit + 1} bytes exceeds the limit of {limit}")
        self.feed(b"x" * 100)
        self.assertEqual(self.received(), [])

    def test_goodPackagesBeforeBadOnes(self):
        """
        Packages that arrive in the same read before a bad head are still
        acted on: a request answered, then the kick.
        """
        self.open()
        request = package.encode(
            package.DATA, message.encode(message.REQUEST, 1, "connector.game.echo", b'{"a":1}')
        )
        self.feed(request, bytes((package.DATA, 0x01, 0x00, 0x01)))
        sent = self.received()
        self.assertEqual(message.decode(sent[0][1], {}).body, b'{"a":1}')
        limit = self.frontend.options.max_body_size
        self.assertEqual(sent[-1], (package.KICK, serializer.dumps(
            {"reason": f"data package of {limit + 1} bytes exceeds the limit of {limit}"})))

    def test_ackBeforeBadPackage(self):
        """
        An ack and a bad package in one read: the session opens (learners hear
        of it) before the kick closes it.
        """
        self.feed(handshake_package())
        self.feed(package.HANDSHAKE_ACK_PACKAGE, b"\x09\x00\x00\x00")
        self.assertIsNotNone(self.connection.session)
        self.assertEqual(self.learner.events, [("connect", self.connection.session.id)])
        self.assertKicked("bad package type 0x09")

    def test_bodyAtLimit(self):
        """
        A request whose package body is exactly C{max_body_size} is served.
        """
        self.open()
        limit = self.frontend.options.max_body_size
        head = message.encode(message.REQUEST, 1, "connector.game.echo", b"")
        filler = limit - len(head) - 2
        self.feed(data(message.REQUEST, 1, "connector.game.echo", raw=b'"' + b"x" * filler + b'"'))
        [response] = self.responses()
        self.assertEqual(len(response.body), filler + 2)

    def test_truncatedMessage(self):
        """
        A DATA package whose message is cut inside the id is kicked.
        """
        self.open()
        self.feed(package.encode(package.DATA, b"\x00\x80"))
        self.assertKicked("truncated message id")

    def test_truncatedRoute(self):
        """
        A route length pointing past the end of the message is kicked.
        """
        self.open()
        self.feed(package.encode(package.DATA, b"\x00\x01\x20ab"))
        self.assertKicked("truncated route")

    def test_emptyMessage(self):
        """
        An empty DATA package is kicked.
        """
        self.open()
        self.feed(package.encode(package.DATA, b""))
        self.assertKicked("empty message")

    def test_garbageMessage(self):
        """
        A message type outside request, notify, response and push is kicked.
        """
        self.open()
        self.feed(package.encode(package.DATA, b"\x0e\xff\xff"))
        self.assertKicked("bad message type 7")

    def test_unknownRouteCode(self):
        """
        A compressed route that is not in the dictionary is kicked.
        """
        self.open()
        self.feed(package.encode(package.DATA, b"\x01\x01\xff\xff{}"))
        self.assertKicked("unknown route code 65535")

    def test_clientSendsResponse(self):
        """
        A client may not send a response.
        """
        self.open()
        self.feed(package.encode(package.DATA, message.encode_response(1, b"{}")))
        self.assertKicked("clients may not send a response")

    def test_clientSendsPush(self):
        """
        A client may not send a push.
        """
        self.open()
        self.feed(package.encode(package.DATA, message.encode_push("onPush", b"{}")))
        self.assertKicked("clients may not send a push")

    def test_packagesAfterKickIgnored(self):
        """
        Packages arriving after a kick, even in the same read, are not served.
        """
        self.open()
        self.feed(b"\x07\x00\x00\x00" + data(message.NOTIFY, 0, "connector.game.note", 1))
        self.assertKicked("bad package type 0x07")
        self.feed(data(message.NOTIFY, 0, "connector.game.note", 2))
        self.assertEqual(self.notified, [])

    def test_pomeloError(self):
        """
        A Pomelo client's error response has no error bit and a numeric code.
        """
        self.open()
        self.feed(data(message.REQUEST, 5, "connector.game.nothing"))
        [response] = self.responses()
        self.assertFalse(response.error)
        self.assertEqual(
            json.loads(response.body), {"code": 404, "message": "no handler for connector.game.nothing"}
        )

    def test_pitayaError(self):
        """
        A client that used Pitaya's handshake gets error responses with the
        0x20 error bit and a C{"PIT-404"} code.
        """
        self.open(PITAYA_SYS)
        self.assertTrue(self.connection.pitaya)
        self.feed(data(message.REQUEST, 5, "connector.game.nothing"))
        raw = self.received()[0][1]
        self.assertEqual(raw[0], 0x24)
        response = message.decode(raw, {})
        self.assertTrue(response.error)
        self.assertEqual(
            json.loads(response.body), {"code": "PIT-404", "msg": "no handler for connector.game.nothing"}
        )
        self.feed(data(message.REQUEST, 6, "connector.game.echo", 1))
        self.assertFalse(self.responses()[0].error)

    def test_push(self):
        """
        A push through the session arrives with its route compressed.
        """
        session = self.open()
        self.assertTrue(session.send("onPush", {"n": 1}))
        [push] = self.responses()
        self.assertEqual((push.type, push.route, push.compressed_route), (message.PUSH, "onPush", True))

    def test_responseAfterClose(self):
        """
        An answer to a request that finishes after the client left is dropped and counted.
        """
        d: Deferred[Any] = Deferred()
        self.dispatcher.add("connector.game.slow", lambda msg, session: d)
        self.open()
        self.feed(data(message.REQUEST, 1, "connector.game.slow"))
        self.lose()
        d.callback(1)
        self.assertEqual(self.received(), [])
        self.assertEqual(self.frontend.metrics["responses_dropped"], 1)


class NoHeartbeatTests(ConnectionTestsMixin, SynchronousTestCase):
    """
    A frontend with C{heartbeat = 0}.
    """

    options = {"heartbeat": 0}

    def test_noHeartbeat(self):
        """
        With heartbeats off, no heartbeat follows the ack, none is echoed, and an
        idle connection is never timed out.
        """
        self.feed(handshake_package())
        self.assertNotIn("heartbeat", json.loads(self.received()[0][1])["sys"])
        self.feed(package.HANDSHAKE_ACK_PACKAGE, package.HEARTBEAT_PACKAGE)
        self.assertEqual(self.received(), [])
        self.seconds(3600)
        self.assertFalse(self.connection.closing)


class RateLimitTests(ConnectionTestsMixin, SynchronousTestCase):
    """
    C{messages_per_second}: counted per tick of the frontend's sweep.
    """

    options = {"messages_per_second": 3}

    def test_withinLimitAcrossTicks(self):
        """
        The limit applies per second: the count starts again at each tick.
        """
        self.open()
        for _ in range(4):
            self.feed(*[data(message.NOTIFY, 0, "connector.game.note", 1)] * 3)
            self.clock.advance(1)
        self.assertEqual(len(self.notified), 12)
        self.assertFalse(self.connection.closing)
        self.assertEqual(self.frontend.metrics["rate_limited"], 0)

    def test_exceeded(self):
        """
        One package over the limit in a second is kicked C{"rate limit
        exceeded"}, counted, and the rest of the read is not served.
        """
        self.open()
        self.feed(*[data(message.NOTIFY, 0, "connector.game.note", 1)] * 2)
        self.feed(*[data(message.NOTIFY, 0, "connector.game.note", 1)] * 5)
        self.assertEqual(len(self.notified), 3)
        self.assertKicked("rate limit exceeded")
        self.assertEqual(self.frontend.metrics["rate_limited"], 1)
        self.lose()
        self.assertEqual(self.learner.events[-1], ("disconnect", "rate limit exceeded"))

    def test_heartbeatsCount(self):
        """
        Heartbeats count toward the limit like any other package.
        """
        self.open()
        self.feed(package.HEARTBEAT_PACKAGE * 4)
        self.assertKicked("rate limit exceeded")

    def test_handshakeNotCounted(self):
        """
        The handshake and ack do not use up the first second's allowance.
        """
        self.feed(handshake_package(), package.HANDSHAKE_ACK_PACKAGE, *[data(message.NOTIFY, 0, "connector.game.note", 1)] * 3)
        self.assertEqual(len(self.notified), 3)
        self.assertFalse(self.connection.closing)


class LivenessTests(ConnectionTestsMixin, SynchronousTestCase):
    """
    The 1-second sweep: handshake deadline and heartbeat liveness.
    """

    options = {"heartbeat": 5, "handshake_timeout": 3}

    def test_handshakeTimeout(self):
        """
        A connection that sends nothing is kicked C{"handshake timeout"} once
        C{handshake_timeout} has passed, not before.
        """
        self.seconds(3)
        self.assertFalse(self.connection.closing)
        self.seconds(1)
        self.assertKicked("handshake timeout")
        self.assertEqual(self.frontend.metrics["handshake_timeouts"], 1)

    def test_ackTimeout(self):
        """
        A client that never acks is kicked C{"handshake timeout"} too, however
        many heartbeats it sends.
        """
        self.feed(handshake_package())
        for _ in range(3):
            self.clock.advance(1)
            self.feed(package.HEARTBEAT_PACKAGE)
        self.clock.advance(1)
        self.assertKicked("handshake timeout")

    def test_heartbeatTimeout(self):
        """
        A working client silent for more than twice the heartbeat interval is
        kicked C{"heartbeat timeout"}; the close reason reaches the session's
        close callbacks and the learners.
        """
        session = self.open()
        reasons = []
        session.on_close(lambda s, reason: reasons.append((s, reason)))
        self.seconds(10)
        self.assertFalse(self.connection.closing)
        self.seconds(1)
        self.assertKicked("heartbeat timeout")
        self.assertEqual(self.frontend.metrics["heartbeat_timeouts"], 1)
        self.lose()
        self.assertEqual(reasons, [(session, "heartbeat timeout")])
        self.assertTrue(session.closed)
        self.assertEqual(session.close_reason, "heartbeat timeout")
        self.assertEqual(self.learner.events[-1], ("disconnect", "heartbeat timeout"))
        self.assertEqual(self.frontend.connections, set())

    def test_heartbeatsKeepAlive(self):
        """
        A client that sends a heartbeat every interval is never timed out.
        """
        self.open()
        for _ in range(10):
            self.seconds(5)
            self.feed(package.HEARTBEAT_PACKAGE)
        self.assertFalse(self.connection.closing)

    def test_otherClientUnaffected(self):
        """
        Only the silent connection is kicked; a live one on the same frontend stays.
        """
        self.open()
        quiet_link, quiet = self.connect()
        for _ in range(4):
            self.clock.advance(1)
            self.feed(package.HEARTBEAT_PACKAGE)
        self.assertTrue(quiet.closing)
        self.assertFalse(self.connection.closing)

    def test_closeGrace(self):
        """
        A kicked connection whose transport does not close within 2 seconds is aborted.
        """
        self.open()
        self.connection.kick("bye")
        self.assertEqual((self.link.closes, self.link.aborts), (1, 0))
        self.clock.advance(1.9)
        self.assertEqual(self.link.aborts, 0)
        self.clock.advance(0.1)
        self.assertEqual(self.link.aborts, 1)

    def test_closeInTime(self):
        """
        A kicked connection that closes within the grace period is not aborted,
        and the kick's Deferred fires when it has closed.
        """
        self.open()
        done = []
        self.connection.kick("bye").addCallback(done.append)
        self.assertEqual(done, [])
        self.lose()
        self.assertEqual(done, [None])
        self.seconds(10)
        self.assertEqual(self.link.aborts, 0)
        self.assertEqual(self.connection.state, State.CLOSED)

    def test_kickTwice(self):
        """
        A second kick sends no second kick package and fires with the first close.
        """
        self.open()
        first = self.connection.kick("one")
        second = self.connection.kick("two")
        self.assertKicked("one")
        self.lose()
        self.assertEqual((self.successResultOf(first), self.successResultOf(second)), (None, None))
        self.assertEqual(self.learner.events[-1], ("disconnect", "one"))
        self.assertIsNone(self.successResultOf(self.connection.kick("three")))

    def test_clientCloses(self):
        """
        A client that leaves closes its session with reason C{"client closed"}.
        """
        session = self.open()
        self.lose()
        self.assertEqual(session.close_reason, "client closed")
        self.assertEqual(len(self.sessions), 0)

    def test_frontendStop(self):
        """
        Stopping the frontend kicks every connection and fires once all have closed.
        """
        self.open()
        d = self.frontend.stop()
        self.assertKicked("server shutting down")
        self.assertNoResult(d)
        self.lose()
        self.successResultOf(d)


class TCPLinkMixin(ConnectionTestsMixin):
    """
    A real L{TCPLink} on a C{transport_class} transport (a L{StringTransport}).
    """

    transport_class: type

    def connect(self) -> tuple[Any, Any]:
        self.transport = self.transport_class()
        link = TCPLink(self.frontend, False)
        link.makeConnection(self.transport)
        return link, link.connection

    def wire(self) -> bytes:
        return self.transport.value()

    def feed(self, *chunks: bytes) -> None:
        self.link.dataReceived(b"".join(chunks))


class FlowControlTests(TCPLinkMixin, SynchronousTestCase):
    """
    The outbound queue, through a real L{TCPLink} on a L{StringTransport}.
    """

    options = {"max_outbound_queue": 100}
    transport_class = CountingTransport

    def test_registeredAsProducer(self):
        """
        The connection is the transport's streaming producer.
        """
        self.assertIs(self.transport.producer, self.connection)
        self.assertTrue(self.transport.streaming)

    def test_pauseResume(self):
        """
        While the transport is paused, writes are queued; resuming sends them in one write.
        """
        session = self.open()
        writes = self.transport.writes
        del writes[:]
        self.connection.pauseProducing()
        for n in range(3):
            self.assertTrue(session.send("onPush", n))
        self.assertEqual(writes, [])
        self.connection.resumeProducing()
        self.assertEqual(len(writes), 1)
        packages = package.PackageDecoder().feed(writes[0])
        self.assertEqual([message.decode(body, self.frontend.code_to_route).body for _, body in packages], [b"0", b"1", b"2"])
        self.connection.resumeProducing()
        self.assertEqual(len(writes), 1)

    def test_overflow(self):
        """
        More than C{max_outbound_queue} bytes queued while paused aborts the
        connection as a slow consumer, counted once however much more is sent,
        and the session closes with reason C{"slow consumer"}.
        """
        session = self.open()
        self.connection.pauseProducing()
        self.assertTrue(session.send("onPush", "x" * 50))
        self.assertFalse(session.send("onPush", "x" * 50))
        self.assertTrue(self.transport.disconnected)
        self.assertFalse(session.send("onPush", "x" * 50))
        self.assertFalse(session.send("onPush", "x" * 500))
        self.assertEqual(self.frontend.metrics["slow_consumers"], 1)
        self.link.connectionLost(None)
        self.assertEqual(session.close_reason, "slow consumer")
        self.assertEqual(self.learner.events[-1], ("disconnect", "slow consumer"))

    def test_kickWhilePaused(self):
        """
        A kick while the client is not reading aborts at once: waiting for the
        kick package to drain would wait on the client.
        """
        session = self.open()
        self.connection.pauseProducing()
        self.connection.kick("bye")
        self.assertTrue(self.transport.disconnected)
        self.assertEqual(self.received(), [])
        self.assertFalse(session.send("onPush", 1))
        self.link.connectionLost(None)
        self.assertEqual(session.close_reason, "bye")

    def test_kickThenPaused(self):
        """
        Writes after a kick while the transport is paused are dropped: they
        cannot replace the kick's reason with C{"slow consumer"}.
        """
        session = self.open()
        self.connection.kick("bye")
        self.assertTrue(self.transport.disconnecting)
        self.assertFalse(self.transport.disconnected)
        self.connection.pauseProducing()
        for _ in range(5):
            session.send("onPush", "x" * 50)
        self.assertEqual(self.frontend.metrics["slow_consumers"], 0)
        self.clock.advance(2)
        self.assertTrue(self.transport.disconnected)
        self.link.connectionLost(None)
        self.assertEqual(session.close_reason, "bye")

    def test_closeUnregisters(self):
        """
        Closing unregisters the connection as producer before losing the
        connection: a transport (TLS in particular) does not close while a
        producer is registered.
        """
        self.open()
        calls = []
        self.transport.unregisterProducer = lambda: calls.append(("unregister", self.transport.disconnecting))
        self.connection.kick("bye")
        self.assertEqual(calls, [("unregister", False)])
        self.assertTrue(self.transport.disconnecting)

    def test_stopProducing(self):
        """
        When the transport goes away, what was queued is dropped.
        """
        session = self.open()
        self.connection.pauseProducing()
        session.send("onPush", 1)
        self.connection.stopProducing()
        self.link.connectionLost(None)
        self.connection.resumeProducing()
        self.assertEqual(self.received(), [])

    def test_tcpPeer(self):
        """
        The session gets the TCP peer address and the transport name C{"tcp"}.
        """
        session = self.open()
        self.assertEqual((session.transport, session.remote_address), ("tcp", ("192.168.1.1", 54321)))


class EventTransport(StringTransport):
    """
    A L{StringTransport} that records writes, producer changes, closes and
    aborts in the order they happen.
    """

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, bytes]] = []

    def write(self, data: bytes) -> None:
        self.events.append(("write", data))
        super().write(data)

    def unregisterProducer(self) -> None:
        self.events.append(("unregister", b""))
        super().unregisterProducer()

    def loseConnection(self) -> None:
        self.events.append(("lose", b""))
        super().loseConnection()

    def abortConnection(self) -> None:
        self.events.append(("abort", b""))
        super().abortConnection()


class GatheredWritesTests(TCPLinkMixin, SynchronousTestCase):
    """
    L{TCPLink} writes what is written while one read is handled in one
    transport write at the end of the read, and everything else at once,
    keeping the order of writes, closes and aborts.
    """

    options = {"messages_per_second": 3}
    transport_class = EventTransport

    def writes(self) -> list[list[tuple[int, bytes]]]:
        """
        The packages of each transport write so far, one list per write.
        """
        return [package.PackageDecoder().feed(data) for kind, data in self.transport.events if kind == "write"]

    def test_handshake(self):
        """
        The handshake answer is one write; the ack's heartbeat another.
        """
        self.feed(handshake_package())
        self.feed(package.HANDSHAKE_ACK_PACKAGE)
        self.assertEqual([[t for t, _ in packages] for packages in self.writes()],
                         [[package.HANDSHAKE], [package.HEARTBEAT]])

    def test_answersOfOneRead(self):
        """
        The answers to the requests of one read leave in one write, in order.
        """
        self.open()
        del self.transport.events[:]
        self.feed(*(data(message.REQUEST, n, "connector.game.echo", {"n": n}) for n in (1, 2, 3)))
        writes = self.writes()
        self.assertEqual(len(writes), 1)
        answers = [message.decode(body, {}) for _, body in writes[0]]
        self.assertEqual([(m.id, serializer.loads(m.body)) for m in answers], [(1, {"n": 1}), (2, {"n": 2}), (3, {"n": 3})])

    def test_pushOutsideRead(self):
        """
        A push made outside a read (a timer, another connection) is written at once.
        """
        session = self.open()
        del self.transport.events[:]
        session.send("onPush", 1)
        session.send("onPush", 2)
        self.assertEqual(len(self.writes()), 2)

    def test_pushInRead(self):
        """
        A push a handler makes goes out with the read's answers, before the
        answer of its request.
        """
        def handler(msg: Any, session: Any) -> Any:
            session.send("onPush", msg)
            return msg

        self.dispatcher.add("connector.game.pushEcho", handler)
        self.open()
        del self.transport.events[:]
        self.feed(data(message.REQUEST, 1, "connector.game.pushEcho", "a"),
                  data(message.REQUEST, 2, "connector.game.echo", "b"))
        [packages] = self.writes()
        decoded = [message.decode(body, self.frontend.code_to_route) for _, body in packages]
        self.assertEqual([(m.type, m.id, m.body) for m in decoded],
                         [(message.PUSH, 0, b'"a"'), (message.RESPONSE, 1, b'"a"'), (message.RESPONSE, 2, b'"b"')])

    def test_kickInRead(self):
        """
        A kick during a read (here: the rate limit) writes the answers
        gathered before it and the kick package before the connection is
        closed, and nothing after.
        """
        self.open()
        del self.transport.events[:]
        self.feed(*(data(message.REQUEST, n, "connector.game.echo", n) for n in range(1, 6)))
        kinds = [kind for kind, _ in self.transport.events]
        self.assertEqual(kinds, ["write", "unregister", "lose"])
        [packages] = self.writes()
        self.assertEqual([t for t, _ in packages], [package.DATA] * 3 + [package.KICK])
        self.assertEqual(packages[-1][1], serializer.dumps({"reason": "rate limit exceeded"}))

    def test_abortInRead(self):
        """
        An abort during a read hands what was gathered to the transport first.
        """
        def handler(msg: Any, session: Any) -> None:
            session.send("onPush", msg)
            self.connection.pauseProducing()
            session.kick("bye")

        self.dispatcher.add("connector.game.leave", handler)
        self.open()
        del self.transport.events[:]
        self.feed(data(message.REQUEST, 1, "connector.game.leave", "x"))
        # (StringTransport's abortConnection loses the connection too.)
        self.assertEqual([kind for kind, _ in self.transport.events][:2], ["write", "abort"])
        self.assertEqual([t for t, _ in self.writes()[0]], [package.DATA])

    def test_failedRead(self):
        """
        When handling a read raises, what it wrote still goes out, and later
        writes are no longer gathered.
        """
        class Failing:
            def __init__(self, link: TCPLink) -> None:
                self.link = link

            def data_received(self, data: bytes) -> None:
                self.link.send(data)
                raise RuntimeError("bug")

        self.link.connection = Failing(self.link)
        self.assertRaises(RuntimeError, self.link.dataReceived, b"abc")
        self.link.send(b"def")
        self.assertEqual(self.transport.events, [("write", b"abc"), ("write", b"def")])
