"""
Global channels (L{gamenet.global_channel}): membership kept in Redis, so any
server pushes to members wherever they are connected.

Every test starts its own C{redis-server} (L{RedisServer}, a free loopback
port) and looks at the keys from outside with plain sockets. The first tests
drive a L{GlobalChannelService} of an application that is not started; the
loopback tests run two frontends and two backends on real sockets, add users
from one backend and push from the other.
"""

from __future__ import annotations

import random
import time

import attrs
from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred, DeferredList, gatherResults
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from gamenet import Application, GamenetError, GlobalChannel, GlobalChannelService, Handler, handler
from gamenet.client import Client
from gamenet.redis import RedisUnavailable
from gamenet.testing import (
    RedisServer,
    backend,
    client_port,
    cluster_config,
    free_ports,
    frontend,
    start_server,
)

TIMEOUT = 0.5  # the cluster's storage_timeout: how long any Redis call may take
MARGIN = 5.0  # what "fails fast" may add to TIMEOUT on a busy machine (a reconnect would take up to RECONNECT)
WAIT = 10.0  # the longest any wait for the network may take
RECONNECT = 20.0  # the longest the pool may take to reconnect (txredisapi backs off up to 10 s)
INDEX = "gamenet:test:gchannel:world"


def redis_cluster(redis, *servers, **values):
    """
    L{cluster_config} of C{servers}, using C{redis} with a short C{storage_timeout}.
    """
    return attrs.evolve(cluster_config(*servers, extra_routes=["onWorld", "onLocal"]), redis_port=redis.port,
                        storage_timeout=TIMEOUT, **values)


def start_redis(case):
    """
    Start a private redis-server for C{case}, killed when it ends.
    """
    redis = RedisServer()
    redis.start()
    case.addCleanup(redis.stop)
    return redis


def parse(reply):
    """
    Decode a RESP reply made of integers, bulk strings and flat arrays.
    """

    def one(data):
        head, _, rest = data.partition(b"\r\n")
        kind, value = head[:1], head[1:]
        if kind == b":":
            return int(value), rest
        if kind == b"$":
            if int(value) < 0:
                return None, rest
            return rest[:int(value)].decode(), rest[int(value) + 2:]
        if kind == b"*":
            items = []
            for _ in range(int(value)):
                item, rest = one(rest)
                items.append(item)
            return items, rest
        raise ValueError(f"unexpected reply {data!r}")

    return one(reply)[0]


def smembers(redis, key):
    """
    The members of a set, read from outside gamenet.
    """
    return set(parse(redis.command("SMEMBERS", key)))


def keys(redis, pattern="gamenet:*"):
    """
    The keys matching C{pattern}, read from outside gamenet.
    """
    return set(parse(redis.command("KEYS", pattern)))


async def failure_time(case, d):
    """
    Wait for C{d} to fail with L{RedisUnavailable}; return how long it took.
    """
    started = time.monotonic()
    with case.assertRaises(RedisUnavailable):
        await d
    return time.monotonic() - started


async def sleep(seconds):
    await deferLater(reactor, seconds, lambda: None)


