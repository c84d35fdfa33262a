"""
The chat example's HTTP API (C{examples/chat/plugins/api.py}) on the gate:
in a L{MemoryCluster} through L{StubTreq}, and in the default cluster of
processes, where a client in a room hears an announcement posted over HTTP.
"""

from __future__ import annotations

import json
from typing import Any

import treq
from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import HTTPConnectionPool
from treq.testing import StubTreq

from examples.chat.plugins.api import DEFAULT_TOKEN
from gamenet.client import Client
from gamenet.http import HttpResource

from ._processes import MasterProcess, accepts, eventually
from .test_chat import GARDEN, LOBBY, ChatClusterMixin, chat
from .test_twistd import default_cluster

AUTH = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}


class ChatApiTests(ChatClusterMixin, SynchronousTestCase):
    """
    The API served by the gate of the chat cluster in memory.
    """

    def setUp(self):
        super().setUp()
        self.stub = StubTreq(HttpResource(self.cluster.apps["gate-1"].http, "gate-1"))

    def call(self, method: str, path: str, stub: StubTreq | None = None, **kwargs: Any) -> tuple[int, Any]:
        stub = stub or self.stub
        d = stub.request(method, f"http://127.0.0.1{path}", **kwargs)
        for _ in range(100):
            self.cluster.flush()
            stub.flush()
            if d.called:
                break
        response = self.successResultOf(d)
        d = stub.content(response)
        stub.flush()
        return response.code, json.loads(self.successResultOf(d))

    def test_applicationAtHand(self):
        """
        An HTTP handler has the whole Application: on the chat server of a
        room, its channel and the frontends' sessions (backend sessions,
        which push to the clients wherever they are connected); on a
        connector, its sessions and the session storage.
        """
        for user in ("alice@lobby", "bob@lobby", "dave@garden"):
            self.enter(user)
        home = self.chat_app(LOBBY)

        async def room(request):
            rid = request.params["rid"]
            sessions = await request.app.backend_sessions.find("rid", rid)
            for session in sessions:
                await session.send(*chat(request.json["note"], "http"))
            return {"members": sorted(request.app.channels.get_channel(rid).get_members()),
                    "sessions": sorted(session.uid for session in sessions)}

        home.http.bind_handler("POST:/room/:rid", room)
        self.assertEqual(self.call("POST", f"/room/{LOBBY}", StubTreq(HttpResource(home.http, home.server_id)),
                                   json={"note": "hi"}),
                         (200, {"members": ["alice*lobby", "bob*lobby"], "sessions": ["alice*lobby", "bob*lobby"]}))
        for user in ("alice@lobby", "bob@lobby"):
            self.assertEqual(self.pushes[user][-1], chat("hi", "http"), user)
        self.assertNotIn(chat("hi", "http"), self.pushes["dave@garden"])

        connector = self.cluster.apps[self.servers["alice@lobby"]]
        connector.http.bind_handler("/stored/:uid", lambda request: request.app.sessions.keeper.handler.query(
            request.params["uid"]))
        connector.http.bind_handler("/online", lambda request: request.app.sessions.bound_count)
        stub = StubTreq(HttpResource(connector.http, connector.server_id))
        self.assertEqual(self.call("GET", "/stored/alice*lobby", stub)[1]["rid"], LOBBY)
        self.assertEqual(self.call("GET", "/online", stub)[1],
                         sum(server == connector.server_id for server in self.servers.values()))

    def test_rooms(self):
        """
        C{GET /rooms} lists the rooms of both chat servers with their counts;
        C{GET /rooms/<rid>/users} the names in one.
        """
        for user in ("alice@lobby", "bob@lobby", "dave@garden"):
            self.enter(user)
        self.assertNotEqual(self.chat_app(LOBBY), self.chat_app(GARDEN))
        self.assertEqual(self.call("GET", "/rooms"),
                         (200, {"rooms": [{"rid": GARDEN, "users": 1}, {"rid": LOBBY, "users": 2}]}))
        self.assertEqual(self.call("GET", f"/rooms/{LOBBY}/users"), (200, {"rid": LOBBY, "users": ["alice", "bob"]}))
        self.assertEqual(self.call("GET", "/rooms/empty/users"), (200, {"rid": "empty", "users": []}))
        self.assertEqual(self.call("POST", "/rooms")[0], 405)

    def test_roomsUnavailable(self):
        """
        C{GET /rooms} is 503, naming the chat server, when one fails to answer.
        """
        self.enter("alice@lobby")

        def rooms():
            raise RuntimeError("disk on fire")

        remotes = self.chat_app(LOBBY).node.remotes
        self.addCleanup(remotes.__setitem__, "chat.chatRemote.rooms", remotes["chat.chatRemote.rooms"])
        remotes["chat.chatRemote.rooms"] = rooms
        code, body = self.call("GET", "/rooms")
        self.assertEqual((code, body["code"]), (503, 503))
        self.assertIn("cannot list the rooms: chat-", body["message"])
        self.flushLoggedErrors(RuntimeError)

    def test_announce(self):
        """
        C{POST /rooms/<rid>/announce} pushes C{onChat} from C{system} to
        everyone in the room, on both connectors, and no one else.
        """
        for user in ("alice@lobby", "bob@lobby", "carol@lobby", "dave@garden"):
            self.enter(user)
        self.assertEqual(len({self.servers[u] for u in ("alice@lobby", "bob@lobby", "carol@lobby")}), 2)
        self.assertEqual(self.call("POST", f"/rooms/{LOBBY}/announce", json={"msg": "closing soon"}, headers=AUTH),
                         (200, {"rid": LOBBY, "pushed": 3}))
        for user in ("alice@lobby", "bob@lobby", "carol@lobby"):
            self.assertEqual(self.pushes[user][-1], chat("closing soon", "system"), user)
        self.assertNotIn(chat("closing soon", "system"), self.pushes["dave@garden"])

    def test_token(self):
        """
        Without the token, or with another, the announcement is refused
        401 by the BeforeServe hook; a bad body is 400.
        """
        self.enter("alice@lobby")
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": DEFAULT_TOKEN}):
            code, body = self.call("POST", f"/rooms/{LOBBY}/announce", json={"msg": "x"}, headers=headers)
            self.assertEqual((code, body["code"]), (401, 401))
        self.assertEqual(self.call("POST", f"/rooms/{LOBBY}/announce", json={"text": "x"}, headers=AUTH)[0], 400)
        self.assertNotIn(chat("x", "system"), self.pushes["alice@lobby"])

    def test_heldNowhere(self):
        """
        A room its chat server no longer holds (it died; the room now routes
        to the other one, which holds none yet) is rebuilt from the
        connectors' sessions for an announcement, which reaches everyone.
        """
        self.enter("alice@lobby")
        self.enter("bob@lobby")
        home, other = self.chat_apps(LOBBY)
        self.cluster.kill(home.server_id)
        self.assertEqual(other.channels.channels, [])
        self.assertEqual(self.call("POST", f"/rooms/{LOBBY}/announce", json={"msg": "still here"}, headers=AUTH),
                         (200, {"rid": LOBBY, "pushed": 2}))
        self.assertEqual(self.pushes["alice@lobby"][-1], chat("still here", "system"))
        self.assertEqual(self.pushes["bob@lobby"][-1], chat("still here", "system"))
        self.assertEqual(self.call("GET", "/rooms"), (200, {"rooms": [{"rid": LOBBY, "users": 2}]}))


