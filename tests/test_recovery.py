"""
Backend state recovery (L{gamenet.cluster.recovery}): groups a backend
declares rebuildable from the frontends' live sessions, with the game's own
state, and the members of a dead frontend dropped from every channel. All
but L{RecoveryProcessTests} run the chat example in a L{MemoryCluster};
those run it as an operator does, under its master, and SIGKILL a chat
server or a connector, with static and with Redis discovery.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from twisted.trial.unittest import SynchronousTestCase, TestCase

from examples.chat.dispatcher import dispatch
from gamenet.client import Client
from gamenet.errors import Unavailable
from gamenet.testing import RedisServer, free_ports

from ._processes import CHAT_EXAMPLE, MasterProcess, accepts, cluster_section, eventually, server_section
from .test_chat import CHATS, CONNECTORS, LOBBY, SERVER_IDS, ChatClusterMixin, chat, left
from . import test_rooms
from .test_rooms import POLL, RoomsMixin, room_of


class TeamsMixin(ChatClusterMixin):
    """
    A game's own per-group state beside the chat example's rooms: teams,
    keyed by the session setting C{team}, each with a score board made
    from its members' sessions.
    """

    def setUp(self):
        super().setUp()
        self.made = []
        self.told = []
        for server_id in CHATS:
            self.cluster.apps[server_id].recovery.declare("team", "connector", self.board, self.gone)
        for user in ("alice@lobby", "bob@lobby", "carol@lobby"):
            self.enter(user)
        for user, team in (("alice@lobby", "red"), ("bob@lobby", "red"), ("carol@lobby", "blue")):
            self.session(user).set("team", team)
        self.home = self.chat_app("red")

    def session(self, user):
        """
        C{user}'s session on its connector.
        """
        uid = user.replace("@", "*")
        return next(s for s in self.cluster.apps[self.servers[user]].sessions if s.uid == uid)

    def board(self, channel, sessions):
        self.made.append((channel.name, sorted(s.uid for s in sessions)))
        return {s.uid: 0 for s in sessions}

    def gone(self, channel, uids):
        self.told.append((channel.name, sorted(uids)))

    def team(self, app, name):
        d = app.recovery.get("team", name)
        self.cluster.flush()
        return self.successResultOf(d)


class DeclareTests(TeamsMixin, SynchronousTestCase):
    """
    C{app.recovery.declare} and C{app.recovery.get}.
    """

    def test_rebuilt(self):
        """
        A group is made from the live sessions whose setting names it, and
        the game's state is made from them once, kept as the channel's
        C{state}; got again, it is the same channel, not made again.
        """
        channel = self.team(self.home, "red")
        self.assertEqual(sorted(channel.get_members()), ["alice*lobby", "bob*lobby"])
        self.assertEqual(channel.state, {"alice*lobby": 0, "bob*lobby": 0})
        self.assertEqual(self.made, [("red", ["alice*lobby", "bob*lobby"])])
        channel.state["alice*lobby"] = 3
        self.assertIs(self.team(self.home, "red"), channel)
        self.assertEqual(len(self.made), 1)

    def test_followsRouting(self):
        """
        The state follows its group: the chat server it moves to when its
        own dies rebuilds it from the sessions as they are now, and drops
        it again once the group's own server is back, which rebuilds it.
        """
        self.team(self.home, "red").state["alice*lobby"] = 5
        other = self.cluster.apps[next(i for i in CHATS if i != self.home.server_id)]
        self.cluster.kill(self.home.server_id)
        self.session("bob@lobby").set("team", "blue")
        moved = self.team(other, "red")
        self.assertEqual(moved.state, {"alice*lobby": 0})
        # The restarted server is a new Application, declaring as it starts.
        self.cluster.apps[self.home.server_id].recovery.declare("team", "connector", self.board, self.gone)
        self.cluster.start(self.home.server_id)
        self.assertIsNone(other.channels.get_channel("red"))
        self.assertTrue(moved.destroyed)
        back = self.team(self.cluster.apps[self.home.server_id], "red")
        self.assertEqual(back.state, {"alice*lobby": 0})
        self.assertEqual(self.made, [("red", ["alice*lobby", "bob*lobby"]), ("red", ["alice*lobby"]),
                                     ("red", ["alice*lobby"])])

    def test_left(self):
        """
        When a connector dies, each declared group that held members on it
        is told which uids it lost, once; a group that held none is not.
        """
        red, blue = self.team(self.home, "red"), self.team(self.chat_app("blue"), "blue")
        dead = self.servers["alice@lobby"]
        lost = sorted(u.replace("@", "*") for u in ("alice@lobby", "bob@lobby") if self.servers[u] == dead)
        self.cluster.kill(dead)
        expected = [("red", lost)]
        if self.servers["carol@lobby"] == dead:
            expected.append(("blue", ["carol*lobby"]))
        self.assertEqual(sorted(self.told), sorted(expected))
        self.assertEqual(sorted(red.get_members() + blue.get_members()),
                         sorted(u.replace("@", "*") for u in ("alice@lobby", "bob@lobby", "carol@lobby")
                                if self.servers[u] != dead))

    def test_rebuildFails(self):
        """
        When the game's C{rebuild} raises, the call fails with its error and
        no group is kept: the next call makes it again.
        """
        def broken(channel, sessions):
            raise RuntimeError("no board")

        self.home.recovery.declare("broken", "connector", broken)
        self.session("alice@lobby").set("broken", "red")
        d = self.home.recovery.get("broken", "red")
        self.cluster.flush()
        self.assertEqual(str(self.failureResultOf(d, RuntimeError).value), "no board")
        self.assertIsNone(self.home.channels.get_channel("red"))

    def test_queryFails(self):
        """
        A connector that does not answer fails the call with L{Unavailable}
        and nothing is made.
        """
        self.cluster.freeze(self.servers["alice@lobby"])
        d = self.home.recovery.get("team", "red")
        self.cluster.advance(self.cluster.cluster.rpc_timeout + 1)
        self.failureResultOf(d, Unavailable)
        self.assertEqual(self.made, [])

    def test_declaredTwice(self):
        """
        A key is declared once.
        """
        with self.assertRaises(ValueError) as raised:
            self.home.recovery.declare("team")
        self.assertIn("'team' are declared already", str(raised.exception))

    def test_undeclared(self):
        """
        Getting a group of a key never declared is a mistake, at once.
        """
        self.assertRaises(KeyError, self.home.recovery.get, "guild", "red")


class DeadConnectorTests(RoomsMixin, SynchronousTestCase):
    """
    A connector that dies: every channel on every server drops its members
    at once, and pushes no longer try it.
    """

    def members(self):
        """
        The members of every channel of both chat servers, by server and channel.
        """
        return {server_id: {name: sorted(self.cluster.apps[server_id].channels.get_channel(name).get_members())
                            for name in self.cluster.apps[server_id].channels.channels}
                for server_id in CHATS}

    def killed(self):
        """
        Kill the connector of C{bob@lobby}; its id and the users it held.
        """
        dead = self.servers["bob@lobby"]
        self.cluster.kill(dead)
        return dead, sorted(u for u, server_id in self.servers.items() if server_id == dead)

    def test_dropped(self):
        """
        Rooms on both chat servers lose the dead connector's users, and
        only those; the others in each room are told each one left.
        """
        before = self.members()
        self.assertEqual(sorted(name for rooms in before.values() for name in rooms), ["garden", LOBBY])
        dead, users = self.killed()
        gone = {u.replace("@", "*") for u in users}
        self.assertEqual(self.members(), {
            server_id: {name: [m for m in members if m not in gone] for name, members in rooms.items()}
            for server_id, rooms in before.items()})
        for user, server_id in self.servers.items():
            if server_id != dead:
                expected = [left(u.split("@")[0]) for u in users if u.split("@")[1] == user.split("@")[1]]
                self.assertEqual(sorted(self.since(user), key=repr), sorted(expected, key=repr), user)

    def test_pushesSkipIt(self):
        """
        A message in a room after the connector died is not sent to it: no
        call to it is tried, nobody is missing, every member left gets it.
        """
        dead, users = self.killed()
        tried = []
        node = self.home.node
        original = node.sys_call
        self.patch(node, "sys_call", lambda frontend_id, *a: tried.append(frontend_id) or original(frontend_id, *a))
        channel = self.home.channels.get_channel(LOBBY)
        d = channel.push_message("onChat", {"msg": "hi", "from": "system", "target": "*"})
        self.cluster.flush()
        self.assertEqual(self.successResultOf(d), [])
        self.assertNotIn(dead, tried)
        self.assertEqual(tried, [next(c for c in CONNECTORS if c != dead)])

    def test_restartedDoesNotResurrect(self):
        """
        Once the connector is running again with the same id, the members it
        held stay out: its sessions are new. A user who enters on it again is
        in the room once, and hears the room.
        """
        dead, users = self.killed()
        self.cluster.start(dead)
        self.assertEqual([m for rooms in self.members().values() for members in rooms.values() for m in members
                          if m in {u.replace("@", "*") for u in users}], [])
        user = next(u for u in users if u.endswith(f"@{LOBBY}"))
        self.clients.pop(user).close()
        self.enter(user)
        stay = next(u for u in ("alice@lobby", "carol@lobby") if u not in users)
        self.assertEqual(self.say(stay, "again"), {})
        self.assertEqual(self.pushes[user], [chat("again", stay.split("@")[0])])
        self.assertEqual(self.home.channels.get_channel(LOBBY).get_members().count(user.replace("@", "*")), 1)

    def test_masterSays(self):
        """
        With a master, a connector whose link is down keeps its members
        while the master still counts it (its link may be coming back);
        they are dropped as soon as the master announces it down.
        """
        nodes = [self.cluster.apps[server_id].node for server_id in CHATS]
        everyone = sorted(self.cluster.apps)
        for node in nodes:
            self.patch(node, "_master_membership", True)
            node._membership_changed(everyone)
        before = self.members()
        dead = self.servers["bob@lobby"]
        self.cluster.kill(dead)
        self.assertEqual(self.members(), before)
        for node in nodes:
            node._membership_changed([i for i in everyone if i != dead])
        held = {m for rooms in self.members().values() for members in rooms.values() for m in members}
        self.assertEqual(held, {u.replace("@", "*") for u, s in self.servers.items() if s != dead})

    def test_hungIsNotGone(self):
        """
        A connector that hangs with its process alive keeps its members: its
        link stays up, and its sessions may yet answer.
        """
        before = self.members()
        self.cluster.freeze(self.servers["bob@lobby"])
        self.cluster.advance(self.cluster.cluster.rpc_timeout + 2)
        self.assertEqual(self.members(), before)


BOUND = 5.0  # the issue's: every room works again within 5 s of the chat server being up
GONE_BOUND = 3.0  # doc/recovery.md's: a dead frontend's members are dropped within it


class RecoveryProcessTests(TestCase):
    """
    The chat example under its master, rooms on both chat servers, as an
    operator runs it, with static discovery; L{RedisRecoveryProcessTests}
    runs the same with C{discovery = redis}. The clients' helpers are
    L{test_rooms.ChatProcessTests}' (reached through its module, so that
    trial does not collect that class here a second time).
    """

    timeout = 120
    discovery: dict[str, object] = {}

    async def setUp(self) -> None:
        names = ["master", *(f"{i}.node" for i in SERVER_IDS), *(f"{i}.client" for i in ("gate-1", *CONNECTORS))]
        self.ports = dict(zip(names, free_ports(len(names))))
        self.master = MasterProcess(self)
        text = cluster_section("recovery", self.ports["master"], **CHAT_EXAMPLE, rpc_timeout=2, drain_timeout=0,
                               **self.cluster_keys())
        self.master.write(text + "".join(server_section(server_id, self.ports) for server_id in SERVER_IDS))
        self.master.start(30)
        self.pushes: dict[str, list[Any]] = {}
        self.clients: dict[str, Client] = {}
        self.addCleanup(self.close_clients)
        await self.eventually(self.listening, "every port of the cluster")
        # Users enter once every server routes to every other (discovery
        # through Redis tells servers of each other one by one).
        await self.eventually(lambda: self.master.linked(SERVER_IDS), "every node link up")

    def cluster_keys(self) -> dict[str, object]:
        """
        More keys of C{[cluster]}: none with static discovery.
        """
        return {}

    listening = test_rooms.ChatProcessTests.listening
    eventually = test_rooms.ChatProcessTests.eventually
    close_clients = test_rooms.ChatProcessTests.close_clients
    enter = test_rooms.ChatProcessTests.enter
    entered = test_rooms.ChatProcessTests.entered
    say = test_rooms.ChatProcessTests.say
    heard_by = test_rooms.ChatProcessTests.heard_by
    delivered = test_rooms.ChatProcessTests.delivered
    heard_nothing_from = test_rooms.ChatProcessTests.heard_nothing_from

    async def rooms(self) -> dict[str, list[str]]:
        """
        Users in a room on each chat server, on both connectors: the users
        (C{"name@room"}) of each room, by room.
        """
        rooms = {room_of("chat-1", "a"): ["alice", "bob", "carol"], room_of("chat-2", "b"): ["dave", "erin", "fred"]}
        users = {rid: [f"{name}@{rid}" for name in names] for rid, names in rooms.items()}
        self.connectors: dict[str, str] = {}
        for n, user in enumerate(u for room in users.values() for u in room):
            connector = self.connectors[user] = CONNECTORS[n % 2]
            answer = await self.eventually(lambda: self.entered(user, connector), f"{user} entering")
            self.assertEqual(answer["users"][-1], user.split("@")[0], user)
        for users_of in users.values():
            await self.delivered(users_of[0], users_of, "before")
        return users

    async def within(self, seconds: float, attempt: Any, what: str) -> Any:
        """
        L{eventually}, but failing after C{seconds}.
        """
        return await eventually(attempt, seconds, what, self.master.fail, POLL)

    async def test_chatServerKilled(self) -> None:
        """
        SIGKILL of a chat server, held down (the master stopped) while a
        user of its room leaves; once the master has started it again,
        within 5 seconds of its node port accepting, a message in every
        room reaches every member, the room is held by the restarted chat
        server again, rebuilt without the user who left, and a newcomer
        finds exactly the members as they are now.
        """
        users = await self.rooms()
        killed_room = room_of("chat-1", "a")
        pid = self.master.children()["chat-1"]
        since = len(self.master.log())
        self.master.process.send_signal(signal.SIGSTOP)
        self.addCleanup(self.master.process.send_signal, signal.SIGCONT)
        os.kill(pid, signal.SIGKILL)
        await self.eventually(lambda: self.heard_nothing_from(pid), "chat-1 to die")
        leaving = users[killed_room].pop()
        await self.clients.pop(leaving).close()
        self.master.process.send_signal(signal.SIGCONT)
        await self.eventually(lambda: self.up_again(pid), "chat-1 started again and accepting")
        up = time.monotonic()
        for rid, members in users.items():
            await self.within(BOUND - (time.monotonic() - up), lambda: self.heard_in(members, rid),
                              f"a message in {rid} reaching {members}")
        line = f"channel {killed_room} rebuilt on chat-1 with {len(users[killed_room])} members"
        await self.within(BOUND - (time.monotonic() - up), lambda: self.logged(line, users[killed_room], since),
                          line)
        answer = await self.enter(f"gina@{killed_room}", CONNECTORS[0])
        self.assertEqual(sorted(answer["users"]), sorted([u.split("@")[0] for u in users[killed_room]] + ["gina"]))

    async def up_again(self, old: int) -> bool:
        pid = self.master.children().get("chat-1")
        return pid is not None and pid != old and accepts(self.ports["chat-1.node"])

    async def heard_in(self, members: list[str], rid: str) -> bool:
        """
        Send once in room C{rid} and whether every member got it within a second.
        """
        content = f"back in {rid} {time.monotonic()}"
        if await self.say(members[0], content) != {}:
            return False
        return await eventually(lambda: self.heard_by(members, content), 1.0, content, self.fail, POLL)

    async def logged(self, line: str, members: list[str], since: int) -> bool:
        """
        Send once in the room of C{members}, and whether the log has C{line}
        after its first C{since} characters.
        """
        await self.heard_in(members, members[0].split("@")[1])
        return line in self.master.log()[since:]

    async def test_connectorKilled(self) -> None:
        """
        SIGKILL of a connector: within the documented bound, every room on
        both chat servers has dropped its users (the log says so for each
        room), the others are told they left, and messages in every room
        reach the rest and are no longer pushed to the dead connector.
        """
        users = await self.rooms()
        pid = self.master.children()["connector-2"]
        since = len(self.master.log())
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        dead = {rid: [u for u in us if self.connectors[u] == "connector-2"]
                for rid, us in users.items()}
        for rid, gone in dead.items():
            line = f"{len(gone)} members on connector-2, gone, dropped from channel {rid} on {dispatch(rid, CHATS)}"
            await self.within(GONE_BOUND - (time.monotonic() - killed),
                              lambda: self.seen(line, since), line)
        dropped = len(self.master.log())
        for rid, us in users.items():
            stay = [u for u in us if u not in dead[rid]]
            for user in stay:
                await self.within(BOUND, lambda: self.told_left(user, dead[rid]), f"{user} told who left")
            await self.within(BOUND, lambda: self.heard_in(stay, rid), f"a message in {rid} reaching {stay}")
        self.assertNotIn("users on connector-2 failed", self.master.log()[dropped:])

    async def seen(self, line: str, since: int) -> bool:
        return line in self.master.log()[since:]

    async def told_left(self, user: str, gone: list[str]) -> bool:
        left = {body.get("user") for route, body in self.pushes[user] if route == "onLeave"}
        return left >= {u.split("@")[0] for u in gone}


class RedisRecoveryProcessTests(RecoveryProcessTests):
    """
    L{RecoveryProcessTests} with C{discovery = redis}, on a private Redis.
    """

    def cluster_keys(self) -> dict[str, object]:
        self.redis = RedisServer()
        self.redis.start()
        self.addCleanup(self.redis.stop)
        return {"discovery": "redis", "redis_port": self.redis.port, "discovery_ttl": 3}
