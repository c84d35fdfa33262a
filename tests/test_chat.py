"""
The chat example (C{examples/chat}) end to end, as Pomelo's chat demo client
uses it: ask the gate for a connector with C{gate.gateHandler.queryEntry},
enter a room there with C{connector.entryHandler.enter}, talk with
C{chat.chatHandler.send}, and watch the pushes C{onAdd}, C{onLeave} and
C{onChat}.

L{ChatTests} runs the whole cluster in memory with L{MemoryCluster};
L{LoopbackChatTests} runs it over real loopback sockets with WebSocket and
TCP clients.
"""

from __future__ import annotations

import os

from twisted.internet import reactor
from twisted.internet.defer import DeferredList
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

from examples.chat.dispatcher import dispatch
from gamenet.client import Client
from gamenet.config import load
from gamenet.plugins import discover
from gamenet.protocol import message, package
from gamenet.testing import MemoryCluster, backend, cluster_config, free_ports, frontend, start_server

PLUGINS = ["examples.chat.plugins"]
ROUTES = ["onChat", "onAdd", "onLeave"]
SERVER_IDS = ["gate-1", "connector-1", "connector-2", "chat-1", "chat-2"]
CONNECTORS = ["connector-1", "connector-2"]
CHATS = ["chat-1", "chat-2"]
# The demo's protobuf schemas, as etc/cluster.ini turns them on.
PROTOS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "chat", "config")

# Names and rooms chosen so that users land on both connectors and rooms on
# both chat servers; ChatTests.test_spread checks that they do.
LOBBY, GARDEN = "lobby", "garden"


def chat_cluster(client_ports, node_ports=None, drain_timeout=0.0):
    """
    The demo's topology in small: a gate, two connectors, two chat servers.

    @param client_ports: the client ports of C{gate-1}, C{connector-1} and C{connector-2}.
    @param node_ports: the node port of each server, in L{SERVER_IDS} order; 0 when not given.
    @param drain_timeout: the cluster's (0: a stopping server does not wait).
    """
    node_ports = node_ports or [0] * len(SERVER_IDS)
    ports = dict(zip(SERVER_IDS, node_ports))
    return cluster_config(
        frontend("gate-1", "gate", client_ports[0], ports["gate-1"], protos_dir=PROTOS),
        frontend("connector-1", "connector", client_ports[1], ports["connector-1"], protos_dir=PROTOS),
        frontend("connector-2", "connector", client_ports[2], ports["connector-2"], protos_dir=PROTOS),
        backend("chat-1", "chat", ports["chat-1"]),
        backend("chat-2", "chat", ports["chat-2"]),
        extra_routes=ROUTES,
        drain_timeout=drain_timeout,
    )


def added(name):
    return ("onAdd", {"route": "onAdd", "user": name})


def left(name):
    return ("onLeave", {"route": "onLeave", "user": name})


def chat(msg, sender, target="*"):
    return ("onChat", {"msg": msg, "from": sender, "target": target})


# The conversation both test classes hold, and what each user must see.
# Users are "name@room"; each step is (what, user, argument).
SCRIPT = [
    ("enter", "alice@lobby", ["alice"]),
    ("enter", "bob@lobby", ["alice", "bob"]),
    ("enter", "dave@garden", ["dave"]),
    ("enter", "carol@lobby", ["alice", "bob", "carol"]),
    ("enter", "erin@garden", ["dave", "erin"]),
    ("enter", "alice@garden", ["dave", "erin", "alice"]),
    ("enter", "frank@garden", ["dave", "erin", "alice", "frank"]),
    ("say", "alice@lobby", ("hello lobby", "*")),
    ("say", "dave@garden", ("psst", "erin")),
    ("say", "frank@garden", ("hi garden", "*")),
    ("quit", "bob@lobby", None),
    ("say", "carol@lobby", ("bye bob", "*")),
    ("say", "alice@garden", ("just you", "frank")),
    ("quit", "erin@garden", None),
    ("say", "dave@garden", ("last words", "*")),
    ("say", "carol@lobby", ("the end", "*")),
]