START_TIMEOUT = 60.0


class ChatApiProcessTests(TestCase):
    """
    The default cluster (etc/cluster.ini on free ports) run by its master: a
    client in a room hears what is announced on the gate's HTTP port.
    """

    timeout = 180

    async def setUp(self) -> None:
        self.master = MasterProcess(self)
        _, self.frontends, self.ports = default_cluster(self.master.directory)
        self.master.start(30)
        self.clients: list[Client] = []
        self.addCleanup(self.close_clients)
        self.pool = HTTPConnectionPool(reactor, False)
        self.addCleanup(self.pool.closeCachedConnections)

    def close_clients(self) -> None:
        for client in self.clients:
            client.close()

    async def test_announce(self) -> None:
        """
        A client enters a room on a connector; C{POST /rooms/<rid>/announce}
        on the gate pushes it C{onChat} from C{system}.
        """
        http = self.ports["server:gate-1 http_port"]
        connector = next(port for kind, port in self.frontends.values() if kind == "connector")
        pushes: list[Any] = []

        async def entered() -> bool:
            self.master.fail_if_exited()
            if not (accepts(http) and accepts(connector)):
                return False
            client = await Client.connect(reactor, "127.0.0.1", connector, "tcp", timeout=5).addTimeout(10, reactor)
            self.clients.append(client)
            client.on("onChat", lambda body: pushes.append(body))
            name = f"ann{len(self.clients)}"
            entering = client.request("connector.entryHandler.enter", {"username": name, "rid": "lobby"})
            answer = await entering.addTimeout(10, reactor)
            return "users" in answer

        servers = {key.split()[0][len("server:"):] for key in self.ports if key.startswith("server:")}
        await eventually(lambda: self.master.linked(servers), START_TIMEOUT, "every node link up", self.master.fail,
                         0.2)
        await eventually(entered, START_TIMEOUT, "a client in room lobby", self.master.fail, 0.2)

        async def announced() -> Any:
            response = await treq.post(f"http://127.0.0.1:{http}/rooms/lobby/announce", json={"msg": "hello all"},
                                       headers=AUTH, pool=self.pool, timeout=10)
            body = await response.json()
            return response.code == 200 and body["pushed"] >= 1 and body

        self.assertEqual((await eventually(announced, START_TIMEOUT, "the announcement", self.master.fail, 0.2))
                         ["rid"], "lobby")

        async def heard() -> bool:
            return {"msg": "hello all", "from": "system", "target": "*"} in pushes

        await eventually(heard, 20, "the announcement reaching the client", self.master.fail, 0.1)
        response = await treq.get(f"http://127.0.0.1:{http}/rooms", pool=self.pool, timeout=10)
        rooms = (await response.json())["rooms"]
        self.assertIn("lobby", [room["rid"] for room in rooms])
