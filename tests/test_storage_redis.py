"""
Session storage in Redis: L{RedisStorage} against a private C{redis-server},
then whole frontends on loopback sockets with C{storage = redis}, Redis
killed and started again under them.
"""

from __future__ import annotations

import json
import socket
import time
from types import SimpleNamespace

import attrs
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from gamenet import Handler, IStorageHandler, handler
from gamenet.client import Client
from gamenet.redis import RedisUnavailable
from gamenet.storage.redis import RedisStorage
from gamenet.testing import RedisServer, client_port, cluster_config, free_ports, frontend, start_server

TIMEOUT = 0.5  # storage_timeout of these tests
# What a request bounded by TIMEOUT may take on top of it on a busy machine:
# generous, yet far below the wait of a call left queued until Redis is back.
MARGIN = 5.0
WAIT = 10.0  # the longest any test polls for something


class Game(Handler):
    def prepare(self, msg, session):
        """
        Set settings on a session before it is bound (they are not stored).
        """
        for key, value in msg.items():
            session.set(key, value)
        return dict(session.settings)

    async def login(self, msg, session):
        await session.bind(msg["uid"])
        for key, value in msg.get("set", {}).items():
            session.set(key, value)
        await session.push(*msg.get("set", {}))
        return dict(session.settings)

    async def play(self, msg, session):
        for key, value in msg.items():
            session.set(key, value)
        await session.push(*msg)
        return dict(session.settings)

    def settings(self, msg, session):
        return dict(session.settings)

    async def logout(self, msg, session):
        await session.unbind()
        return {}


def reply(raw: bytes):
    """
    The value of a raw RESP reply to GET, TTL, EXISTS: bytes, an int or C{None}.
    """
    head, _, rest = raw.partition(b"\r\n")
    if head.startswith(b":"):
        return int(head[1:])
    if head == b"$-1":
        return None
    if head.startswith(b"$"):
        return rest[: int(head[1:])]
    raise AssertionError(f"unexpected reply {raw!r}")


def keys_in(redis, password, db):
    """
    The keys of database C{db} of C{redis} (a L{RedisServer} that asks for
    C{password}), read from outside gamenet: C{AUTH}, C{SELECT}, C{KEYS} and
    C{QUIT} on one connection, read to its end.
    """
    commands = (("AUTH", password), ("SELECT", str(db)), ("KEYS", "*"), ("QUIT",))
    data = b"".join(
        b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args)
        for args in commands
    )
    raw = b""
    with socket.create_connection(("127.0.0.1", redis.port), timeout=WAIT) as s:
        s.sendall(data)
        while chunk := s.recv(65536):
            raw += chunk
    lines = raw.split(b"\r\n")
    if lines[:2] != [b"+OK", b"+OK"] or lines[-2:] != [b"+OK", b""]:
        raise AssertionError(f"unexpected replies {raw!r}")
    return sorted(line.decode() for line in lines[3:-2] if not line.startswith(b"$"))


class RedisTestCase(TestCase):
    """
    A private redis-server for each test.
    """

    def setUp(self):
        self.redis = RedisServer()
        self.redis.start()
        self.addCleanup(self.redis.stop)

    def get(self, key):
        return reply(self.redis.command("GET", key))

    def ttl(self, key):
        return reply(self.redis.command("TTL", key))

    def set_raw(self, key, value):
        """
        C{SET key value} with any bytes, even ones that are not UTF-8.
        """
        parts = [b"SET", key.encode(), value]
        command = b"*3\r\n" + b"".join(b"$%d\r\n%s\r\n" % (len(part), part) for part in parts)
        with socket.create_connection(("127.0.0.1", self.redis.port), timeout=2) as s:
            s.sendall(command)
            self.assertEqual(s.recv(16), b"+OK\r\n")

    async def wait_for(self, predicate, what, timeout=WAIT):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                self.fail(f"timed out after {timeout}s waiting for {what}")
            await deferLater(reactor, 0.05, lambda: None)

    def cluster(self, *servers, **options):
        return attrs.evolve(cluster_config(*servers), storage="redis", redis_port=self.redis.port,
                            storage_timeout=TIMEOUT, **options)


