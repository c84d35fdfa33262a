"""
Interoperability with a third-party Pomelo implementation: Node clients built
from C{pinus-protocol}'s codec and C{pinus-protobuf} over a C{ws} WebSocket
(C{tests/interop/pomelo_connection.js}, written the way
pomelo-jsclient-websocket talks) against real gamenet frontends on the default
hybrid connector: C{pomelo_client.js} against a small game of this module
(L{PomeloClientInteropTests}), C{chat_client.js} against the chat example's
cluster with its protobuf schemas (L{ChatExampleInteropTests}).

The Node dependencies are installed into C{tests/interop/node_modules} with
C{npm ci} the first time the tests run.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from examples.chat.dispatcher import dispatch
from gamenet import Handler, handler
from gamenet.plugins import discover
from gamenet.protocol.protobuf import load_dir
from gamenet.testing import client_port, cluster_config, free_ports, frontend, start_server

from ._node import install, node_tools
from ._processes import eventually
from .test_chat import CONNECTORS, PLUGINS, PROTOS, SERVER_IDS, added, chat, chat_cluster, left

INTEROP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "interop")
SCRIPT = os.path.join(INTEROP, "pomelo_client.js")
CHAT_SCRIPT = os.path.join(INTEROP, "chat_client.js")

HANDLER_ROUTES = {
    "connector.game.echo",
    "connector.game.upper",
    "connector.game.note",
    "connector.game.pushme",
    "connector.game.kickme",
}
KICK_REASON = "kicked by gamenet: interop done"
ECHO = {"required string text": 1, "repeated uInt32 n": 2}
CLIENT_PROTOS = {"connector.game.echo": ECHO, "connector.game.upper": {"required string text": 1},
                 "connector.game.note": {"required string note": 1}}
SERVER_PROTOS = {"connector.game.echo": ECHO, "connector.game.upper": {"required string upper": 1},
                 "onChat": {"required string from": 1, "required uInt32 n": 2}}


class Game(Handler):
    """
    The handlers the Node client calls; one object per test, which records what
    reached it.

    @ivar calls: C{(method, msg)} for every request and notify served.
    @ivar closed: fires with the session's close reason once the kicked
        connection has closed.
    """

    def __init__(self) -> None:
        super().__init__(None)
        self.calls: list[tuple[str, Any]] = []
        self.closed: Deferred[str] = Deferred()

    def echo(self, msg, session):
        self.calls.append(("echo", msg))
        return msg

    def upper(self, msg, session):
        self.calls.append(("upper", msg))
        return {"upper": msg["text"].upper()}

    def note(self, msg, session):
        self.calls.append(("note", msg))

    def pushme(self, msg, session):
        self.calls.append(("pushme", msg))
        session.send("onChat", {"from": "gamenet", "n": msg["n"]})
        session.send("onRaw", {"raw": msg["n"] + 1})
        return {"pushed": 2}

    def kickme(self, msg, session):
        self.calls.append(("kickme", msg))
        session.on_close(lambda session, reason: self.closed.callback(reason))
        reactor.callLater(0, session.kick, KICK_REASON)
        return {"kicking": True}


class NodeClientMixin:
    """
    Running a script of C{tests/interop} with Node and reading its observations.

    @ivar node: the C{node} executable, found (and the scripts' packages
        installed) by L{setUpNode}.
    """

    def setUpNode(self) -> None:
        try:
            self.node, npm = node_tools("the interop test (tests/interop)")
            install(INTEROP, npm)
        except RuntimeError as e:
            self.fail(str(e))

    async def run_node(self, script: str, *args: str) -> list[dict[str, Any]]:
        """
        Run a Node script of C{tests/interop} to the end.

        @return: its observations, one dict per line, after checking it exited
            0 and observed no error nor timeout.
        """
        out, err, code = await getProcessOutputAndValue(
            self.node, [script, *args], env=dict(os.environ), path=INTEROP, reactor=reactor,
        )
        text = out.decode("utf-8")
        if code != 0:
            self.fail(f"{os.path.basename(script)} exited {code}\nstdout:\n{text}\n"
                      f"stderr:\n{err.decode('utf-8', 'replace')}")
        events = [json.loads(line) for line in text.splitlines() if line.strip()]
        self.assertEqual([e for e in events if e["event"] in ("error", "timeout")], [])
        return events

    def of(self, events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
        """
        The observations of one C{event} kind, in order.
        """
        return [e for e in events if e["event"] == kind]


class PomeloClientInteropTests(NodeClientMixin, TestCase):
    """
    The Node client's conversation with a WebSocket frontend, heartbeat 1 second,
    whose route dictionary has the handler routes and the push route C{onChat}
    (but not C{onRaw}), and whose protobuf schemas (L{CLIENT_PROTOS},
    L{SERVER_PROTOS}) cover some routes and not others.
    """

    timeout = 90

    async def setUp(self) -> None:
        self.setUpNode()
        protos = os.path.abspath(self.mktemp())
        os.makedirs(protos)
        for name, schemas in (("clientProtos.json", CLIENT_PROTOS), ("serverProtos.json", SERVER_PROTOS)):
            with open(os.path.join(protos, name), "w", encoding="utf-8") as f:
                json.dump(schemas, f)
        cluster = cluster_config(
            frontend("connector-1", "connector", heartbeat=1, protos_dir=protos),
            extra_routes=["onChat"],
        )
        self.game = Game()
        self.app = await start_server(cluster, "connector-1", [handler(self.game, "connector", name="game")])
        self.addCleanup(self.app.stopService)

    async def converse(self) -> list[dict[str, Any]]:
        """
        Run C{pomelo_client.js} against the frontend to the end.

        @return: its observations, as L{run_node} checks them.
        """
        return await self.run_node(SCRIPT, str(client_port(self.app)))

    async def test_handshake(self) -> None:
        """
        The JS client's handshake is accepted with code 200, the heartbeat
        interval, and a C{sys.dict} that holds every handler route and the
        extra push route; the client's ack opens a session.
        """
        events = await self.converse()
        [hs] = self.of(events, "handshake")
        self.assertEqual(hs["code"], 200)
        self.assertEqual(hs["heartbeat"], 1)
        routes = set(hs["dict"])
        self.assertTrue(HANDLER_ROUTES <= routes, HANDLER_ROUTES - routes)
        self.assertIn("onChat", routes)
        self.assertNotIn("onRaw", routes)
        codes = list(hs["dict"].values())
        self.assertTrue(all(isinstance(c, int) and 0 < c <= 0xFFFF for c in codes), codes)
        self.assertEqual(len(set(codes)), len(codes))
        self.assertEqual(events[0]["event"], "open")
        self.assertEqual(events[1]["event"], "handshake")
        self.assertEqual(events[2], {"event": "sent", "type": "ack"})
        # The session the ack made served requests: the first handler call is the echo.
        self.assertEqual(self.game.calls[0][0], "echo")

    async def test_requests(self) -> None:
        """
        A request whose route is a string and one whose route is compressed
        to its dictionary code both reach the right handler and are answered
        with the right bodies, non-ASCII text intact; a notify (route compressed,
        as the JS client sends it) reaches its handler with its body and gets
        no answer.
        """
        events = await self.converse()
        sent = {e.get("route"): e for e in self.of(events, "sent") if e["type"] in ("request", "notify")}
        self.assertEqual(sent["connector.game.echo"]["compressed"], False)
        self.assertEqual(sent["connector.game.echo"]["flag"], 0x00)
        self.assertEqual(sent["connector.game.upper"]["compressed"], True)
        self.assertEqual(sent["connector.game.upper"]["flag"], 0x01)
        self.assertEqual(sent["connector.game.note"]["compressed"], True)
        self.assertEqual(sent["connector.game.note"]["flag"], 0x03)

        responses = {e["id"]: (e["route"], e["body"]) for e in self.of(events, "response")}
        self.assertEqual(responses[1], ("connector.game.echo", {"text": "hello é", "n": [1, 2, 3]}))
        self.assertEqual(responses[2], ("connector.game.upper", {"upper": "COMPRESSED ROUTE"}))
        self.assertEqual(responses[3], ("connector.game.pushme", {"pushed": 2}))
        self.assertEqual(responses[4], ("connector.game.kickme", {"kicking": True}))
        self.assertEqual(len(self.of(events, "response")), 4)
        self.assertTrue(all(e["type"] == 2 for e in self.of(events, "response")))

        self.assertEqual(
            self.game.calls[:4],
            [
                ("echo", {"text": "hello é", "n": [1, 2, 3]}),
                ("upper", {"text": "compressed route"}),
                ("note", {"note": "a notify"}),
                ("pushme", {"n": 7}),
            ],
        )

    async def test_push(self) -> None:
        """
        Pushes reach the client before the response of the request that made
        them: one on a dictionary route arrives compressed to that route's
        code, one on a route outside the dictionary arrives as a string; both
        decode to the route and body sent.
        """
        events = await self.converse()
        pushes = self.of(events, "push")
        [hs] = self.of(events, "handshake")
        self.assertEqual(
            pushes,
            [
                {"event": "push", "route": "onChat", "compressed": True, "code": hs["dict"]["onChat"], "type": 3,
                 "body": {"from": "gamenet", "n": 7}, "protobuf": True},
                {"event": "push", "route": "onRaw", "compressed": False, "code": None, "type": 3,
                 "body": {"raw": 8}, "protobuf": False},
            ],
        )
        order = [(e["event"], e.get("route")) for e in events if e["event"] in ("push", "response")]
        self.assertLess(order.index(("push", "onRaw")), order.index(("response", "connector.game.pushme")))

    async def test_protobuf(self) -> None:
        """
        The handshake carries the parsed schemas with C{useProto}; the client
        (with npm pinus-protobuf) sends the bodies of the routes in
        C{protos.client} in protobuf and gamenet's handlers get the values
        (checked in L{test_requests}); gamenet answers and pushes the routes
        of C{protos.server} in protobuf, and the rest in JSON.
        """
        events = await self.converse()
        [hs] = self.of(events, "handshake")
        self.assertIs(hs["sys"]["useProto"], True)
        self.assertEqual(hs["sys"]["protos"], self.app.frontend.protos.handshake)
        sent = {e["route"]: e["protobuf"] for e in self.of(events, "sent") if e["type"] in ("request", "notify")}
        self.assertEqual(sent, {"connector.game.echo": True, "connector.game.upper": True,
                                "connector.game.note": True, "connector.game.pushme": False,
                                "connector.game.kickme": False})
        answers = {e["route"]: e["protobuf"] for e in self.of(events, "response")}
        self.assertEqual(answers, {"connector.game.echo": True, "connector.game.upper": True,
                                   "connector.game.pushme": False, "connector.game.kickme": False})

    async def test_heartbeatKickClose(self) -> None:
        """
        Gamenet sends a heartbeat after the ack and echoes each of the client's,
        sent every C{sys.heartbeat} seconds, for at least two round trips without
        the client's heartbeat timeout firing; a handler's C{session.kick}
        reaches the client as a kick package with the reason given, and the
        socket then closes cleanly on both sides.
        """
        events = await self.converse()
        beats = self.of(events, "heartbeat")
        self.assertEqual(beats[0]["sent_before"], 0)
        self.assertGreaterEqual(max(b["round_trips"] for b in beats), 2)

        kinds = [e["event"] for e in events]
        self.assertEqual(kinds[-2:], ["kick", "close"])
        [kick] = self.of(events, "kick")
        self.assertEqual(kick["body"], {"reason": KICK_REASON})
        self.assertEqual(kick["reason"], KICK_REASON)
        [close] = self.of(events, "close")
        self.assertEqual(close["code"], 1000)
        self.assertEqual(await self.game.closed, KICK_REASON)


ROOM = "lobby"
FIRST, SECOND = "ann", "bob"  # on connector-2 and connector-1: onChat crosses connectors
HELLO = "h\u00e9llo \u4e16\u754c"


class ChatExampleInteropTests(NodeClientMixin, TestCase):
    """
    C{chat_client.js}: two users of the chat example, each a Node client of
    its own, against the example's cluster (L{chat_cluster}: a gate, two
    connectors, two chat servers, the example's plugins, route dictionary and
    protobuf schemas from C{examples/chat/config}) in this process, on free
    loopback ports.
    """

    timeout = 60

    async def setUp(self) -> None:
        self.setUpNode()
        ports = free_ports(3 + len(SERVER_IDS))
        cluster = chat_cluster(ports[:3], ports[3:])
        registrations = discover(PLUGINS)
        self.apps = {}
        self.addCleanup(self.stop_cluster)
        for server_id in SERVER_IDS:
            self.apps[server_id] = await start_server(cluster, server_id, registrations)
        links = [link for app in self.apps.values() for link in app.node.links.values()]
        self.assertEqual(len(links), len(SERVER_IDS) * (len(SERVER_IDS) - 1))
        await eventually(lambda: succeed(all(link.up for link in links)), 10, "the node links", self.fail, 0.02)
        self.gate_port = ports[0]

    async def stop_cluster(self) -> None:
        await DeferredList([app.stopService() for app in self.apps.values()])

    async def converse(self) -> dict[tuple[str, str], list[dict[str, Any]]]:
        """
        Run C{chat_client.js} to the end.

        @return: its observations by C{(user, server)}, in order.
        """
        events = await self.run_node(CHAT_SCRIPT, str(self.gate_port), ROOM, FIRST, SECOND)
        self.assertEqual(events[-1], {"event": "done"})
        by_connection: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for event in events[:-1]:
            by_connection.setdefault((event.pop("user"), event.pop("server")), []).append(event)
        self.assertEqual(set(by_connection), {(user, server) for user in (FIRST, SECOND)
                                              for server in ("gate", "connector")})
        return by_connection

    async def test_handshake(self) -> None:
        """
        The gate and the connectors accept each client's handshake with
        C{useProto} and the example's schemas, as Pomelo's parser gives them
        (C{chat.chatHandler.send} from the client, C{onChat} from the
        server); the connectors' route dictionary has the routes of the
        example's C{dictionary.json} and its other push routes.
        """
        connections = await self.converse()
        protos = load_dir(PROTOS).handshake
        with open(os.path.join(PROTOS, "dictionary.json"), encoding="utf-8") as f:
            pushed = {*json.load(f), "onAdd", "onLeave"}
        self.assertEqual((list(protos["client"]), list(protos["server"])), (["chat.chatHandler.send"], ["onChat"]))
        for (user, server), events in connections.items():
            [hs] = self.of(events, "handshake")
            self.assertEqual(hs["code"], 200, (user, server))
            self.assertIs(hs["sys"]["useProto"], True, (user, server))
            self.assertEqual(hs["sys"]["protos"], protos, (user, server))
            if server == "connector":
                self.assertTrue(pushed <= set(hs["dict"]), hs["dict"])

    async def test_protobuf(self) -> None:
        """
        The clients send C{chat.chatHandler.send} in protobuf and
        C{gate.gateHandler.queryEntry} and C{connector.entryHandler.enter}
        in JSON; every C{onChat} push comes in protobuf (its route compressed)
        and C{onAdd} and C{onLeave} in JSON, as do the answers, whose routes
        have no server schema.
        """
        connections = await self.converse()
        sent, answered, pushed = set(), set(), set()
        for events in connections.values():
            sent |= {(e["route"], e["protobuf"]) for e in self.of(events, "sent") if e["type"] == "request"}
            answered |= {(e["route"], e["protobuf"]) for e in self.of(events, "response")}
            pushed |= {(e["route"], e["protobuf"], e["compressed"]) for e in self.of(events, "push")}
        self.assertEqual(sent, {("gate.gateHandler.queryEntry", False), ("connector.entryHandler.enter", False),
                                ("chat.chatHandler.send", True)})
        self.assertEqual(answered, {(route, False) for route, _ in sent})
        self.assertEqual(pushed, {("onAdd", False, True), ("onChat", True, True), ("onLeave", False, True)})

    async def test_conversation(self) -> None:
        """
        Each user is sent by the gate to the connector the example's
        dispatcher names (a different one for each), enters the room and is
        answered the example's answers; every message to everyone reaches
        both users, the private one its target only, and the first user
        hears the second arrive and leave.
        """
        connections = await self.converse()
        connectors = [self.apps[i].server for i in CONNECTORS]
        ports = set()
        for user in (FIRST, SECOND):
            [entry] = self.of(connections[user, "gate"], "response")
            port = dispatch(user, connectors).client_port
            ports.add(port)
            self.assertEqual(entry["body"], {"code": 200, "host": "127.0.0.1", "port": port})
        self.assertEqual(len(ports), 2)

        answers = {user: [(e["route"], e["body"]) for e in self.of(connections[user, "connector"], "response")]
                   for user in (FIRST, SECOND)}
        self.assertEqual(answers, {
            FIRST: [("connector.entryHandler.enter", {"users": [FIRST]}), ("chat.chatHandler.send", {})],
            SECOND: [("connector.entryHandler.enter", {"users": [FIRST, SECOND]}), ("chat.chatHandler.send", {}),
                     ("chat.chatHandler.send", {})],
        })
        pushes = {user: [(e["route"], e["body"]) for e in self.of(connections[user, "connector"], "push")]
                  for user in (FIRST, SECOND)}
        self.assertEqual(pushes, {
            FIRST: [added(SECOND), chat(HELLO, FIRST), chat(f"hi {FIRST}", SECOND), chat("just you", SECOND, FIRST),
                    left(SECOND)],
            SECOND: [chat(HELLO, FIRST), chat(f"hi {FIRST}", SECOND)],
        })
        self.assertEqual([e for events in connections.values() for e in self.of(events, "kick")], [])