async def wait_for(case, predicate, what, timeout=WAIT):
    """
    Wait until C{predicate()} is true, at most C{timeout} seconds.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            case.fail(f"timed out waiting for {what}")
        await sleep(0.01)


async def until_redis_answers(case, channel):
    """
    Once Redis is back, wait until the pool has reconnected and C{channel.members()} answers.
    """
    deadline = time.monotonic() + RECONNECT
    while True:
        try:
            return await channel.members()
        except RedisUnavailable:
            if time.monotonic() > deadline:
                case.fail("the global channel service did not reconnect to redis")
            await sleep(0.1)


class ServiceTestCase(TestCase):
    """
    A private Redis and the L{GlobalChannelService} of C{room-1}, an
    application that is not started (nothing but Redis is needed).
    """

    async def setUp(self):
        self.redis = start_redis(self)
        self.cluster = redis_cluster(
            self.redis,
            frontend("connector-1", "connector"),
            frontend("connector-2", "connector"),
            frontend("gate-1", "gate"),
            backend("room-1", "room"),
            backend("room-2", "room"),
        )
        self.service = self.make_service("room-1")
        self.channel = self.service.get_channel("world")

    def make_service(self, server_id):
        service = GlobalChannelService(Application(self.cluster, server_id))
        self.addCleanup(service.close)
        return service


class MembershipTests(ServiceTestCase):
    """
    Members are kept in Redis, one set per channel and frontend plus the
    channel's index of frontends.
    """

    async def test_addAndMembers(self):
        """
        C{add} answers whether the member is new; C{members} lists each uid
        once, C{members_by_frontend} those on one frontend; Redis holds one
        set per frontend and the index of frontends.
        """
        self.assertIsInstance(self.channel, GlobalChannel)
        self.assertEqual(self.channel.name, "world")
        self.assertEqual(await self.channel.members(), [])
        self.assertTrue(await self.channel.add("carol", "connector-2"))
        self.assertTrue(await self.channel.add("alice", "connector-1"))
        self.assertTrue(await self.channel.add("bob", "connector-2"))
        self.assertFalse(await self.channel.add("bob", "connector-2"))
        self.assertTrue(await self.channel.add("bob", "connector-1"))
        self.assertEqual(await self.channel.members(), ["alice", "bob", "carol"])
        self.assertEqual(await self.channel.members_by_frontend("connector-1"), ["alice", "bob"])
        self.assertEqual(await self.channel.members_by_frontend("connector-2"), ["bob", "carol"])
        self.assertEqual(await self.channel.members_by_frontend("gate-1"), [])
        self.assertEqual(keys(self.redis), {INDEX, INDEX + ":connector-1", INDEX + ":connector-2"})
        self.assertEqual(smembers(self.redis, INDEX), {"connector-1", "connector-2"})
        self.assertEqual(smembers(self.redis, INDEX + ":connector-1"), {"alice", "bob"})
        self.assertEqual(smembers(self.redis, INDEX + ":connector-2"), {"bob", "carol"})

    async def test_leave(self):
        """
        C{leave} answers whether the uid was a member on that frontend; a
        frontend leaves the index when its last member leaves, and the
        channel's keys are gone with its last member.
        """
        await self.channel.add("alice", "connector-1")
        await self.channel.add("bob", "connector-2")
        self.assertFalse(await self.channel.leave("alice", "connector-2"))
        self.assertFalse(await self.channel.leave("zed", "connector-1"))
        self.assertEqual(await self.channel.members(), ["alice", "bob"])
        self.assertTrue(await self.channel.leave("bob", "connector-2"))
        self.assertEqual(smembers(self.redis, INDEX), {"connector-1"})
        self.assertEqual(keys(self.redis), {INDEX, INDEX + ":connector-1"})
        self.assertEqual(await self.channel.members(), ["alice"])
        self.assertFalse(await self.channel.leave("bob", "connector-2"))
        self.assertTrue(await self.channel.leave("alice", "connector-1"))
        self.assertEqual(await self.channel.members(), [])
        self.assertEqual(keys(self.redis), set())

    async def test_otherServers(self):
        """
        Another server, with its own connections to Redis, sees and changes the same channel.
        """
        other = self.make_service("room-2").get_channel("world")
        await self.channel.add("alice", "connector-1")
        self.assertEqual(await other.members(), ["alice"])
        self.assertTrue(await other.add("bob", "connector-2"))
        self.assertTrue(await other.leave("alice", "connector-1"))
        self.assertEqual(await self.channel.members(), ["bob"])
        self.assertEqual(await self.service.members("world"), ["bob"])

    async def test_destroy(self):
        """
        C{destroy} deletes every key of the channel and no other; the channel
        can be used again; destroying an empty channel does nothing.
        """
        other = self.service.get_channel("other")
        await self.channel.add("alice", "connector-1")
        await self.channel.add("bob", "connector-2")
        await other.add("carol", "connector-1")
        self.assertIsNone(await self.channel.destroy())
        self.assertEqual(await self.channel.members(), [])
        self.assertEqual(keys(self.redis), {"gamenet:test:gchannel:other", "gamenet:test:gchannel:other:connector-1"})
        self.assertEqual(await other.members(), ["carol"])
        await self.service.destroy_channel("world")
        self.assertTrue(await self.channel.add("alice", "connector-2"))
        self.assertEqual(await self.channel.members_by_frontend("connector-2"), ["alice"])
        await self.service.destroy_channel("other")
        self.assertEqual(keys(self.redis), {INDEX, INDEX + ":connector-2"})

    async def test_keyQuoting(self):
        """
        C{%} and C{:} in a channel name or frontend id are quoted in keys, so
        channel C{a:b} and the set of frontend C{b} of channel C{a} are
        different keys; the index holds frontend ids as they are.
        """
        a, ab = self.service.get_channel("a"), self.service.get_channel("a:b")
        await a.add("alice", "b")
        await ab.add("bob", "f:1")
        await ab.add("carol", "50%")
        self.assertEqual(await a.members(), ["alice"])
        self.assertEqual(await ab.members(), ["bob", "carol"])
        self.assertEqual(await ab.members_by_frontend("f:1"), ["bob"])
        base = "gamenet:test:gchannel:"
        self.assertEqual(keys(self.redis), {
            base + "a", base + "a:b", base + "a%3Ab", base + "a%3Ab:f%3A1", base + "a%3Ab:50%25",
        })
        self.assertEqual(smembers(self.redis, base + "a%3Ab"), {"f:1", "50%"})
        await ab.destroy()
        self.assertEqual(keys(self.redis), {base + "a", base + "a:b"})
        self.assertTrue(await ab.add("dave", "x"))
        self.assertTrue(await ab.leave("dave", "x"))
        self.assertEqual(await a.members(), ["alice"])

    async def test_concurrentChanges(self):
        """
        Adds and leaves made at once from two servers (two pools of
        connections) leave the index naming exactly the frontends with
        members: each change is one atomic script.
        """
        other = self.make_service("room-2").get_channel("world")
        rng = random.Random(7)
        frontends = ["connector-1", "connector-2", "gate-1"]
        pairs = [(f"u{n}", frontend_id) for n in range(30) for frontend_id in frontends]
        await gatherResults([rng.choice((self.channel, other)).add(uid, fid) for uid, fid in pairs])
        leaving = set(rng.sample(pairs, 60)) | {(f"u{n}", "gate-1") for n in range(30)}
        staying = [pair for pair in pairs if pair not in leaving]
        changes = [rng.choice((self.channel, other)).leave(uid, fid) for uid, fid in leaving]
        changes += [rng.choice((self.channel, other)).add(uid, fid) for uid, fid in staying]
        rng.shuffle(changes)
        await gatherResults(changes)
        index = smembers(self.redis, INDEX)
        self.assertNotIn("gate-1", index)
        self.assertEqual(index, {fid for _, fid in staying})
        for fid in frontends:
            self.assertEqual(smembers(self.redis, f"{INDEX}:{fid}"), {uid for uid, f in staying if f == fid})
        self.assertEqual(await other.members(), sorted({uid for uid, _ in staying}))

    def test_badArguments(self):
        """
        Empty or non-string names, uids and frontend ids are refused at once.
        """
        self.assertRaises(ValueError, self.service.get_channel, "")
        self.assertRaises(ValueError, self.channel.add, "", "connector-1")
        self.assertRaises(ValueError, self.channel.add, 7, "connector-1")
        self.assertRaises(ValueError, self.channel.leave, "alice", None)
        self.assertRaises(ValueError, self.channel.members_by_frontend, "")
        self.assertRaises(ValueError, self.service.destroy_channel, "")


class PushPlanTests(ServiceTestCase):
    """
    What C{push_message} hands to the server's L{ChannelService}, recorded
    instead of sent (the loopback tests send them).
    """

    async def setUp(self):
        await super().setUp()
        self.pushes = []
        channels = self.service.app.channels

        def push_message_by_uids(route, msg, members):
            self.pushes.append((route, msg, sorted(members)))
            d = Deferred()
            reactor.callLater(0, d.callback, ["nobody"])
            return d

        channels.push_message_by_uids = push_message_by_uids

    async def test_members(self):
        """
        Every member goes with its frontend, once per frontend it is on;
        C{frontend_type} keeps members on frontends of that type; the missing
        uids are those the channel service reports.
        """
        await self.channel.add("alice", "connector-1")
        await self.channel.add("bob", "connector-2")
        await self.channel.add("bob", "gate-1")
        await self.channel.add("zed", "unknown-9")
        self.assertEqual(await self.channel.push_message("onWorld", {"n": 1}), ["nobody"])
        self.assertEqual(await self.channel.push_message("onWorld", {"n": 2}, "connector"), ["nobody"])
        self.assertEqual(await self.service.push_message("world", "onWorld", {"n": 3}, "gate"), ["nobody"])
        self.assertEqual(self.pushes, [
            ("onWorld", {"n": 1}, [("alice", "connector-1"), ("bob", "connector-2"), ("bob", "gate-1"),
                                   ("zed", "unknown-9")]),
            ("onWorld", {"n": 2}, [("alice", "connector-1"), ("bob", "connector-2")]),
            ("onWorld", {"n": 3}, [("bob", "gate-1")]),
        ])

    async def test_empty(self):
        """
        A push to a channel without members (or none of the type) reaches no frontend and misses no one.
        """
        self.assertEqual(await self.channel.push_message("onWorld", {}), [])
        await self.channel.add("alice", "connector-1")
        self.assertEqual(await self.channel.push_message("onWorld", {}, "gate"), [])
        self.assertEqual(self.pushes, [])

    def slow_first_lookup(self):
        """
        Make the members of the next push arrive 0.2 s late, after those of the pushes made after it.
        """
        original = self.service._members
        calls = []

        def members(name):
            d = original(name)
            calls.append(name)
            if len(calls) == 1:
                later = Deferred()
                d.addBoth(lambda result: reactor.callLater(0.2, later.callback, result))
                return later
            return d

        self.service._members = members

    async def test_order(self):
        """
        Pushes made one after the other without waiting are handed on in that
        order, even when the members of the first are read last.
        """
        await self.channel.add("alice", "connector-1")
        self.slow_first_lookup()
        pushes = [self.channel.push_message("onWorld", {"n": n}) for n in range(5)]
        await gatherResults(pushes)
        self.assertEqual([msg["n"] for _, msg, _ in self.pushes], [0, 1, 2, 3, 4])

    async def test_cancel(self):
        """
        A push cancelled while it waits for the previous one is dropped; the
        later ones still wait for the earlier ones and go in order.
        """
        await self.channel.add("alice", "connector-1")
        self.slow_first_lookup()
        first = self.channel.push_message("onWorld", {"n": 0})
        second = self.channel.push_message("onWorld", {"n": 1})
        third = self.channel.push_message("onWorld", {"n": 2})
        second.cancel()
        self.failureResultOf(second, CancelledError)
        self.assertEqual(await gatherResults([third, first]), [["nobody"], ["nobody"]])
        self.assertEqual([msg["n"] for _, msg, _ in self.pushes], [0, 2])


class OutageTests(ServiceTestCase):
    """
    Without Redis every call fails fast with L{RedisUnavailable}; calls work
    again once Redis is back, with whatever membership it came back with.
    """

    async def test_killedAndRestarted(self):
        """
        Killed (SIGKILL, nothing saved), every call fails within the timeout;
        restarted, the service reconnects by itself and finds the channel empty.
        """
        await self.channel.add("alice", "connector-1")
        self.redis.stop()
        calls = [
            lambda: self.channel.add("bob", "connector-1"),
            lambda: self.channel.leave("alice", "connector-1"),
            lambda: self.channel.members(),
            lambda: self.channel.members_by_frontend("connector-1"),
            lambda: self.channel.push_message("onWorld", {}),
            lambda: self.channel.destroy(),
        ]
        for _ in range(2):  # at once (connections known lost), then once the pool is reconnecting
            for call in calls:
                self.assertLess(await failure_time(self, call()), TIMEOUT + MARGIN)
            await sleep(TIMEOUT)
        self.redis.start()
        self.assertEqual(await until_redis_answers(self, self.channel), [])
        self.assertTrue(await self.channel.add("bob", "connector-2"))
        self.assertEqual(await self.channel.members(), ["bob"])

    async def test_neverStarted(self):
        """
        A service whose Redis was never there fails within the timeout too.
        """
        self.redis.stop()
        service = self.make_service("room-2")
        self.assertLess(await failure_time(self, service.get_channel("world").members()), TIMEOUT + MARGIN)

    async def test_closed(self):
        """
        After C{close}, calls fail at once; closing twice is harmless.
        """
        await self.channel.add("alice", "connector-1")
        await self.service.close()
        await self.service.close()
        self.failureResultOf(self.channel.members(), RedisUnavailable)
        self.failureResultOf(self.channel.push_message("onWorld", {}), RedisUnavailable)


class Entry(Handler):
    async def login(self, msg, session):
        await session.bind(msg["uid"])
        return {"server": self.app.server_id}


class Room(Handler):
    """
    On C{room-1}: adds the caller to the global channel C{world}.
    """

    async def join(self, msg, session):
        try:
            added = await self.app.global_channels.get_channel("world").add(session.uid, session.frontend_id)
        except RedisUnavailable as e:
            raise GamenetError(str(e), 503) from None
        return {"server": self.app.server_id, "added": added}

    def ping(self, msg, session):
        return {"server": self.app.server_id}


SERVER_IDS = ("connector-1", "connector-2", "room-1", "room-2")
USERS = {"u1": "connector-1", "u2": "connector-1", "u3": "connector-2", "u4": "connector-2"}


class LoopbackTests(TestCase):
    """
    Two frontends and two backends on real loopback sockets, and a private
    Redis. Users on both frontends join C{world} through C{room-1}; C{room-2},
    which never saw them, pushes to it.
    """

    timeout = 120

    async def setUp(self):
        self.redis = start_redis(self)
        ports = free_ports(len(SERVER_IDS))
        self.cluster = redis_cluster(
            self.redis,
            frontend("connector-1", "connector", node_port=ports[0]),
            frontend("connector-2", "connector", node_port=ports[1]),
            backend("room-1", "room", ports[2]),
            backend("room-2", "room", ports[3]),
        )
        registrations = [handler(Entry, "connector"), handler(Room, "room")]

        def configure(app):
            app.route("room", lambda session, servers: "room-1")

        self.apps = {}
        self.addCleanup(self.stop_servers)
        for server_id in SERVER_IDS:
            self.apps[server_id] = await start_server(self.cluster, server_id, registrations, configure=configure)
        await wait_for(self, lambda: all(link.up for app in self.apps.values() for link in app.node.links.values()),
                       "the node links")
        self.clients, self.pushes = {}, {}
        for n, (uid, server_id) in enumerate(USERS.items()):
            client = await Client.connect(reactor, "127.0.0.1", client_port(self.apps[server_id]),
                                          ("websocket", "tcp")[n % 2], timeout=WAIT)
            self.addCleanup(self.close, client)
            self.clients[uid], self.pushes[uid] = client, []
            client.on("*", self.pushes[uid].append)
            self.assertEqual(await client.request("connector.entry.login", {"uid": uid}), {"server": server_id})
            self.assertEqual(await client.request("room.room.join"), {"server": "room-1", "added": True})
        self.world = self.apps["room-2"].global_channels.get_channel("world")
        self.sys_calls = []
        node = self.apps["room-2"].node
        original = node.sys_call

        def sys_call(frontend_id, name, args):
            self.sys_calls.append((frontend_id, name))
            return original(frontend_id, name, args)

        node.sys_call = sys_call

    async def stop_servers(self):
        apps = [app for app in self.apps.values() if app.running]
        await DeferredList([app.stopService() for app in apps])
        # Stopping closes each service's pool; wait until its connections are gone.
        await gatherResults([app.global_channels.close() for app in self.apps.values()])

    async def close(self, client):
        await client.close().addTimeout(WAIT, reactor)

    async def test_pushFromOtherBackend(self):
        """
        Pushes from the backend that never saw the users reach each member
        exactly once and in order, for one C{push_uids} sys call per frontend
        and push, made without waiting for one another.
        """
        self.assertEqual(await self.world.members(), sorted(USERS))
        self.assertEqual(await self.world.members_by_frontend("connector-2"), ["u3", "u4"])
        self.assertEqual(keys(self.redis), {INDEX, INDEX + ":connector-1", INDEX + ":connector-2"})
        count = 5
        missing = await gatherResults([self.world.push_message("onWorld", {"n": n}) for n in range(count)])
        self.assertEqual(missing, [[]] * count)
        self.assertEqual(sorted(self.sys_calls),
                         sorted([("connector-1", "push_uids"), ("connector-2", "push_uids")] * count))
        await wait_for(self, lambda: all(len(p) >= count for p in self.pushes.values()), "the pushes")
        # A request answered after the pushes on each connection: any extra push would be in first.
        for client in self.clients.values():
            self.assertEqual(await client.request("room.room.ping"), {"server": "room-1"})
        expected = [("onWorld", {"n": n}) for n in range(count)]
        self.assertEqual(self.pushes, {uid: expected for uid in USERS})

    async def test_frontendType(self):
        """
        A push for one frontend type reaches the members on frontends of that type.
        """
        self.assertEqual(await self.world.push_message("onWorld", {"n": 1}, "connector"), [])
        self.assertEqual(await self.world.push_message("onWorld", {"n": 2}, "gate"), [])
        self.assertEqual(len(self.sys_calls), 2)
        await wait_for(self, lambda: all(len(p) == 1 for p in self.pushes.values()), "the pushes")

    async def test_disconnectedMember(self):
        """
        A member whose client has gone is reported missing and stays a member
        until it leaves; the others get the push.
        """
        await self.close(self.clients["u2"])
        sessions = self.apps["connector-1"].sessions
        await wait_for(self, lambda: not sessions.get_by_uid("u2"), "u2's session to close")
        self.assertEqual(await self.world.push_message("onWorld", {"n": 1}), ["u2"])
        self.assertEqual(len(self.sys_calls), 2)
        await wait_for(self, lambda: all(len(self.pushes[uid]) == 1 for uid in ("u1", "u3", "u4")), "the pushes")
        self.assertEqual(self.pushes["u2"], [])
        self.assertEqual(await self.world.members(), sorted(USERS))
        self.assertTrue(await self.world.leave("u2", "connector-1"))
        self.assertEqual(await self.world.push_message("onWorld", {"n": 2}), [])

    async def test_redisKilled(self):
        """
        With Redis killed, global channel calls fail fast on every server,
        through the handler as an error answer too, while the servers serve
        everything else; with Redis restarted they work again, the channel
        emptied by the kill.
        """
        self.redis.stop()
        for _ in range(2):
            self.assertLess(await failure_time(self, self.world.push_message("onWorld", {})), TIMEOUT + MARGIN)
            self.assertLess(await failure_time(self, self.world.members()), TIMEOUT + MARGIN)
            started = time.monotonic()
            answer = await self.clients["u1"].request("room.room.join")
            self.assertLess(time.monotonic() - started, TIMEOUT + MARGIN)
            self.assertEqual(answer["code"], 503)
            await sleep(TIMEOUT)
        self.assertEqual(self.sys_calls, [])
        # Everything else goes on: forwarded requests, and a local channel's push.
        for client in self.clients.values():
            self.assertEqual(await client.request("room.room.ping"), {"server": "room-1"})
        self.assertEqual(
            await self.apps["room-2"].channels.push_message_by_uids("onLocal", {"n": 0}, USERS.items()), [])
        await wait_for(self, lambda: all(p == [("onLocal", {"n": 0})] for p in self.pushes.values()), "local pushes")

        self.redis.start()
        self.assertEqual(await until_redis_answers(self, self.world), [])
        answer = await self.clients["u3"].request("room.room.join")
        if answer.get("code") == 503:  # room-1's pool may reconnect a little later than room-2's
            await until_redis_answers(self, self.apps["room-1"].global_channels.get_channel("world"))
            answer = await self.clients["u3"].request("room.room.join")
        self.assertEqual(answer, {"server": "room-1", "added": True})
        self.assertEqual(await self.world.push_message("onWorld", {"n": 1}), [])
        await wait_for(self, lambda: len(self.pushes["u3"]) == 2, "the push to u3")
        self.assertEqual(self.pushes["u3"][-1], ("onWorld", {"n": 1}))
        self.assertEqual([len(self.pushes[uid]) for uid in ("u1", "u2", "u4")], [1, 1, 1])

    async def test_stopCloses(self):
        """
        A stopped server's global channel service has closed its pool: its calls fail at once.
        """
        await self.apps["room-2"].stopService()
        self.failureResultOf(self.world.members(), RedisUnavailable)
        self.assertEqual(await self.apps["room-1"].global_channels.get_channel("world").members(), sorted(USERS))