class RedisStorageTests(RedisTestCase):
    """
    L{RedisStorage} on its own: the record's layout, its life, and calls
    bounded by the timeout when Redis is gone.
    """

    def setUp(self):
        super().setUp()
        self.storage = self.make(storage_ttl=30.0)

    def make(self, **options):
        storage = RedisStorage.for_cluster(self.cluster(**options), reactor)
        self.addCleanup(storage.close)
        return storage

    def test_interface(self):
        """
        L{RedisStorage} provides L{IStorageHandler}, and does not connect
        before its first call.
        """
        verifyObject(IStorageHandler, self.storage)
        self.assertIsNone(self.storage.redis.factory)

    async def test_layout(self):
        """
        One key per uid, C{gamenet:<cluster>:session:<uid>}, holding compact
        JSON, expiring after the TTL in whole seconds.
        """
        await self.storage.storage(SimpleNamespace(uid="ann", settings={"gold": 5, "name": "Ännä", "bag": [1, 2]}))
        key = "gamenet:test:session:ann"
        self.assertEqual(self.storage.key("ann"), key)
        self.assertEqual(self.get(key), '{"gold":5,"name":"Ännä","bag":[1,2]}'.encode())
        self.assertIn(self.ttl(key), (29, 30))
        self.assertEqual(self.redis.command("KEYS", "*"), b"*1\r\n$24\r\ngamenet:test:session:ann\r\n")

    def test_ttlWhole(self):
        """
        The TTL is C{storage_ttl} rounded up to whole seconds, at least one.
        """
        self.assertEqual([self.make(storage_ttl=ttl).ttl for ttl in (0.2, 1.0, 2.5, 600.0)], [1, 1, 3, 600])

    async def test_roundTrip(self):
        """
        What is stored is what a query gets back; a heartbeat renews the TTL;
        a delete removes the record.
        """
        session = SimpleNamespace(uid="bob", settings={"level": 3, "room": None, "flags": {"a": True}})
        self.assertIsNone(await self.storage.query("bob"))
        await self.storage.storage(session)
        self.assertEqual(await self.storage.query("bob"), {"level": 3, "room": None, "flags": {"a": True}})
        key = self.storage.key("bob")
        self.redis.command("EXPIRE", key, "5")
        await self.storage.heartbeat(session)
        self.assertIn(self.ttl(key), (29, 30))
        session.settings["level"] = 4
        await self.storage.storage(session)
        self.assertEqual(await self.storage.query("bob"), {"level": 4, "room": None, "flags": {"a": True}})
        await self.storage.delete(session)
        self.assertEqual(reply(self.redis.command("EXISTS", key)), 0)
        self.assertIsNone(await self.storage.query("bob"))

    def test_notJSON(self):
        """
        Settings JSON cannot carry fail the write's Deferred; nothing raises
        and nothing is stored.
        """
        for settings in ({"x": float("nan")}, {"x": object()}):
            self.failureResultOf(self.storage.storage(SimpleNamespace(uid="gus", settings=settings)),
                                 TypeError, ValueError)
        self.assertIsNone(self.get(self.storage.key("gus")))

    async def test_heartbeatRewrites(self):
        """
        A heartbeat of a session whose record is gone (Redis restarted empty)
        writes the record again, unless the session was unbound meanwhile.
        """
        session = SimpleNamespace(uid="cat", settings={"gold": 1})
        await self.storage.heartbeat(session)
        self.assertEqual(self.get(self.storage.key("cat")), b'{"gold":1}')
        self.assertIn(self.ttl(self.storage.key("cat")), (29, 30))
        self.redis.command("DEL", self.storage.key("cat"))
        d = self.storage.heartbeat(session)
        session.uid = None
        await d
        self.assertIsNone(self.get(self.storage.key("cat")))

    async def test_notAnObject(self):
        """
        A record that is not a JSON object is no settings: the query gets
        C{None} and a warning is logged.
        """
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        key = self.storage.key("dan")
        values = [b"[1, 2]", b"not json", b"7", b'"text"', b"null", b"\xff\xfe{}", b'{"a":1']
        for value in values:
            self.set_raw(key, value)
            self.assertIsNone(await self.storage.query("dan"), value)
        warnings = [e for e in events if "does not hold a JSON object" in e.get("log_format", "")]
        self.assertEqual(len(warnings), len(values))
        self.assertEqual(warnings[0]["uid"], "dan")

    async def test_expires(self):
        """
        A record no heartbeat renews is gone after its TTL (Redis's own clock).
        """
        storage = self.make(storage_ttl=1.0)
        await storage.storage(SimpleNamespace(uid="eve", settings={"gold": 2}))
        key = storage.key("eve")
        self.assertEqual(self.ttl(key), 1)
        started = time.monotonic()
        await self.wait_for(lambda: self.get(key) is None, "the record to expire")
        self.assertGreater(time.monotonic() - started, 0.5)
        self.assertIsNone(await storage.query("eve"))

    async def test_unavailable(self):
        """
        With Redis gone every call fails with L{RedisUnavailable} within the
        timeout; once Redis is back, calls work again.
        """
        session = SimpleNamespace(uid="fay", settings={"gold": 3})
        await self.storage.storage(session)
        self.redis.stop()
        for call in (lambda: self.storage.storage(session), lambda: self.storage.query("fay"),
                     lambda: self.storage.heartbeat(session), lambda: self.storage.delete(session)):
            started = time.monotonic()
            with self.assertRaises(RedisUnavailable):
                await call()
            self.assertLess(time.monotonic() - started, TIMEOUT + MARGIN)
        self.redis.start()

        async def works():
            try:
                await self.storage.storage(session)
            except RedisUnavailable:
                return False
            return True

        deadline = time.monotonic() + WAIT
        while not await works():
            self.assertLess(time.monotonic(), deadline, "redis is back but calls still fail")
        self.assertEqual(self.get(self.storage.key("fay")), b'{"gold":3}')
        self.assertEqual(await self.storage.query("fay"), {"gold": 3})


