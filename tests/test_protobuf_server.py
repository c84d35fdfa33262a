"""
Protobuf bodies on a running cluster (L{gamenet.testing.MemoryCluster}): the
handshake's C{protos}, requests decoded and answers and pushes encoded on the
frontend, for local and forwarded routes alike, and bodies that do not decode;
and bodies that do not decode sent over real sockets, by both transports,
while another client is served (L{ProtobufSocketTests}).
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.logger import globalLogPublisher
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase

from gamenet import GamenetError, Handler, handler
from gamenet.client import Client
from gamenet.protocol import message, package
from gamenet.protocol.protobuf import Protos, ProtobufError
from gamenet.testing import MemoryCluster, backend, client_port, cluster_config, frontend, start_server

ECHO = {"required string text": 1, "repeated sInt32 n": 2}
CLIENT_PROTOS = {
    "connector.game.echo": ECHO,
    "chat.room.send": {"required string content": 1, "required string target": 2},
    "chat.room.quiet": {"required string content": 1},
}
SERVER_PROTOS = {
    "connector.game.echo": ECHO,
    "connector.game.misfit": {"required string text": 1},
    "chat.room.send": {"required uInt32 code": 1, "optional string message": 2},
    "onChat": {"required string msg": 1, "required string from": 2, "required string target": 3},
}
MISFIT = {"msg": 1, "from": "x", "target": "*"}  # msg is not a string


class Game(Handler):
    def echo(self, msg, session):
        return msg

    def plain(self, msg, session):
        return {"got": msg}

    def misfit(self, msg, session):
        return {"text": 3}

    def pushmisfit(self, msg, session):
        session.send("onChat", MISFIT)
        return {}

    async def login(self, msg, session):
        await session.bind(msg["uid"])
        return {}


class Room(Handler):
    received: list[Any] = []

    def send(self, msg, session):
        Room.received.append(msg)
        session.send("onChat", {"msg": msg["content"], "from": "bob", "target": msg["target"]})
        if msg["content"] == "refuse":
            raise GamenetError("no", 409)
        return {"code": 200}

    def quiet(self, msg, session):
        Room.received.append(msg)

    async def sendmisfit(self, msg, session):
        try:
            await session.send("onChat", MISFIT)
        except GamenetError as e:
            return {"failed": [e.code, e.message]}
        return {"failed": None}

    async def channelmisfit(self, msg, session):
        channel = self.app.channels.get_channel("room", True)
        channel.add(session.uid, session.frontend_id)
        return {"missing": await channel.push_message("onChat", MISFIT)}


# Bodies of connector.game.echo that do not decode, and the reason each is answered with.
BAD_BODIES = [
    (bytes.fromhex("0802"), "connector.game.echo: field 'text': wire type 0, expected 2"),
    (bytes.fromhex("0a0568"), "connector.game.echo: field 'text': length past the end"),
    (bytes.fromhex("2001"), "connector.game.echo: unknown field number 4"),
    (bytes.fromhex("0a01681080"), "connector.game.echo: truncated varint"),
    (b'{"text":"json"}', "connector.game.echo: unknown field number 15"),
]


def protos_dir(case: SynchronousTestCase) -> str:
    """
    A directory with L{CLIENT_PROTOS} and L{SERVER_PROTOS}.
    """
    path = FilePath(case.mktemp())
    path.makedirs()
    path.child("clientProtos.json").setContent(json.dumps(CLIENT_PROTOS).encode())
    path.child("serverProtos.json").setContent(json.dumps(SERVER_PROTOS).encode())
    return path.path


def collect(case: SynchronousTestCase) -> list[dict[str, Any]]:
    """
    Every log event from now to the end of the test.
    """
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    case.addCleanup(globalLogPublisher.removeObserver, events.append)
    return events


class ProtobufServerTests(SynchronousTestCase):
    """
    A connector with C{protos_dir} set, in front of a chat backend.
    """

    def setUp(self) -> None:
        path = FilePath(protos_dir(self))
        self.protos = Protos.build(CLIENT_PROTOS, SERVER_PROTOS)
        Room.received = []
        self.cluster = MemoryCluster(
            cluster_config(frontend("connector-1", "connector", protos_dir=path.path), backend("chat-1", "chat"),
                           extra_routes=["onChat"]),
            [handler(Game, "connector", name="game"), handler(Room, "chat", name="room")],
        )
        self.cluster.start()
        self.addCleanup(self.cluster.stop)
        self.client = self.cluster.client("connector-1")
        self.wire: list[tuple[int, bytes]] = []
        decoder = package.PackageDecoder()
        data = self.client._data

        def recording(chunk: bytes) -> None:
            self.wire.extend(decoder.feed(chunk))
            data(chunk)
        self.client._data = recording  # type: ignore[method-assign]

    def request(self, route: str, msg: Any) -> Any:
        d = self.client.request(route, msg)
        self.cluster.flush()
        return self.successResultOf(d)

    def bodies(self) -> list[message.Message]:
        """
        The data messages received since the handshake, undecoded.
        """
        code_to_route = {code: route for route, code in self.client.handshake["sys"]["dict"].items()}
        return [message.decode(body, code_to_route) for kind, body in self.wire if kind == package.DATA]

    def test_handshake(self) -> None:
        """
        The handshake says C{useProto} and sends the parsed schemas with their
        version; a client that already holds that version does not get them again.
        """
        sys = self.client.handshake["sys"]
        self.assertIs(sys["useProto"], True)
        self.assertEqual(sys["protos"], self.protos.handshake)
        self.assertEqual(set(self.client.protos.client), set(CLIENT_PROTOS))
        again = self.cluster.client("connector-1", sys={"type": "x", "protoVersion": self.protos.version})
        self.assertIs(again.handshake["sys"]["useProto"], True)
        self.assertNotIn("protos", again.handshake["sys"])

    def test_localRoute(self) -> None:
        """
        A local route's request is decoded from protobuf and its answer
        encoded with the server schema, negative numbers and non-ASCII intact.
        """
        value = {"text": "héllo", "n": [-1, 2, -300]}
        self.assertEqual(self.request("connector.game.echo", value), value)
        [answer] = self.bodies()
        self.assertEqual(answer.body, self.protos.server["connector.game.echo"].dumps(value))

    def test_hookedRoute(self) -> None:
        """
        A local route with request hooks gets the decoded value as JSON: the
        hook sees the JSON body and the value, the handler the value.
        """
        seen = []
        self.cluster.apps["connector-1"].before(lambda request: seen.append((request.body, request.msg)),
                                                "connector.game.echo")
        value = {"text": "hooked", "n": [5]}
        self.assertEqual(self.request("connector.game.echo", value), value)
        self.assertEqual(seen, [(b'{"text":"hooked","n":[5]}', value)])

    def test_forwardedRoute(self) -> None:
        """
        A forwarded request reaches the backend as the JSON it decodes to; the
        backend's answer and its push go out in protobuf from the frontend.
        """
        self.assertEqual(self.request("chat.room.send", {"content": "hi", "target": "*"}), {"code": 200})
        self.assertEqual(Room.received, [{"content": "hi", "target": "*"}])
        push, answer = self.bodies()
        self.assertEqual((push.type, push.route), (message.PUSH, "onChat"))
        self.assertEqual(push.body, bytes.fromhex("0a 02 68 69 12 03 62 6f 62 1a 01 2a"))
        self.assertEqual(answer.body, b"\x08\xc8\x01")

    def test_errorFitsSchema(self) -> None:
        """
        An error answer on a route whose schema can carry it goes out in protobuf.
        """
        self.assertEqual(self.request("chat.room.send", {"content": "refuse", "target": "*"}),
                         {"code": 409, "message": "no"})
        self.assertEqual(self.bodies()[-1].body, self.protos.server["chat.room.send"].dumps(
            {"code": 409, "message": "no"}))

    def test_answerMisfits(self) -> None:
        """
        An answer that does not fit its schema is a 500, logged, and goes out
        in JSON as the schema cannot carry it.
        """
        logged = collect(self)
        self.assertEqual(self.request("connector.game.misfit", {}), {"code": 500, "message": "internal server error"})
        self.assertEqual(self.bodies()[-1].body, b'{"code":500,"message":"internal server error"}')
        self.assertEqual(len([e for e in logged if "does not fit its schema" in e.get("log_format", "")]), 1)

    def test_pushMisfits(self) -> None:
        """
        A push that does not fit its schema fails where it is sent: the
        handler that sent it answers 500, and no push reaches the client.
        """
        self.assertEqual(self.request("connector.game.pushmisfit", {}),
                         {"code": 500, "message": "internal server error"})
        self.assertEqual([m.type for m in self.bodies()], [message.RESPONSE])
        self.assertEqual(len(self.flushLoggedErrors(ProtobufError)), 1)

    def test_backendPushMisfits(self) -> None:
        """
        A backend's push that does not fit its schema fails where it was
        sent: C{session.send}'s Deferred fails with the reason (code 500);
        the frontend logs one line and nothing reaches the client.
        """
        logged = collect(self)
        self.assertEqual(self.request("chat.room.sendmisfit", {}),
                         {"failed": [500, "onChat: field 'msg' is not a string"]})
        self.assertEqual([m.type for m in self.bodies()], [message.RESPONSE])
        self.assertEqual([e["reason"] for e in logged if "does not fit its schema" in e.get("log_format", "")],
                         ["onChat: field 'msg' is not a string"])
        self.assertEqual([e for e in logged if "log_failure" in e], [])

    def test_channelPushMisfits(self) -> None:
        """
        A channel push that does not fit its schema reaches no member: the
        push names them as not reached, the frontend logs one line and the
        backend one warning with the reason; no traceback.
        """
        self.request("connector.game.login", {"uid": "ann"})
        logged = collect(self)
        self.assertEqual(self.request("chat.room.channelmisfit", {}), {"missing": ["ann"]})
        self.assertEqual([m.type for m in self.bodies()], [message.RESPONSE, message.RESPONSE])
        self.assertEqual([e["reason"] for e in logged if "does not fit its schema" in e.get("log_format", "")],
                         ["onChat: field 'msg' is not a string"])
        warnings = [e for e in logged if e.get("log_format", "").startswith("push {route} to")]
        self.assertEqual([str(e["error"]) for e in warnings], ["onChat: field 'msg' is not a string"])
        self.assertEqual([e for e in logged if "log_failure" in e], [])

    def test_jsonRoute(self) -> None:
        """
        A route without a schema stays JSON both ways.
        """
        self.assertEqual(self.request("connector.game.plain", {"a": 1}), {"got": {"a": 1}})
        self.assertEqual(self.bodies()[-1].body, b'{"got":{"a":1}}')

    def test_badBodies(self) -> None:
        """
        A request body that does not decode under its schema is answered 400
        with the reason and logged once; the connection goes on serving.
        """
        for body, reason in BAD_BODIES:
            logged = collect(self)
            self.client._pending.clear()
            answers: list[Any] = []
            self.client._pending[999] = d = Deferred()
            d.addBoth(answers.append)
            self.client.send_raw(package.encode(package.DATA, message.encode(
                message.REQUEST, 999, "connector.game.echo", body)))
            self.cluster.flush()
            self.assertEqual(answers, [{"code": 400, "message": reason}])
            lines = [e for e in logged if "does not decode" in e.get("log_format", "")]
            self.assertEqual(len(lines), 1)
            self.assertEqual(lines[0]["reason"], reason)
        self.assertEqual(self.request("connector.game.echo", {"text": "still here"}), {"text": "still here"})
        self.assertIsNone(self.client.kick_reason)

    def test_badNotify(self) -> None:
        """
        A notify whose body does not decode is dropped and logged; the next one is served.
        """
        logged = collect(self)
        self.client.send_raw(package.encode(package.DATA, message.encode(message.NOTIFY, 0, "chat.room.quiet",
                                                                         b"\x08\x01")))
        self.cluster.flush()
        self.assertEqual(len([e for e in logged if "does not decode" in e.get("log_format", "")]), 1)
        self.client.notify("chat.room.quiet", {"content": "ok"})
        self.cluster.flush()
        self.assertEqual(Room.received, [{"content": "ok"}])


class ProtobufSocketTests(TestCase):
    """
    A frontend with C{protos_dir} on a real client port (the hybrid
    connector), and clients of L{gamenet.client} over TCP and WebSocket.
    """

    timeout = 60

    async def setUp(self) -> None:
        cluster = cluster_config(frontend("connector-1", "connector", protos_dir=protos_dir(self)))
        self.app = await start_server(cluster, "connector-1", [handler(Game, "connector", name="game")])
        self.addCleanup(self.app.stopService)

    async def connect(self, transport: str) -> Client:
        client = await Client.connect(reactor, "127.0.0.1", client_port(self.app), transport, heartbeat=False)
        self.addCleanup(client.close)
        return client

    async def test_badBodies(self) -> None:
        """
        Over each transport, every body that does not decode (a JSON body
        among them, as a client unaware of the schemas sends) is answered
        400 with its reason and logged once, while another client's
        requests, sent between them, are answered; the sender stays
        connected and is served next.
        """
        for transport in ("tcp", "websocket"):
            sender, other = await self.connect(transport), await self.connect(transport)
            self.assertIsNotNone(sender.protos)
            logged = collect(self)
            answers = []
            for n, (body, _) in enumerate(BAD_BODIES):
                answers.append(sender.request("connector.game.echo", body))
                answers.append(other.request("connector.game.echo", {"text": f"other {n}", "n": [-n]}))
            got = await gatherResults(answers)
            self.assertEqual(got[0::2], [{"code": 400, "message": reason} for _, reason in BAD_BODIES], transport)
            self.assertEqual(got[1::2], [{"text": f"other {n}", "n": [-n]} for n in range(len(BAD_BODIES))])
            self.assertEqual([e["reason"] for e in logged if "does not decode" in e.get("log_format", "")],
                             [reason for _, reason in BAD_BODIES])
            self.assertEqual(await sender.request("connector.game.echo", {"text": "still here"}),
                             {"text": "still here"})
            self.assertIsNone(sender.kick_reason)
