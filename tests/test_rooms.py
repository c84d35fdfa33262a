"""
Rooms that follow routing: C{app.backend_sessions.find} over the frontends'
C{find} sys call, C{ChannelService.rebuild} and C{follow_routing}, and the
chat example's rooms moving between its two chat servers when one stops,
dies or comes back. All but L{ChatProcessTests} run in a L{MemoryCluster}; it runs the chat
example as an operator does, the master and its five child processes, and
kills a chat server with SIGKILL.
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from typing import Any

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from examples.chat.dispatcher import dispatch
from gamenet.client import Client
from gamenet.errors import Unavailable
from gamenet.testing import free_ports

from ._processes import CHAT_EXAMPLE, MasterProcess, accepts, alive, cluster_section, eventually, server_section
from .test_chat import CHATS, CONNECTORS, GARDEN, LOBBY, SERVER_IDS, ChatClusterMixin, added, chat, left


class FindTests(ChatClusterMixin, SynchronousTestCase):
    """
    C{app.backend_sessions.find(key, value, frontend_type)}.
    """

    def find(self, server_id, *args):
        d = self.cluster.apps[server_id].backend_sessions.find(*args)
        self.cluster.flush()
        return d

    def test_merged(self):
        """
        The live sessions bound to a uid whose setting equals the value, from
        every frontend, merged (a frontend asking answers for itself without
        a node call); not those of another room, not one that closed.
        """
        for user in ("alice@lobby", "bob@lobby", "carol@lobby", "dave@garden"):
            self.enter(user)
        self.quit("carol@lobby")
        expected = [("alice*lobby", self.servers["alice@lobby"]), ("bob*lobby", self.servers["bob@lobby"])]
        self.assertEqual({frontend for _, frontend in expected}, set(CONNECTORS))
        for asking in ("chat-1", "connector-1"):
            found = self.successResultOf(self.find(asking, "rid", LOBBY))
            self.assertEqual(sorted((s.uid, s.frontend_id) for s in found), expected, asking)
            self.assertEqual({s.get("rid") for s in found}, {LOBBY})
        self.assertEqual(self.successResultOf(self.find("chat-1", "rid", "nowhere")), [])

    def test_guest(self):
        """
        A session not bound to a uid is not found, whatever its settings.
        """
        client = self.cluster.client("connector-1")
        self.addCleanup(client.close)
        session = next(iter(self.cluster.apps["connector-1"].sessions))
        session.set("rid", LOBBY)
        self.assertEqual(self.successResultOf(self.find("chat-1", "rid", LOBBY)), [])

    def test_frontendType(self):
        """
        With a frontend type, only the frontends of that type are asked.
        """
        self.enter("alice@lobby")
        asked = self.count_finds()
        self.assertEqual(len(self.successResultOf(self.find("chat-1", "rid", LOBBY, "connector"))), 1)
        self.assertEqual(asked, {"connector-1": 1, "connector-2": 1})
        self.successResultOf(self.find("chat-1", "rid", LOBBY))
        self.assertEqual(asked, {"connector-1": 2, "connector-2": 2, "gate-1": 1})

    def count_finds(self):
        """
        Count the C{find} sys calls each frontend answers from now on.
        """
        asked = {}
        for server_id in ("gate-1", *CONNECTORS):
            sys = self.cluster.apps[server_id].node.sys

            def find(key, value, server_id=server_id, find=sys.find):
                asked[server_id] = asked.get(server_id, 0) + 1
                return find(key, value)

            self.patch(sys, "_calls", {**sys._calls, "find": find})
        return asked

    def test_hungFrontend(self):
        """
        A frontend that does not answer fails the whole query with
        L{Unavailable} naming it, once C{rpc_timeout} has passed: never a
        partial answer. Asked again while it is still hung, the query fails
        at once.
        """
        self.enter("alice@lobby")
        self.enter("carol@lobby")
        hung = self.servers["carol@lobby"]
        self.cluster.freeze(hung)
        d = self.find("chat-1", "rid", LOBBY, "connector")
        self.assertNoResult(d)
        self.cluster.advance(self.cluster.cluster.rpc_timeout + 1)
        error = self.failureResultOf(d, Unavailable).value
        self.assertIn(f"{hung}: ", error.message)
        self.assertIn("rid = 'lobby'", error.message)
        self.failureResultOf(self.find("chat-1", "rid", LOBBY, "connector"), Unavailable)
        self.cluster.thaw(hung)
        self.cluster.advance(3)
        self.assertEqual(len(self.successResultOf(self.find("chat-1", "rid", LOBBY, "connector"))), 2)

    def test_frontendComingUp(self):
        """
        A frontend that membership counts but whose link is not up yet (it
        has just started, or this server has) is asked once its link comes
        up, not failed at once; when it does not come up within
        C{rpc_timeout}, the query fails naming it.
        """
        self.enter("alice@lobby")
        self.enter("bob@lobby")
        late = self.servers["bob@lobby"]
        self.cluster.kill(late)
        node = self.cluster.apps["chat-1"].node
        node.membership.add(late)  # as a master says once it has logged in again
        d = self.find("chat-1", "rid", LOBBY, "connector")
        self.assertNoResult(d)
        self.cluster.start(late)
        self.assertEqual([s.uid for s in self.successResultOf(d)], ["alice*lobby"])

        self.cluster.kill(late)
        node.membership.add(late)
        d = self.find("chat-1", "rid", LOBBY, "connector")
        self.cluster.advance(self.cluster.cluster.rpc_timeout - 0.5)
        self.assertNoResult(d)
        self.cluster.advance(1)
        self.assertIn(f"{late}: ", self.failureResultOf(d, Unavailable).value.message)

    def test_deadFrontend(self):
        """
        A frontend whose process is gone is not asked: its sessions are gone with it.
        """
        self.enter("alice@lobby")
        self.enter("bob@lobby")
        self.assertNotEqual(self.servers["alice@lobby"], self.servers["bob@lobby"])
        self.cluster.kill(self.servers["bob@lobby"])
        found = self.successResultOf(self.find("chat-1", "rid", LOBBY, "connector"))
        self.assertEqual([s.uid for s in found], ["alice*lobby"])


class RebuildTests(ChatClusterMixin, SynchronousTestCase):
    """
    C{ChannelService.rebuild}, on a chat server that holds no room.
    """

    def setUp(self):
        super().setUp()
        for user in ("alice@lobby", "bob@lobby", "dave@garden"):
            self.enter(user)
        self.home, self.other = self.chat_apps(LOBBY)
        self.channels = self.other.channels

    def test_held(self):
        """
        A channel held is answered at once, as it is, with no query.
        """
        channel = self.home.channels.get_channel(LOBBY)
        channel.add("zed*lobby", "connector-1")
        d = self.home.channels.rebuild(LOBBY, "rid", LOBBY)
        self.assertIs(self.successResultOf(d), channel)
        self.assertIn("zed*lobby", channel.get_members())

    def test_sharedQuery(self):
        """
        Calls for the same channel while it is rebuilt share one query and
        get the same channel; it is then held (without following routing,
        whether the name routes here does not matter).
        """
        home_channels = self.home.channels
        home_channels.destroy_channel(LOBBY)
        first = home_channels.rebuild(LOBBY, "rid", LOBBY, "connector")
        second = home_channels.rebuild(LOBBY, "rid", LOBBY, "connector")
        self.assertNoResult(first)
        self.cluster.flush()
        channel = self.successResultOf(first)
        self.assertIs(self.successResultOf(second), channel)
        self.assertEqual(sorted(channel.get_members()), ["alice*lobby", "bob*lobby"])
        self.assertIs(home_channels.get_channel(LOBBY), channel)

    def test_failed(self):
        """
        When the query fails every call waiting fails with its error, and
        nothing is kept: the next call queries again.
        """
        self.cluster.freeze(self.servers["bob@lobby"])
        channels = self.home.channels
        channels.destroy_channel(LOBBY)
        calls = [channels.rebuild(LOBBY, "rid", LOBBY, "connector") for _ in range(2)]
        self.cluster.advance(self.cluster.cluster.rpc_timeout + 1)
        for d in calls:
            self.failureResultOf(d, Unavailable)
        self.assertIsNone(channels.get_channel(LOBBY))
        self.cluster.thaw(self.servers["bob@lobby"])
        self.cluster.advance(3)
        d = channels.rebuild(LOBBY, "rid", LOBBY, "connector")
        self.cluster.flush()
        self.assertEqual(sorted(self.successResultOf(d).get_members()), ["alice*lobby", "bob*lobby"])

    def test_notOwned(self):
        """
        Following routing, a channel rebuilt for a name that routes to
        another server serves the calls that waited for it, then is
        destroyed: no copy stays.
        """
        d = self.channels.rebuild(LOBBY, "rid", LOBBY, "connector")
        self.cluster.flush()
        channel = self.successResultOf(d)
        self.assertTrue(channel.destroyed)
        self.assertEqual(self.channels.channels, [GARDEN])


class RoomsMixin(ChatClusterMixin):
    """
    Users on both connectors, rooms on both chat servers.
    """

    def setUp(self):
        super().setUp()
        for user in ("alice@lobby", "bob@lobby", "carol@lobby", "dave@garden", "erin@garden"):
            self.enter(user)
        self.home, self.other = self.chat_apps(LOBBY)
        self.assertEqual({self.servers[u] for u in ("alice@lobby", "bob@lobby", "carol@lobby")}, set(CONNECTORS))
        self.before = {user: len(pushes) for user, pushes in self.pushes.items()}

    def since(self, user):
        """
        The pushes C{user} got since the set-up.
        """
        return self.pushes[user][self.before.get(user, 0):]

    def count_finds(self):
        return FindTests.count_finds(self)


class RoomsFollowRoutingTests(RoomsMixin, SynchronousTestCase):
    """
    The chat example's rooms when a chat server stops, dies or comes back.
    """

    def check_moved(self):
        """
        Messages in the lobby, now on the other chat server, reach every
        member; the garden, whose server is up, is untouched.
        """
        self.assertEqual(self.say("bob@lobby", "still here"), {})
        self.assertEqual(self.say("erin@garden", "calm here"), {})
        for user in ("alice@lobby", "bob@lobby", "carol@lobby"):
            self.assertEqual(self.since(user), [chat("still here", "bob")], user)
        for user in ("dave@garden", "erin@garden"):
            self.assertEqual(self.since(user), [chat("calm here", "erin")], user)
        self.assertEqual(sorted(self.other.channels.channels), [GARDEN, LOBBY])

    def test_stopped(self):
        """
        A chat server stopped cleanly: its rooms work on the other one.
        """
        self.cluster.stop(self.home.server_id)
        self.check_moved()

    def test_killed(self):
        """
        A chat server killed: its rooms work on the other one.
        """
        self.cluster.kill(self.home.server_id)
        self.check_moved()

    def test_back(self):
        """
        Once the chat server is back its rooms route to it again and work
        there, rebuilt with their members; the other chat server dropped its
        copies as soon as its link to it came up.
        """
        self.cluster.kill(self.home.server_id)
        self.check_moved()
        self.cluster.start(self.home.server_id)
        home = self.cluster.apps[self.home.server_id]
        self.assertEqual(self.other.channels.channels, [GARDEN])
        self.assertEqual(self.say("alice@lobby", "welcome back"), {})
        for user in ("alice@lobby", "bob@lobby", "carol@lobby"):
            self.assertEqual(self.since(user), [chat("still here", "bob"), chat("welcome back", "alice")], user)
        self.assertEqual(home.channels.channels, [LOBBY])
        self.assertEqual(self.other.channels.channels, [GARDEN])

    def test_leaveAndEnterMeanwhile(self):
        """
        A user who leaves while the room is on the other chat server is not
        in it when it comes back; one who entered meanwhile is; each time
        the others are told once.
        """
        self.cluster.kill(self.home.server_id)
        self.quit("bob@lobby")
        self.assertEqual(self.enter("frank@lobby"), {"users": ["alice", "carol", "frank"]})
        self.cluster.start(self.home.server_id)
        self.assertEqual(self.say("carol@lobby", "who is here?"), {})
        self.assertEqual(sorted(self.cluster.apps[self.home.server_id].channels.get_channel(LOBBY).get_members()),
                         ["alice*lobby", "carol*lobby", "frank*lobby"])
        for user in ("alice@lobby", "carol@lobby"):
            self.assertEqual(self.since(user), [left("bob"), added("frank"), chat("who is here?", "carol")], user)
        self.assertEqual(self.pushes["frank@lobby"], [chat("who is here?", "carol")])
        self.assertEqual(self.since("bob@lobby"), [])
        self.quit("alice@lobby")
        self.assertEqual(self.since("carol@lobby")[-1], left("alice"))

    def test_enterRebuilds(self):
        """
        Entering a room its chat server does not hold rebuilds it: the
        newcomer, whose session already names the room, is added once, last,
        and told of nobody; the others are told once.
        """
        self.cluster.kill(self.home.server_id)
        users = self.enter("frank@lobby")["users"]
        self.assertEqual((sorted(users[:-1]), users[-1]), (["alice", "bob", "carol"], "frank"))
        self.assertEqual(self.other.channels.get_channel(LOBBY).user_count, 4)
        self.assertEqual(self.pushes["frank@lobby"], [])
        for user in ("alice@lobby", "bob@lobby", "carol@lobby"):
            self.assertEqual(self.since(user), [added("frank")], user)

    def test_sharedRebuild(self):
        """
        Several sends to a room that has moved, arriving together, share one
        rebuild: one query to each connector, none to the gate; every send
        is answered and every member gets every message once.
        """
        self.cluster.kill(self.home.server_id)
        asked = self.count_finds()
        users = ["alice@lobby", "bob@lobby", "carol@lobby"]
        calls = [self.clients[user].request("chat.chatHandler.send", {"content": user, "target": "*"})
                 for user in users]
        self.cluster.flush()
        for d in calls:
            self.assertEqual(self.successResultOf(d), {})
        self.assertEqual(asked, {"connector-1": 1, "connector-2": 1})
        heard = self.since(users[0])
        self.assertEqual(sorted(msg["msg"] for _, msg in heard), users)
        for user in users:
            self.assertEqual(self.since(user), heard, user)

    def test_enterDuringRebuild(self):
        """
        A user entering while the room is being rebuilt (the query still
        waiting for a connector) joins once the rebuild is done: it is
        added once, gets no message sent before it came, and the others
        get the message, then its C{onAdd}.
        """
        self.cluster.kill(self.home.server_id)
        slow = self.servers["bob@lobby"]
        fast = next(c for c in CONNECTORS if c != slow)
        self.cluster.freeze(slow)
        sender = next(u for u in ("alice@lobby", "carol@lobby") if self.servers[u] == fast)
        sent = self.clients[sender].request("chat.chatHandler.send", {"content": "first", "target": "*"})
        self.cluster.flush()
        name = next(n for n in ("frank", "gina", "hank", "ivan") if self.query_entry(n) == fast)
        entered = self.enter_on(fast, f"{name}@lobby")
        self.assertNoResult(sent)
        self.assertNoResult(entered)
        self.cluster.thaw(slow)
        self.assertEqual(self.successResultOf(sent), {})
        users = self.successResultOf(entered)["users"]
        self.assertEqual((sorted(users[:-1]), users[-1]), (["alice", "bob", "carol"], name))
        self.assertEqual(self.pushes[f"{name}@lobby"], [])
        for user in ("alice@lobby", "bob@lobby", "carol@lobby"):
            self.assertEqual(self.since(user), [chat("first", sender.split("@")[0]), added(name)], user)
        self.assertEqual(self.other.channels.get_channel(LOBBY).user_count, 4)

    def enter_on(self, server_id, user):
        """
        C{user} enters its room on C{server_id} without waiting for the answer.
        """
        name, rid = user.split("@")
        client = self.cluster.client(server_id)
        self.clients[user], self.pushes[user], self.servers[user] = client, [], server_id
        client.on("*", self.pushes[user].append)
        d = client.request("connector.entryHandler.enter", {"username": name, "rid": rid})
        self.cluster.flush()
        return d

    def test_leaveDuringRebuild(self):
        """
        A user leaving while the room is being rebuilt is not a member once
        it is done, and the others are told once.
        """
        self.cluster.kill(self.home.server_id)
        slow = self.servers["bob@lobby"]
        self.cluster.freeze(slow)
        sender, leaving = [u for u in ("alice@lobby", "carol@lobby") if self.servers[u] != slow]
        sent = self.clients[sender].request("chat.chatHandler.send", {"content": "hi", "target": "*"})
        self.cluster.flush()
        self.quit(leaving)
        self.cluster.thaw(slow)
        self.assertEqual(self.successResultOf(sent), {})
        self.assertEqual(sorted(self.other.channels.get_channel(LOBBY).get_members()),
                         sorted(["bob*lobby", sender.replace("@", "*")]))
        for user in ("bob@lobby", sender):
            self.assertEqual(self.since(user), [chat("hi", sender.split("@")[0]), left(leaving.split("@")[0])])

    def test_queryFails(self):
        """
        A send whose room cannot be rebuilt, because a connector does not
        answer, answers an error: the first one when the forwarded request
        times out with the query, the next ones at once with 503 naming the
        connector, routed around. Once the connector answers again the room
        is rebuilt and works.
        """
        self.cluster.kill(self.home.server_id)
        slow = self.servers["bob@lobby"]
        self.cluster.freeze(slow)
        sender = next(u for u in ("alice@lobby", "carol@lobby") if self.servers[u] != slow)
        d = self.clients[sender].request("chat.chatHandler.send", {"content": "lost", "target": "*"})
        self.cluster.flush()
        self.cluster.advance(self.cluster.cluster.rpc_timeout + 1)
        self.assertEqual(self.successResultOf(d)["code"], 504)
        answer = self.say(sender, "lost too")
        self.assertEqual(answer["code"], 503)
        self.assertIn(slow, answer["message"])
        self.assertEqual(self.other.channels.channels, [GARDEN])
        self.cluster.thaw(slow)
        self.cluster.advance(3)
        self.assertEqual(self.say(sender, "found"), {})
        for user in ("alice@lobby", "bob@lobby", "carol@lobby"):
            self.assertEqual(self.since(user), [chat("found", sender.split("@")[0])], user)


class RestartUnderLoadTests(RoomsMixin, SynchronousTestCase):
    """
    A chat server restarted, draining first, while its room talks: what a
    rolling restart does to each chat server in turn.
    """

    drain_timeout = 5.0

    def test_restartUnderLoad(self):
        """
        A clean stop and a start of the room's chat server while its members
        keep sending, a message every 0.1 s: every send is answered C{{}}
        and every member gets every message, in the same order as the others.
        """
        users = ["alice@lobby", "bob@lobby", "carol@lobby"]
        calls = []

        def send(steps):
            for step in range(len(calls), len(calls) + steps):
                user = users[step % len(users)]
                msg = {"content": f"m{step}", "target": "*"}
                calls.append(self.clients[user].request("chat.chatHandler.send", msg))
                self.cluster.advance(0.1)

        send(5)
        stopped = self.home.stopService()
        send(30)
        self.assertIsNone(self.successResultOf(stopped))
        self.cluster.start(self.home.server_id)
        send(30)
        self.cluster.advance(1)
        self.assertEqual([self.successResultOf(d) for d in calls], [{}] * len(calls))
        heard = self.since(users[0])
        self.assertEqual(sorted(body["msg"] for _, body in heard), sorted(f"m{n}" for n in range(len(calls))))
        for user in users:
            self.assertEqual(self.since(user), heard, user)
        self.assertEqual(self.cluster.apps[self.home.server_id].channels.channels, [LOBBY])
        self.assertEqual(self.other.channels.channels, [GARDEN])


WAIT = 30.0  # the longest any wait of the multi-process test may take
POLL = 0.1


def chat_file(ports: dict[str, int]) -> str:
    """
    The default cluster's file (the chat example) on C{ports}: C{master},
    C{<id>.node}, and C{<id>.client} for the frontends.
    """
    text = cluster_section("rooms", ports["master"], **CHAT_EXAMPLE, rpc_timeout=2, drain_timeout=0)
    return text + "".join(server_section(server_id, ports) for server_id in SERVER_IDS)


def room_of(server_id: str, prefix: str) -> str:
    """
    A room name the demo's dispatcher gives to chat server C{server_id}.
    """
    return next(f"{prefix}{n}" for n in itertools.count() if dispatch(f"{prefix}{n}", CHATS) == server_id)


def fail_resumed(master: MasterProcess, text: str) -> None:
    """
    Fail with C{master}'s log, the master resumed first (when a test holds
    it with SIGSTOP, what its children logged meanwhile waits in their
    pipes) and given two seconds to write those lines.
    """
    master.process.send_signal(signal.SIGCONT)
    time.sleep(2)
    master.fail(text)


class ChatProcessTests(TestCase):
    """
    The chat example under its master, with rooms on both chat servers, when
    one of them is killed with SIGKILL and the master starts it again.
    """

    timeout = 180

    async def setUp(self) -> None:
        names = ["master", *(f"{i}.node" for i in SERVER_IDS), *(f"{i}.client" for i in ("gate-1", *CONNECTORS))]
        self.ports = dict(zip(names, free_ports(len(names))))
        self.master = MasterProcess(self)
        self.master.write(chat_file(self.ports))
        self.master.start(30)
        self.pushes: dict[str, list[Any]] = {}
        self.clients: dict[str, Client] = {}
        self.addCleanup(self.close_clients)
        await self.eventually(self.listening, "every port of the cluster")
        # Settled first: each server sees every other one, so that the rooms
        # are where the test expects them (see doc/channels.md for the
        # moment when servers see the cluster differently).
        await self.eventually(lambda: self.master.linked(SERVER_IDS), "every node link up")

    async def listening(self) -> bool:
        self.master.fail_if_exited()
        return all(accepts(port) for port in self.ports.values())

    async def eventually(self, attempt: Any, what: str) -> Any:
        return await eventually(attempt, WAIT, what, lambda text: fail_resumed(self.master, text), POLL)

    def close_clients(self) -> None:
        for client in self.clients.values():
            client.close()

    async def enter(self, user: str, connector: str) -> Any:
        """
        C{user} (C{"name@room"}) enters its room on C{connector}, its pushes
        recorded in C{self.pushes[user]}; the answer.
        """
        name, rid = user.split("@")
        client = await Client.connect(reactor, "127.0.0.1", self.ports[connector + ".client"], "tcp", timeout=5)
        self.clients[user], self.pushes[user] = client, []
        client.on("*", self.pushes[user].append)
        return await client.request("connector.entryHandler.enter", {"username": name, "rid": rid}).addTimeout(
            10, reactor)

    async def entered(self, user: str, connector: str) -> Any:
        """
        L{enter}, as one attempt of L{eventually} while the cluster starts:
        the answer when it is the room's names, else C{None}, the client closed.
        """
        answer = await self.enter(user, connector)
        if "users" in answer:
            return answer
        await self.clients.pop(user).close()
        return None

    async def say(self, user: str, content: str) -> Any:
        return await self.clients[user].request(
            "chat.chatHandler.send", {"content": content, "target": "*"}).addTimeout(10, reactor)

    async def heard_by(self, users: list[str], content: str) -> bool:
        """
        Whether every one of C{users} got C{content} from the room.
        """
        return all(any(body.get("msg") == content for route, body in self.pushes[user] if route == "onChat")
                   for user in users)

    async def delivered(self, sender: str, users: list[str], what: str) -> None:
        """
        Send until a message from C{sender} is answered C{{}} and reaches
        every one of C{users}, each attempt with its own text.
        """
        attempts = itertools.count()

        async def attempt() -> bool:
            content = f"{what} {next(attempts)}"
            if await self.say(sender, content) != {}:
                return False
            await self.eventually(lambda: self.heard_by(users, content), f"{content!r} reaching {users}")
            return True

        await self.eventually(attempt, what)

    async def test_chatServerKilled(self) -> None:
        """
        SIGKILL of a chat server: its room works on the other chat server
        (rebuilt, every member reached); a user who leaves meanwhile is gone
        and one who enters is in; once the master has started the chat
        server again, the room works on it, rebuilt, and the other chat
        server dropped its copy; the other room never stopped working.
        """
        killed_room, calm_room = room_of("chat-1", "r"), room_of("chat-2", "r")
        room = [f"{name}@{killed_room}" for name in ("alice", "bob", "carol")]
        calm = [f"{name}@{calm_room}" for name in ("dave", "erin")]
        for n, user in enumerate(room + calm):
            connector = CONNECTORS[n % 2]
            answer = await self.eventually(lambda: self.entered(user, connector), f"{user} entering")
            self.assertEqual(answer["users"][-1], user.split("@")[0], user)
        await self.delivered(room[0], room, "before")
        pid = self.master.children().get("chat-1")
        self.assertIsNotNone(pid)
        since = len(self.master.log())
        # The master is held while chat-1 is down, so that the outage lasts
        # until the checks below are done; it then restarts chat-1.
        self.master.process.send_signal(signal.SIGSTOP)
        self.addCleanup(self.master.process.send_signal, signal.SIGCONT)
        os.kill(pid, signal.SIGKILL)
        await self.eventually(lambda: self.heard_nothing_from(pid), "chat-1 to die")
        await self.delivered(room[1], room, "while down")
        await self.delivered(calm[0], calm, "calm")
        self.clients.pop(room[2]).close()
        newcomer = f"frank@{killed_room}"
        answer = await self.enter(newcomer, CONNECTORS[0])
        self.assertEqual(sorted(answer["users"]), ["alice", "bob", "frank"])
        room = [room[0], room[1], newcomer]
        self.master.process.send_signal(signal.SIGCONT)
        restarted = await self.eventually(lambda: self.restarted(pid), "chat-1 started again")
        for line in (f"channel {killed_room} rebuilt on chat-1 with 3 members",
                     f"channel {killed_room} now routes away from chat-2: dropped"):
            await self.eventually(lambda: self.logged(line, room, since), line)
        self.assertIn(f"channel {killed_room} rebuilt on chat-2 with 3 members", self.master.log()[since:])
        self.assertEqual(self.master.children().get("chat-1"), restarted)
        await self.delivered(calm[1], calm, "calm again")

    async def heard_nothing_from(self, pid: int) -> bool:
        return not alive(pid)

    async def restarted(self, old: int) -> int | None:
        pid = self.master.children().get("chat-1")
        return pid if pid is not None and pid != old else None

    async def logged(self, line: str, room: list[str], since: int) -> bool:
        """
        Send once in the room, and whether the log has C{line} after its
        first C{since} characters and everyone in the room got the message.
        """
        await self.delivered(room[0], room, "after")
        return line in self.master.log()[since:]