class RedisClusterTests(RedisTestCase):
    """
    Frontends on loopback sockets with C{storage = redis}.
    """

    async def start(self, **options):
        nodes = free_ports(2)
        self.cluster_config = self.cluster(
            frontend("connector-1", "connector", node_port=nodes[0]),
            frontend("connector-2", "connector", node_port=nodes[1]),
            **options,
        )
        self.apps = {}
        for server_id in ("connector-1", "connector-2"):
            app = self.apps[server_id] = await start_server(self.cluster_config, server_id, [handler(Game, "connector")])
            self.addCleanup(app.sessions.keeper.handler.close)
            self.addCleanup(app.stopService)

    async def connect(self, server_id):
        client = await Client.connect(reactor, "127.0.0.1", client_port(self.apps[server_id]), "tcp", timeout=WAIT)
        self.addCleanup(self.close, client)
        return client

    async def close(self, client):
        await client.close()

    def key(self, uid):
        return f"gamenet:test:session:{uid}"

    def stored(self, uid):
        value = self.get(self.key(uid))
        return None if value is None else json.loads(value)

    async def test_reconnectElsewhere(self):
        """
        A user who drops and logs in again on another connector (another
        process, as far as Redis knows) gets the stored settings back, merged
        under the keys the new session already had.
        """
        await self.start(storage_ttl=60.0)
        self.assertIsInstance(self.apps["connector-1"].sessions.keeper.handler, RedisStorage)
        first = await self.connect("connector-1")
        answer = await first.request("connector.game.login", {"uid": "ann", "set": {"level": 4, "room": "r1"}})
        self.assertEqual(answer, {"level": 4, "room": "r1"})
        self.assertEqual(self.stored("ann"), {"level": 4, "room": "r1"})
        self.assertIn(self.ttl(self.key("ann")), (59, 60))
        await self.close(first)
        second = await self.connect("connector-2")
        self.assertEqual(await second.request("connector.game.prepare", {"room": "lobby", "lang": "fr"}),
                         {"room": "lobby", "lang": "fr"})
        self.assertEqual(await second.request("connector.game.login", {"uid": "ann"}),
                         {"room": "lobby", "lang": "fr", "level": 4})
        self.assertEqual(await second.request("connector.game.settings"), {"room": "lobby", "lang": "fr", "level": 4})
        self.assertEqual(self.stored("ann"), {"room": "lobby", "lang": "fr", "level": 4})
        keeper = self.apps["connector-2"].sessions.keeper
        self.assertEqual((keeper.metrics["storage_restored"], keeper.metrics["storage_errors"]), (1, 0))

    async def test_logoutDeletes(self):
        """
        An explicit logout (unbind) deletes the record; a later login starts empty.
        """
        await self.start()
        client = await self.connect("connector-1")
        await client.request("connector.game.login", {"uid": "bob", "set": {"gold": 2}})
        self.assertEqual(self.stored("bob"), {"gold": 2})
        self.assertEqual(await client.request("connector.game.logout"), {})
        self.assertEqual(reply(self.redis.command("EXISTS", self.key("bob"))), 0)
        other = await self.connect("connector-2")
        self.assertEqual(await other.request("connector.game.login", {"uid": "bob"}), {})
        self.assertEqual(self.apps["connector-1"].sessions.keeper.metrics["storage_deletes"], 1)

    async def test_redisDies(self):
        """
        Redis killed while clients play: every request still answers within
        the storage timeout (plus a margin), sessions go on from memory, the
        failures are counted. Redis started again (empty) on the same port:
        the latest settings of every session are written again within a few
        seconds, those whose writes failed by the keeper's retry, an idle one
        by its heartbeat; nothing acknowledged is lost, and no server fell.
        """
        await self.start(storage_ttl=60.0, storage_heartbeat=1.0)
        keeper = self.apps["connector-1"].sessions.keeper
        players = {f"p{i}": await self.connect("connector-1") for i in range(4)}
        for n, (uid, client) in enumerate(players.items()):
            await client.request("connector.game.login", {"uid": uid, "set": {"score": 0, "n": n}})
        idle = await self.connect("connector-1")
        await idle.request("connector.game.login", {"uid": "idle", "set": {"score": 99}})
        for uid in [*players, "idle"]:
            self.assertIsNotNone(self.stored(uid))

        self.redis.stop()
        latencies = []
        late = await self.connect("connector-1")

        async def timed(client, route, msg):
            started = time.monotonic()
            answer = await client.request(route, msg)
            latencies.append(time.monotonic() - started)
            return answer

        self.assertEqual(await timed(late, "connector.game.login", {"uid": "late", "set": {"score": 7}}),
                         {"score": 7})
        outage_ends = time.monotonic() + 1.0
        score = 0
        while time.monotonic() < outage_ends:
            score += 1
            for uid, client in players.items():
                answer = await timed(client, "connector.game.play", {"score": score})
                self.assertEqual(answer["score"], score)
            await deferLater(reactor, 0.1, lambda: None)
        self.assertLess(max(latencies), TIMEOUT + MARGIN, latencies)
        self.assertGreaterEqual(keeper.metrics["storage_errors"], 1)
        self.assertFalse(keeper.healthy)
        for uid, client in players.items():
            self.assertEqual(await client.request("connector.game.settings"), {"score": score, "n": int(uid[1:])})
        await self.close(players.pop("p3"))  # drops while its last write is owed

        self.redis.start()
        expected = {uid: {"score": score, "n": int(uid[1:])} for uid in ("p0", "p1", "p2", "p3")}
        expected.update({"late": {"score": 7}, "idle": {"score": 99}})
        await self.wait_for(lambda: all(self.stored(uid) == settings for uid, settings in expected.items()),
                            "the settings to be written again")
        self.assertTrue(keeper.healthy)
        for uid in expected:
            self.assertIn(self.ttl(self.key(uid)), range(55, 61))
        self.assertTrue(all(app.running for app in self.apps.values()))
        self.assertEqual(await players["p0"].request("connector.game.play", {"score": -1}), {"score": -1, "n": 0})
        self.assertEqual(self.stored("p0"), {"score": -1, "n": 0})
        other = await self.connect("connector-2")
        self.assertEqual(await other.request("connector.game.login", {"uid": "p3"}), expected["p3"])