EXPECTED = {
    "alice@lobby": [added("bob"), added("carol"), chat("hello lobby", "alice"), left("bob"),
                    chat("bye bob", "carol"), chat("the end", "carol")],
    "bob@lobby": [added("carol"), chat("hello lobby", "alice")],
    "carol@lobby": [chat("hello lobby", "alice"), left("bob"), chat("bye bob", "carol"),
                    chat("the end", "carol")],
    "dave@garden": [added("erin"), added("alice"), added("frank"), chat("hi garden", "frank"), left("erin"),
                    chat("last words", "dave")],
    "erin@garden": [added("alice"), added("frank"), chat("psst", "dave", "erin"), chat("hi garden", "frank")],
    "alice@garden": [added("frank"), chat("hi garden", "frank"), left("erin"), chat("last words", "dave")],
    "frank@garden": [chat("hi garden", "frank"), chat("just you", "alice", "frank"), left("erin"),
                     chat("last words", "dave")],
}


class ChatClusterMixin:
    """
    The chat example's cluster in a L{MemoryCluster}, and users acting in it.

    @ivar drain_timeout: the cluster's.
    """

    drain_timeout = 0.0

    def setUp(self):
        self.cluster = MemoryCluster(chat_cluster([3014, 3050, 3051], drain_timeout=self.drain_timeout),
                                     discover(PLUGINS))
        self.cluster.start()
        self.addCleanup(self.cluster.stop)
        self.by_port = {self.cluster.apps[i].server.client_port: i for i in CONNECTORS}
        self.clients = {}
        self.pushes = {}
        self.servers = {}

    def request(self, client, route, msg):
        d = client.request(route, msg)
        self.cluster.flush()
        return self.successResultOf(d)

    def query_entry(self, name):
        """
        Ask the gate for C{name}'s connector as the demo client does, then
        leave the gate; the id of the connector it named.
        """
        gate = self.cluster.client("gate-1")
        entry = self.request(gate, "gate.gateHandler.queryEntry", {"uid": name})
        gate.close()
        self.assertEqual(set(entry), {"code", "host", "port"})
        self.assertEqual((entry["code"], entry["host"]), (200, "127.0.0.1"))
        return self.by_port[entry["port"]]

    def enter(self, user, key=None):
        """
        Take C{user} (C{"name@room"}) through the gate to its connector and
        into its room, recording every push it gets in C{self.pushes[key]}
        (C{key} is C{user} unless given).

        @return: the answer to C{connector.entryHandler.enter}.
        """
        name, rid = user.split("@")
        key = key or user
        server_id = self.query_entry(name)
        client = self.cluster.client(server_id)
        self.clients[key], self.pushes[key], self.servers[key] = client, [], server_id
        client.on("*", self.pushes[key].append)
        return self.request(client, "connector.entryHandler.enter", {"username": name, "rid": rid})

    def say(self, user, content, target="*"):
        """
        C{chat.chatHandler.send} from C{user}; the answer.
        """
        return self.request(self.clients[user], "chat.chatHandler.send",
                            {"rid": user.split("@")[1], "content": content, "from": user.split("@")[0],
                             "target": target})

    def quit(self, user):
        self.clients[user].close()
        self.cluster.flush()

    def run_script(self):
        for what, user, argument in SCRIPT:
            if what == "enter":
                self.assertEqual(self.enter(user), {"users": argument}, user)
            elif what == "say":
                self.assertEqual(self.say(user, *argument), {}, user)
            else:
                self.quit(user)

    def chat_app(self, rid):
        """
        The chat server the demo's dispatcher picks for room C{rid}.
        """
        servers = [self.cluster.apps[i].server for i in CHATS]
        return self.cluster.apps[dispatch(rid, servers).id]

    def chat_apps(self, rid):
        """
        The chat server of room C{rid} and the other one.
        """
        home = self.chat_app(rid)
        return home, self.cluster.apps[next(i for i in CHATS if i != home.server_id)]