class RedisPasswordTests(TestCase):
    """
    C{redis_password} and C{redis_db}: a Redis that asks for a password
    (C{--requirepass}), the keys in the database the file names.
    """

    PASSWORD = "s3cret pass"

    def setUp(self):
        self.redis = RedisServer(arguments=["--requirepass", self.PASSWORD])
        self.redis.start()
        self.addCleanup(self.redis.stop)

    def keys(self, db):
        return keys_in(self.redis, self.PASSWORD, db)

    def storage(self, password, db=0):
        cluster = attrs.evolve(cluster_config(), storage="redis", redis_port=self.redis.port,
                               redis_password=password, redis_db=db, storage_timeout=TIMEOUT)
        storage = RedisStorage.for_cluster(cluster, reactor)
        self.addCleanup(storage.close)
        return storage

    async def test_passwordAndDatabase(self):
        """
        With the right password, records are written and read back, in the
        database of C{redis_db}, and in no other.
        """
        storage = self.storage(self.PASSWORD, db=3)
        await storage.storage(SimpleNamespace(uid="ann", settings={"level": 4}))
        self.assertEqual(await storage.query("ann"), {"level": 4})
        self.assertEqual(self.keys(3), [storage.key("ann")])
        self.assertEqual(self.keys(0), [])

    async def test_wrongPassword(self):
        """
        A wrong password, or none, is logged as Redis refused it, and every
        call fails with L{RedisUnavailable}; nothing is written.
        """
        logged = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        for password, refusal in (("wrong", "could not auth: WRONGPASS"), ("", "NOAUTH Authentication required")):
            storage = self.storage(password)
            with self.assertRaises(RedisUnavailable):
                await storage.storage(SimpleNamespace(uid="bob", settings={"gold": 1}))
            with self.assertRaises(RedisUnavailable):
                await storage.query("bob")
            self.assertTrue(any(refusal in (formatEvent(event) or "") for event in logged),
                            [formatEvent(event) for event in logged])
        self.assertEqual(self.keys(0), [])