class ChatTests(ChatClusterMixin, SynchronousTestCase):
    """
    The chat example in a L{MemoryCluster}.
    """

    def test_spread(self):
        """
        The gate sends each name to the connector C{dispatch(name, connectors)}
        names; the script's users use both connectors and its rooms both chat
        servers; a query without a uid answers C{{"code": 500}}.
        """
        self.run_script()
        connectors = [self.cluster.apps[i].server for i in CONNECTORS]
        for user, server_id in self.servers.items():
            self.assertEqual(server_id, dispatch(user.split("@")[0], connectors).id, user)
        self.assertEqual(set(self.servers.values()), set(CONNECTORS))
        self.assertEqual({self.chat_app(LOBBY).server_id, self.chat_app(GARDEN).server_id}, set(CHATS))
        gate = self.cluster.client("gate-1")
        self.assertEqual(self.request(gate, "gate.gateHandler.queryEntry", {}), {"code": 500})
        self.assertEqual(self.request(gate, "gate.gateHandler.queryEntry", {"uid": ""}), {"code": 500})

    def test_gateFollowsAvailability(self):
        """
        With one connector down the gate sends every name to the other; with
        no link up to any connector (the gate has just started) it picks
        among every connector of the cluster, as the demo does, rather than
        answering 500.
        """
        names = [f"user{n}" for n in range(8)]
        self.cluster.kill("connector-2")
        self.assertEqual({self.query_entry(name) for name in names}, {"connector-1"})
        self.cluster.kill("connector-1")
        connectors = sorted((self.cluster.apps[i].server for i in CONNECTORS), key=lambda server: server.id)
        self.assertEqual([self.query_entry(name) for name in names],
                         [dispatch(name, connectors).id for name in names])

    def test_conversation(self):
        """
        Entering answers the names in the room in join order; every user gets
        exactly the C{onAdd}, C{onChat} and C{onLeave} pushes of its own room
        (private messages only to their target), in order; C{send} answers C{{}}.
        """
        self.run_script()
        self.assertEqual(self.pushes, EXPECTED)
        self.assertEqual(expected_after(len(SCRIPT) - 1), EXPECTED)

    def test_protobuf(self):
        """
        The frontends speak the demo's protobuf schemas (C{examples/chat/config},
        as C{etc/cluster.ini} has them): the handshake carries them, a send
        goes in protobuf and its C{onChat} push comes back in protobuf.
        """
        self.enter("ann@lobby")
        client = self.clients["ann@lobby"]
        protos = client.handshake["sys"]["protos"]
        self.assertEqual((list(protos["client"]), list(protos["server"])), (["chat.chatHandler.send"], ["onChat"]))
        seen = []
        data = client._data
        client._data = lambda chunk: (seen.append(chunk), data(chunk))
        self.assertEqual(self.say("ann@lobby", "hi"), {})
        [push] = [m for kind, body in package.PackageDecoder().feed(b"".join(seen)) if kind == package.DATA
                  for m in [message.decode(body, client._code_to_route)] if m.type == message.PUSH]
        self.assertEqual((push.route, push.body), ("onChat", bytes.fromhex("0a 02 68 69 12 03 61 6e 6e 1a 01 2a")))

    def test_roomOnOneChatServer(self):
        """
        A room is a channel on the one chat server the dispatcher picks for
        its name, with each member known on its connector; the other chat
        server has no such channel. A member who left is gone from it.
        """
        self.run_script()
        for rid, members in [(LOBBY, ["alice", "carol"]), (GARDEN, ["dave", "alice", "frank"])]:
            home = self.chat_app(rid)
            channel = home.channels.get_channel(rid)
            self.assertEqual(channel.get_members(), [f"{name}*{rid}" for name in members])
            for name in members:
                self.assertEqual(channel.get_member(f"{name}*{rid}"),
                                 (f"{name}*{rid}", self.servers[f"{name}@{rid}"]))
            for server_id in CHATS:
                if server_id != home.server_id:
                    self.assertIsNone(self.cluster.apps[server_id].channels.get_channel(rid))

    def test_sameName(self):
        """
        The same name twice in one room is refused with C{{"code": 500,
        "error": true}} and nobody is told; when the refused client leaves,
        nobody is told either. The same name in another room is accepted.
        """
        self.assertEqual(self.enter("alice@lobby"), {"users": ["alice"]})
        self.assertEqual(self.enter("bob@lobby"), {"users": ["alice", "bob"]})
        self.assertEqual(self.enter("bob@lobby", "twin"), {"code": 500, "error": True})
        self.quit("twin")
        self.assertEqual(self.enter("bob@garden"), {"users": ["bob"]})
        self.assertEqual(self.pushes["alice@lobby"], [added("bob")])
        self.assertEqual(self.pushes["twin"], [])
        self.assertEqual(self.chat_app(LOBBY).channels.get_channel(LOBBY).get_members(),
                         ["alice*lobby", "bob*lobby"])
        self.assertEqual(self.say("alice@lobby", "still there?"), {})
        self.assertEqual(self.pushes["alice@lobby"], [added("bob"), chat("still there?", "alice")])
        self.assertEqual(self.pushes["bob@lobby"], [chat("still there?", "alice")])
        self.assertEqual(self.pushes["bob@garden"], [])

    def test_reenter(self):
        """
        A user who left may enter the same room again; the others see it leave and come back.
        """
        self.enter("alice@lobby")
        self.enter("carol@lobby")
        self.quit("carol@lobby")
        self.assertEqual(self.enter("carol@lobby"), {"users": ["alice", "carol"]})
        self.assertEqual(self.pushes["alice@lobby"], [added("carol"), left("carol"), added("carol")])

    def test_privateToStranger(self):
        """
        A private message to a name not in the room, even one in another
        room, answers code 500 and is pushed to nobody.
        """
        self.enter("alice@lobby")
        self.enter("dave@garden")
        for target in ("zed", "dave"):
            answer = self.say("alice@lobby", "anyone?", target)
            self.assertEqual(answer["code"], 500, target)
        self.assertEqual(self.pushes, {"alice@lobby": [], "dave@garden": []})

    def test_chatServerRestart(self):
        """
        Rooms follow routing: while a room's chat server is down its users'
        messages go to the other chat server, which rebuilds the room from
        the connectors' sessions and pushes to every member; once the room's
        server is back the room is on it again, the other has dropped its
        copy, and leaving the room tells the others.
        """
        self.enter("alice@lobby")
        self.enter("carol@lobby")
        home, other = self.chat_apps(LOBBY)
        self.cluster.kill(home.server_id)
        self.assertEqual(self.say("alice@lobby", "anyone?"), {})
        self.assertEqual(other.channels.get_channel(LOBBY).get_members(), ["alice*lobby", "carol*lobby"])
        self.cluster.start(home.server_id)
        self.assertEqual(other.channels.channels, [])
        self.assertEqual(self.say("carol@lobby", "back?"), {})
        self.assertEqual(self.cluster.apps[home.server_id].channels.channels, [LOBBY])
        self.quit("carol@lobby")
        self.assertEqual(self.pushes["alice@lobby"],
                         [added("carol"), chat("anyone?", "alice"), chat("back?", "carol"), left("carol")])
        self.assertEqual(self.pushes["carol@lobby"], [chat("anyone?", "alice"), chat("back?", "carol")])

    def test_badEnter(self):
        """
        Entering without a name or a room answers C{{"code": 500, "error": true}}.
        """
        client = self.cluster.client("connector-1")
        for msg in ({"rid": LOBBY}, {"username": "alice"}, {"username": "", "rid": LOBBY}):
            self.assertEqual(self.request(client, "connector.entryHandler.enter", msg),
                             {"code": 500, "error": True})
        self.assertEqual(self.cluster.apps["connector-1"].sessions.bound_count, 0)

    def test_sendBeforeEnter(self):
        """
        C{chat.chatHandler.send} from a client that has not entered a room answers code 500.
        """
        client = self.cluster.client("connector-1")
        answer = self.request(client, "chat.chatHandler.send", {"content": "hi", "target": "*"})
        self.assertEqual(answer, {"code": 500, "message": "not in a room"})



WAIT = 10.0  # the longest any wait in the loopback test may take


class ShippedConfigTests(SynchronousTestCase):
    """
    The default cluster file, C{etc/cluster.ini}, runs the example as the demo does.
    """

    def test_protobufAndDictionary(self):
        """
        Every frontend has the demo's protobuf schemas (C{examples/chat/config});
        the route dictionary takes the demo's C{dictionary.json} first, then
        the other push routes, and the connectors compress routes with it.
        """
        cluster = load(os.path.join(os.path.dirname(PROTOS), "..", "..", "etc", "cluster.ini"), {})
        frontends = [server for server in cluster.servers if server.options is not None]
        self.assertEqual({server.type for server in frontends}, {"gate", "connector"})
        self.assertEqual({server.options.protos_dir for server in frontends}, {PROTOS})
        self.assertEqual(cluster.extra_routes, ("onChat", "onAdd", "onLeave", "onRoomStats"))
        self.assertTrue(all(server.options.use_dict for server in frontends if server.type == "connector"))


class LoopbackChatTests(TestCase):
    """
    The chat example over real loopback sockets: five servers in this
    process, linked by their node ports, and clients over WebSocket and TCP.
    """

    timeout = 60

    async def wait_for(self, predicate, what):
        """
        Wait until C{predicate()} is true, at most L{WAIT} seconds.
        """
        deadline = reactor.seconds() + WAIT
        while not predicate():
            if reactor.seconds() > deadline:
                self.fail(f"timed out waiting for {what}")
            await deferLater(reactor, 0.01, lambda: None)

    async def start_cluster(self):
        ports = free_ports(3 + len(SERVER_IDS))
        self.cluster = chat_cluster(ports[:3], ports[3:])
        registrations = discover(PLUGINS)
        self.apps = {}
        self.addCleanup(self.stop_cluster)
        for server_id in SERVER_IDS:
            self.apps[server_id] = await start_server(self.cluster, server_id, registrations)
        await self.wait_for(lambda: all(link.up for app in self.apps.values() for link in app.node.links.values()),
                            "the node links")
        self.gate_port = ports[0]
        self.by_port = {ports[1]: "connector-1", ports[2]: "connector-2"}

    async def stop_cluster(self):
        await DeferredList([app.stopService() for app in self.apps.values()])

    async def connect(self, port, transport):
        client = await Client.connect(reactor, "127.0.0.1", port, transport, timeout=WAIT)
        self.addCleanup(self.close, client)
        return client

    async def close(self, client):
        await client.close().addTimeout(WAIT, reactor)

    async def enter(self, user, transport, key=None):
        """
        Take C{user} through the gate to its connector and into its room
        over C{transport}, recording its pushes in C{self.pushes[key]}
        (C{key} is C{user} unless given).
        """
        name, rid = user.split("@")
        key = key or user
        gate = await self.connect(self.gate_port, transport)
        entry = await gate.request("gate.gateHandler.queryEntry", {"uid": name})
        await self.close(gate)
        self.assertEqual((entry["code"], entry["host"]), (200, "127.0.0.1"))
        server_id = self.by_port[entry["port"]]
        connectors = [self.apps[i].server for i in CONNECTORS]
        self.assertEqual(server_id, dispatch(name, connectors).id)
        client = await self.connect(entry["port"], transport)
        self.clients[key], self.pushes[key], self.servers[key] = client, [], server_id
        client.on("*", self.pushes[key].append)
        return await client.request("connector.entryHandler.enter", {"username": name, "rid": rid})

    async def test_conversation(self):
        """
        The conversation of L{ChatTests.test_conversation}, over sockets:
        users on both connectors, half over WebSocket and half over TCP, in
        two rooms on both chat servers, get exactly the same pushes in the
        same order; the same name in the same room is refused; a private
        message to a stranger answers code 500.
        """
        await self.start_cluster()
        self.clients, self.pushes, self.servers = {}, {}, {}
        transports = {}
        for n, (what, user, argument) in enumerate(SCRIPT):
            if what == "enter":
                transports[user] = ("websocket", "tcp")[n % 2]
                self.assertEqual(await self.enter(user, transports[user]), {"users": argument}, user)
                # Those already in the room must have heard of the newcomer
                # before the next step, so that the order of steps is the order seen.
                await self.wait_until_expected(n)
            elif what == "say":
                content, target = argument
                name, rid = user.split("@")
                answer = await self.clients[user].request(
                    "chat.chatHandler.send", {"rid": rid, "content": content, "from": name, "target": target})
                self.assertEqual(answer, {}, user)
                await self.wait_until_expected(n)
            else:
                await self.close(self.clients[user])
                await self.wait_until_expected(n)
        self.assertEqual(self.pushes, EXPECTED)
        self.assertEqual(set(self.servers.values()), set(CONNECTORS))
        self.assertEqual(set(transports.values()), {"websocket", "tcp"})
        self.assertEqual({dispatch(rid, [self.apps[i].server for i in CHATS]).id for rid in (LOBBY, GARDEN)},
                         set(CHATS))

        twin = await self.enter("carol@lobby", "websocket", "twin")
        self.assertEqual(twin, {"code": 500, "error": True})
        answer = await self.clients["alice@lobby"].request(
            "chat.chatHandler.send", {"rid": LOBBY, "content": "hey", "from": "alice", "target": "bob"})
        self.assertEqual(answer["code"], 500)
        answer = await self.clients["alice@lobby"].request(
            "chat.chatHandler.send", {"rid": LOBBY, "content": "final", "from": "alice", "target": "*"})
        self.assertEqual(answer, {})
        await self.wait_for(lambda: all(len(self.pushes[user]) == len(EXPECTED[user]) + 1
                                        for user in ("alice@lobby", "carol@lobby")), "the last message")
        self.assertEqual(self.pushes["carol@lobby"][-1], chat("final", "alice"))
        self.assertEqual(self.pushes["alice@lobby"][-1], chat("final", "alice"))
        self.assertEqual(self.pushes["alice@garden"], EXPECTED["alice@garden"])
        self.assertEqual(self.pushes["twin"], [])

    async def wait_until_expected(self, step):
        """
        Wait until every user has every push the script's steps up to
        C{step} give it, then check nobody got more.
        """
        expected = expected_after(step)
        await self.wait_for(lambda: all(len(self.pushes.get(user, [])) >= len(pushes)
                                        for user, pushes in expected.items()), f"the pushes of step {step}")
        for user, pushes in expected.items():
            self.assertEqual(self.pushes.get(user, []), pushes, f"{user} after step {step}")


def expected_after(step):
    """
    What each user has been pushed once the script ran up to C{step}: a
    small model of the chat servers.
    """
    rooms = {}
    gone = set()
    pushes = {}
    for what, user, argument in SCRIPT[:step + 1]:
        name, rid = user.split("@")
        members = rooms.setdefault(rid, [])
        if what == "enter":
            for other in members:
                pushes[other].append(added(name))
            members.append(user)
            pushes[user] = []
        elif what == "say":
            content, target = argument
            receivers = members if target == "*" else [f"{target}@{rid}"]
            for other in receivers:
                pushes[other].append(chat(content, name, target))
        else:
            members.remove(user)
            gone.add(user)
            for other in members:
                pushes[other].append(left(name))
    return pushes
