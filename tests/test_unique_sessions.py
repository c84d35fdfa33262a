"""
One session per uid across the frontends of a type (C{unique_session =
cluster}, L{gamenet.session.unique}): with L{MemoryCluster}, step by step;
with Redis discovery against a private Redis; and with real processes.
"""

from __future__ import annotations

import json
import time
from typing import Any, Iterator

import attrs
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, gatherResults
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from gamenet import Handler, handler
from gamenet.client import Client, ClientError
from gamenet.session.unique import KICK_REASON, rendezvous
from gamenet.testing import (
    MemoryCluster, RedisServer, backend, client_port, cluster_config, free_ports, frontend, start_server,
)

from ._processes import MasterProcess, accepts, cluster_section, eventually, server_section
from .test_config import MINIMAL, ConfigTestCase

CONNECTORS = ("connector-1", "connector-2", "connector-3")


class Entry(Handler):
    """
    C{connector.entry.*}: bind on the frontend, and show the session.
    """

    async def bind(self, msg: Any, session: Any) -> dict[str, Any]:
        await session.bind(msg["uid"])
        return {"server": self.app.server_id, "uid": session.uid}

    async def unbind(self, msg: Any, session: Any) -> dict[str, Any]:
        await session.unbind()
        return {"uid": session.uid}

    def whoami(self, msg: Any, session: Any) -> dict[str, Any]:
        return {"server": self.app.server_id, "uid": session.uid}


class Area(Handler):
    """
    C{area.area.login}: bind from a backend, through the frontend's sys remote.
    """

    async def login(self, msg: Any, session: Any) -> dict[str, Any]:
        await session.bind(msg["uid"])
        return {"uid": session.uid}


REGISTRATIONS = [handler(Entry, "connector"), handler(Area, "area")]


def make_cluster(policy: str = "kick_old", scope: str = "cluster") -> MemoryCluster:
    options = {"unique_session": scope, "unique_session_policy": policy}
    return MemoryCluster(
        cluster_config(*(frontend(c, "connector", **options) for c in CONNECTORS), backend("area-1", "area"),
                       rpc_timeout=2),
        REGISTRATIONS,
    )


def uid_judged_by(arbiter: str, prefix: str = "u") -> str:
    """
    A uid whose arbiter is C{arbiter} while every connector is up.
    """
    for n in range(1000):
        uid = f"{prefix}{n}"
        if rendezvous(uid, list(CONNECTORS))[0] == arbiter:
            return uid
    raise AssertionError("no uid found")


class UniqueTestCase(SynchronousTestCase):
    policy = "kick_old"

    def setUp(self) -> None:
        self.cluster = make_cluster(self.policy)
        self.cluster.start()
        self.addCleanup(self.cluster.stop)
        self.cluster.advance(2)  # past the start, when no peer is gone yet

    def connect(self, server_id: str) -> Client:
        return self.cluster.client(server_id)

    def request(self, client: Client, route: str, msg: Any = None, seconds: float = 0) -> Any:
        d = client.request(route, msg or {})
        self.cluster.flush()
        if seconds:
            self.cluster.advance(seconds)
        return self.successResultOf(d)

    def bind(self, client: Client, uid: str, seconds: float = 0) -> Any:
        return self.request(client, "connector.entry.bind", {"uid": uid}, seconds)

    def live(self, uid: str) -> list[tuple[str, int]]:
        """
        The sessions bound to C{uid} whose connection still works (not
        closed, not closing), as C{(frontend id, session id)}.
        """
        return [
            (server_id, session.id)
            for server_id, app in self.cluster.apps.items() if app.sessions is not None
            for session in app.sessions.get_by_uid(uid)
            if not session.closed and not session._link.closing
        ]

    def concurrent_binds(self, rounds: int = 40) -> Iterator[tuple[int, str, tuple[str, str], list[Client], list[Deferred[Any]]]]:
        """
        C{rounds} rounds of two clients binding one uid at the same moment,
        on two connectors (every pair, and both on one) with each arbiter,
        the cluster run step by step (L{step_checking}): each round's
        number, uid, the two connectors, the clients and the answers to
        their binds.
        """
        pairs = [(a, b) for a in CONNECTORS for b in CONNECTORS]
        for round in range(rounds):
            uid = uid_judged_by(CONNECTORS[round % 3], f"r{round}-")
            where = pairs[round % len(pairs)]
            clients = [self.connect(where[0]), self.connect(where[1])]
            answers = [c.request("connector.entry.bind", {"uid": uid}) for c in clients]
            self.step_checking(uid)
            yield round, uid, where, clients, answers

    def step_checking(self, uid: str) -> None:
        """
        Run the cluster one pump at a time until nothing moves, asserting
        after every step that at most one session of C{uid} is bound and working.
        """
        cluster = self.cluster
        for _ in range(100000):
            cluster.reactor.advance(0)
            self.assertLessEqual(len(self.live(uid)), 1)
            moved = False
            for pump in list(cluster._pumps):
                if pump.pump(advanceClock=False):
                    moved = True
                    self.assertLessEqual(len(self.live(uid)), 1)
                if pump.serverIO.disconnected and pump.clientIO.disconnected:
                    cluster._pumps.remove(pump)
                    del cluster._owners[pump]
            if not moved and not any(c.getTime() <= cluster.reactor.seconds()
                                     for c in cluster.reactor.getDelayedCalls()):
                return
        self.fail("the cluster did not settle")


class KickOldTests(UniqueTestCase):
    """
    C{unique_session_policy = kick_old}: the newer bind wins, the older
    session is kicked C{"logged in elsewhere"}.
    """

    def test_otherFrontend(self) -> None:
        """
        A uid bound on connector-1 and then on connector-2: the first client
        is kicked C{"logged in elsewhere"}; only the second session holds the uid.
        """
        uid = uid_judged_by("connector-3")
        first, second = self.connect("connector-1"), self.connect("connector-2")
        self.assertEqual(self.bind(first, uid), {"server": "connector-1", "uid": uid})
        self.assertEqual(self.bind(second, uid), {"server": "connector-2", "uid": uid})
        self.assertEqual(self.successResultOf(first.closed), KICK_REASON)
        self.assertEqual(self.live(uid), [("connector-2", 1)])

    def test_sameFrontend(self) -> None:
        """
        Two sessions of one frontend are kept apart as sessions of two are.
        """
        uid = uid_judged_by("connector-2")
        first, second = self.connect("connector-1"), self.connect("connector-1")
        self.bind(first, uid)
        self.assertEqual(self.bind(second, uid)["uid"], uid)
        self.assertEqual(first.kick_reason, KICK_REASON)
        self.assertEqual(self.live(uid), [("connector-1", 2)])

    def test_rebindSameSession(self) -> None:
        """
        Binding a session again to its own uid changes nothing.
        """
        uid = uid_judged_by("connector-2")
        client = self.connect("connector-1")
        self.bind(client, uid)
        self.assertEqual(self.bind(client, uid), {"server": "connector-1", "uid": uid})
        self.assertIsNone(client.kick_reason)

    def test_unbound(self) -> None:
        """
        A session that unbound holds nothing: binding the uid elsewhere kicks no one.
        """
        uid = uid_judged_by("connector-1")
        first, second = self.connect("connector-2"), self.connect("connector-3")
        self.bind(first, uid)
        self.assertEqual(self.request(first, "connector.entry.unbind"), {"uid": None})
        self.bind(second, uid)
        self.assertIsNone(first.kick_reason)
        self.assertEqual(self.request(first, "connector.entry.whoami"), {"server": "connector-2", "uid": None})

    def test_concurrentBinds(self) -> None:
        """
        Forty rounds of two clients binding one uid at the same moment, on
        two connectors (every pair, and both on one) with each arbiter: at no
        step of the cluster are two sessions of the uid bound and working,
        and after each round exactly one is, the other client kicked
        C{"logged in elsewhere"}.
        """
        for round, uid, where, clients, answers in self.concurrent_binds():
            survivors = [c for c in clients if c.kick_reason is None]
            self.assertEqual(len(survivors), 1, f"round {round}: {[c.kick_reason for c in clients]}")
            loser = clients[1 - clients.index(survivors[0])]
            self.assertEqual(loser.kick_reason, KICK_REASON)
            self.assertEqual(self.successResultOf(answers[clients.index(survivors[0])]), {
                "server": where[clients.index(survivors[0])], "uid": uid})
            # The loser was either bound first and then kicked, or kicked
            # while its claim was decided: its bind failed with the connection.
            lost = answers[clients.index(loser)]
            if lost.called and not isinstance(lost.result, Failure):
                self.assertEqual(self.successResultOf(lost)["uid"], uid)
            else:
                self.failureResultOf(lost, ClientError)
            self.assertEqual(len(self.live(uid)), 1)
            survivors[0].close()
            self.cluster.flush()
            self.assertEqual(self.live(uid), [])

class RefuseTests(UniqueTestCase):
    """
    C{unique_session_policy = refuse}: the newer bind fails; the older
    session goes on.
    """

    policy = "refuse"

    def test_refused(self) -> None:
        """
        The second bind answers an error with code 409 saying the uid is
        logged in elsewhere; both clients stay connected, the first bound.
        """
        uid = uid_judged_by("connector-3")
        first, second = self.connect("connector-1"), self.connect("connector-2")
        self.bind(first, uid)
        self.assertEqual(self.bind(second, uid),
                         {"code": 409, "message": f"cannot bind {uid}: it is logged in elsewhere"})
        self.assertEqual(self.request(first, "connector.entry.whoami"), {"server": "connector-1", "uid": uid})
        self.assertEqual(self.request(second, "connector.entry.whoami"), {"server": "connector-2", "uid": None})
        self.assertIsNone(first.kick_reason)

    def test_refusedFromBackend(self) -> None:
        """
        A backend's bind, made through the frontend, fails the same way: the
        backend handler's answer is that error.
        """
        uid = uid_judged_by("connector-1")
        first, second = self.connect("connector-2"), self.connect("connector-3")
        self.assertEqual(self.request(first, "area.area.login", {"uid": uid}), {"uid": uid})
        self.assertEqual(self.request(second, "area.area.login", {"uid": uid}),
                         {"code": 409, "message": f"cannot bind {uid}: it is logged in elsewhere"})

    def test_afterClose(self) -> None:
        """
        Once the holder's connection closed, the uid binds elsewhere.
        """
        uid = uid_judged_by("connector-2")
        first, second = self.connect("connector-1"), self.connect("connector-3")
        self.bind(first, uid)
        first.close()
        self.cluster.flush()
        self.assertEqual(self.bind(second, uid)["uid"], uid)

    def test_concurrentBinds(self) -> None:
        """
        Forty rounds of two binds of one uid at the same moment: exactly one
        is bound, the other answered 409 and still connected.
        """
        for round, uid, where, clients, answers in self.concurrent_binds():
            results = [self.successResultOf(a) for a in answers]
            self.assertEqual(sorted(str(r.get("code")) for r in results), ["409", "None"], f"round {round}")
            self.assertEqual(len(self.live(uid)), 1)
            for client in clients:
                self.assertIsNone(client.kick_reason)
                client.close()
            self.cluster.flush()


class ArbiterTests(UniqueTestCase):
    """
    The arbiter of a uid down, gone, or restarted.
    """

    def test_arbiterHung(self) -> None:
        """
        An arbiter that does not answer (but is not gone) fails the bind
        with 503 after the RPC timeout, rather than allowing it unchecked.
        """
        uid = uid_judged_by("connector-3")
        client = self.connect("connector-1")
        self.cluster.freeze("connector-3")
        answer = self.bind(client, uid, seconds=3)
        self.assertEqual(answer["code"], 503)
        self.assertTrue(answer["message"].startswith(f"cannot bind {uid}: its arbiter connector-3 does not answer"),
                        answer)
        self.assertEqual(self.live(uid), [])

    def test_holderFrontendHung(self) -> None:
        """
        A frontend that may hold the uid and does not answer fails the bind
        with 503: the arbiter cannot know.
        """
        uid = uid_judged_by("connector-3")
        first, second = self.connect("connector-1"), self.connect("connector-2")
        self.bind(first, uid)
        self.cluster.freeze("connector-1")
        answer = self.bind(second, uid, seconds=3)
        self.assertEqual(answer["code"], 503)
        self.assertIn("connector-1 does not answer", answer["message"])
        self.assertIsNone(first.kick_reason)

    def test_arbiterGone(self) -> None:
        """
        When the arbiter's process is gone, the next frontend in the uid's
        order decides, from the live sessions: the older session is kicked.
        """
        uid = uid_judged_by("connector-3")
        first, second = self.connect("connector-1"), self.connect("connector-2")
        self.bind(first, uid)
        self.cluster.kill("connector-3")
        self.assertEqual(self.bind(second, uid)["uid"], uid)
        self.assertEqual(first.kick_reason, KICK_REASON)
        self.assertEqual(self.live(uid), [("connector-2", 1)])

    def test_arbiterRestarted(self) -> None:
        """
        An arbiter restarted with nothing in memory still kicks the holder
        it granted before: it asks the live sessions.
        """
        uid = uid_judged_by("connector-3")
        first, second = self.connect("connector-1"), self.connect("connector-2")
        self.bind(first, uid)
        self.cluster.kill("connector-3")
        self.cluster.start("connector-3")
        self.assertEqual(self.bind(second, uid)["uid"], uid)
        self.assertEqual(first.kick_reason, KICK_REASON)

    def test_starting(self) -> None:
        """
        Within the RPC timeout after a frontend started, a peer it has no
        link to yet is not gone (it may just not be linked yet): a bind
        that must ask it fails with 503 rather than miss its sessions.
        """
        uid = uid_judged_by("connector-1")
        first = self.connect("connector-2")
        self.bind(first, uid)
        self.cluster.freeze("connector-2")
        self.cluster.kill("connector-1")
        app = self.cluster.apps["connector-1"]
        app.privilegedStartService()
        app.startService()
        self.cluster.flush()
        self.assertFalse(app.node.links["connector-2"].up)
        answer = self.bind(self.connect("connector-1"), uid)
        self.assertEqual(answer["code"], 503)
        self.assertIn("connector-2 does not answer", answer["message"])
        self.assertIsNone(first.kick_reason)

    def test_holderFrontendGone(self) -> None:
        """
        A frontend whose process is gone holds nothing: the uid binds elsewhere.
        """
        uid = uid_judged_by("connector-3")
        first, second = self.connect("connector-1"), self.connect("connector-2")
        self.bind(first, uid)
        self.cluster.kill("connector-1")
        self.assertEqual(self.bind(second, uid)["uid"], uid)


class FrontendScopeTests(SynchronousTestCase):
    """
    C{unique_session = frontend} (the default) keeps today's behaviour.
    """

    def test_default(self) -> None:
        """
        One uid bound on two connectors: both sessions stay.
        """
        cluster = make_cluster(scope="frontend")
        cluster.start()
        self.addCleanup(cluster.stop)
        self.assertIsNone(cluster.apps["connector-1"].unique_sessions)
        clients = [cluster.client("connector-1"), cluster.client("connector-2")]
        answers = [c.request("connector.entry.bind", {"uid": "u"}) for c in clients]
        cluster.flush()
        self.assertEqual([self.successResultOf(a)["uid"] for a in answers], ["u", "u"])
        self.assertEqual([c.kick_reason for c in clients], [None, None])


class ConfigTests(ConfigTestCase):
    """
    C{unique_session} and C{unique_session_policy}.
    """

    def test_values(self) -> None:
        """
        Both keys are read from C{[frontend]} or a frontend's own section.
        """
        config = self.load(MINIMAL.replace("[server:gate-1]", "[frontend]\nunique_session = cluster\n\n[server:gate-1]")
                           .replace("frontend = true", "frontend = true\nunique_session_policy = refuse"))
        options = config.server("gate-1").options
        self.assertEqual((options.unique_session, options.unique_session_policy), ("cluster", "refuse"))

    def test_defaults(self) -> None:
        """
        By default a frontend keeps today's behaviour, and would kick the old session.
        """
        options = self.load(MINIMAL).server("gate-1").options
        self.assertEqual((options.unique_session, options.unique_session_policy), ("frontend", "kick_old"))

    def test_badValues(self) -> None:
        """
        Values outside the choices are refused with the choices named.
        """
        self.assertProblem(MINIMAL.replace("frontend = true", "frontend = true\nunique_session = world"),
                           "[server:gate-1] unique_session", "'world' is not one of frontend, cluster")
        self.assertProblem(MINIMAL.replace("frontend = true", "frontend = true\nunique_session_policy = newest"),
                           "[server:gate-1] unique_session_policy", "'newest' is not one of kick_old, refuse")

    def test_typeDisagrees(self) -> None:
        """
        Frontends of one type must agree on both keys.
        """
        text = MINIMAL + ("\n[server:gate-2]\ntype = gate\nhost = 127.0.0.1\nnode_port = 4051\n"
                          "frontend = true\nclient_port = 3051\nunique_session = cluster\n")
        self.assertProblem(text, "[server:gate-2] unique_session",
                           "'cluster' differs from 'frontend' of gate-1; every frontend of type gate must "
                           "have the same")


# Redis discovery, in this process

POLL = 0.02
WAIT = 15.0
REDIS_ROUNDS = 25


async def close_quietly(client: Client) -> None:
    """
    Close C{client} if it is open, within five seconds.
    """
    try:
        await client.close().addTimeout(5, reactor)
    except Exception:
        pass


class RedisTestCase(TestCase):
    """
    Two connectors with C{discovery = redis} and C{unique_session = cluster}
    in this process, on loopback sockets, against a private Redis.
    """

    timeout = 120
    policy = "kick_old"

    async def setUp(self) -> None:
        self.redis = RedisServer()
        self.redis.start()
        self.addCleanup(self.redis.stop)
        self.apps = [await self.start(f"connector-{n}") for n in (1, 2)]
        await self.wait_until(lambda: all(
            other.server_id in app.node.links and app.node.links[other.server_id].available
            for app in self.apps for other in self.apps if other is not app), "the connectors linked")

    async def start(self, server_id: str) -> Any:
        node_port, port = free_ports(2)
        server = frontend(server_id, "connector", client_port=port, node_port=node_port, transport="tcp",
                          unique_session="cluster", unique_session_policy=self.policy)
        config = attrs.evolve(cluster_config(server, rpc_timeout=3.0), discovery="redis", discovery_ttl=3.0,
                              redis_port=self.redis.port, storage_timeout=0.5)
        app = await start_server(config, server_id, REGISTRATIONS)
        self.addCleanup(self.stop, app)
        return app

    async def stop(self, app: Any) -> None:
        if app.running:
            await app.stopService()

    async def wait_until(self, condition: Any, what: str, timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                self.fail(f"timed out after {timeout:g}s waiting for {what}")
            await deferLater(reactor, POLL, lambda: None)

    async def connect(self, app: Any) -> Client:
        client = await Client.connect(reactor, "127.0.0.1", client_port(app), transport="tcp", timeout=5)
        self.addCleanup(close_quietly, client)
        return client

    async def bind(self, client: Client, uid: str) -> Any:
        return await client.request("connector.entry.bind", {"uid": uid}).addTimeout(10, reactor)

    async def request(self, client: Client, route: str, msg: Any = None) -> Any:
        return await client.request(route, msg).addTimeout(10, reactor)

    def holder(self, uid: str) -> Any:
        """
        The holder in C{uid}'s Redis key, or C{None}.
        """
        reply = self.redis.command("GET", f"gamenet:test:unique:connector:{uid}")
        if reply.startswith(b"$-1"):
            return None
        return json.loads(reply.split(b"\r\n")[1])

    def life(self, uid: str) -> int:
        """
        The milliseconds C{uid}'s key has left to live.
        """
        return int(self.redis.command("PTTL", f"gamenet:test:unique:connector:{uid}")[1:].split(b"\r\n")[0])

    def live(self, uid: str) -> list[tuple[str, int]]:
        return [(app.server_id, session.id) for app in self.apps for session in app.sessions.get_by_uid(uid)
                if not session.closed and not session._link.closing]


class RedisKickOldTests(RedisTestCase):
    """
    C{kick_old} through Redis.
    """

    async def test_concurrentBinds(self) -> None:
        """
        Rounds of two real clients, one on each connector, binding one uid
        at the same moment: exactly one survives each round, bound, and it
        is the holder in Redis; the other is kicked C{"logged in elsewhere"}.
        """
        for round in range(REDIS_ROUNDS):
            clients = [await self.connect(app) for app in self.apps]
            answers = [client.request("connector.entry.bind", {"uid": "player"}) for client in clients]
            for answer in answers:
                answer.addErrback(lambda f: f.trap(ClientError))
            await self.wait_until(lambda: any(c.kick_reason for c in clients), f"a kick in round {round}")
            survivors = [c for c in clients if c.kick_reason is None]
            self.assertEqual(len(survivors), 1, f"round {round}")
            loser = clients[1 - clients.index(survivors[0])]
            self.assertEqual(await loser.closed, KICK_REASON)
            self.assertEqual((await answers[clients.index(survivors[0])])["uid"], "player")
            who = await survivors[0].request("connector.entry.whoami").addTimeout(10, reactor)
            self.assertEqual(who["uid"], "player")
            [(server, session_id)] = self.live("player")
            self.assertEqual(server, who["server"])
            self.assertEqual(self.holder("player"), [server, session_id])
            await survivors[0].close()

    async def test_released(self) -> None:
        """
        The key is renewed while it is held; closing the holder deletes it.
        """
        client = await self.connect(self.apps[0])
        await self.bind(client, "alice")
        self.assertEqual(self.holder("alice"), ["connector-1", 1])
        lives = [self.life("alice")]
        self.assertTrue(2000 < lives[0] <= 3000, lives)

        def renewed() -> bool:
            lives.append(self.life("alice"))
            return lives[-1] > lives[-2] + 100

        await self.wait_until(renewed, "a renewal")
        self.assertEqual(self.holder("alice"), ["connector-1", 1])
        await client.close()
        await self.wait_until(lambda: self.holder("alice") is None, "the key deleted")

    async def test_lostClaim(self) -> None:
        """
        A key another holder has taken (this frontend could not renew it in
        time) kicks the session here at the next renewal.
        """
        client = await self.connect(self.apps[0])
        await self.bind(client, "bob")
        self.redis.command("SET", "gamenet:test:unique:connector:bob", '["connector-2", 99]')
        self.assertEqual(await client.closed.addTimeout(10, reactor), KICK_REASON)

    async def test_adopted(self) -> None:
        """
        A session bound here without a claim, as one resumed from another
        frontend is, gets its key at the next renewal; one whose uid a live
        session elsewhere holds is kicked instead, whatever the policy (the
        resumed session is the older login).
        """
        first, second = await self.connect(self.apps[0]), await self.connect(self.apps[1])
        await self.request(first, "connector.entry.whoami")
        await self.request(second, "connector.entry.whoami")
        self.apps[0].sessions._bound(self.apps[0].sessions.get(1), "erin")
        await self.wait_until(lambda: self.holder("erin") == ["connector-1", 1], "the key claimed")
        self.apps[1].sessions._bound(self.apps[1].sessions.get(1), "erin")
        self.assertEqual(await second.closed.addTimeout(10, reactor), KICK_REASON)
        self.assertEqual((await self.request(first, "connector.entry.whoami"))["uid"], "erin")
        self.assertEqual(self.holder("erin"), ["connector-1", 1])

    async def test_holderUnregistered(self) -> None:
        """
        A key held on a frontend that Redis no longer lists holds nothing;
        one held on a registered frontend that does not answer fails the
        bind with 503.
        """
        client = await self.connect(self.apps[0])
        self.redis.command("SET", "gamenet:test:unique:connector:frank", '["connector-9", 5]')
        self.assertEqual((await self.bind(client, "frank"))["uid"], "frank")
        self.redis.command("SET", "gamenet:test:unique:connector:gina", '["connector-2", 5]')
        await self.apps[0].node.links["connector-2"].stop()
        answer = await self.bind(await self.connect(self.apps[0]), "gina")
        self.assertEqual(answer["code"], 503, answer)
        self.assertIn("its holder's frontend connector-2 does not answer", answer["message"])

    async def test_redisDown(self) -> None:
        """
        With Redis away, a bind fails with 503 rather than binding unchecked.
        """
        client = await self.connect(self.apps[0])
        self.redis.stop()
        answer = await self.bind(client, "carol")
        self.assertEqual(answer["code"], 503)
        self.assertTrue(answer["message"].startswith("cannot bind carol: unique session claim"), answer)
        self.assertEqual(self.live("carol"), [])


class RedisRefuseTests(RedisTestCase):
    """
    C{refuse} through Redis.
    """

    policy = "refuse"

    async def test_concurrentBinds(self) -> None:
        """
        Rounds of two binds of one uid at the same moment: exactly one is
        bound, the other answered 409; nobody is kicked.
        """
        for round in range(REDIS_ROUNDS):
            clients = [await self.connect(app) for app in self.apps]
            answers = await gatherResults([client.request("connector.entry.bind", {"uid": "player"})
                                           for client in clients]).addTimeout(10, reactor)
            self.assertEqual(sorted(str(a.get("code")) for a in answers), ["409", "None"], f"round {round}: {answers}")
            self.assertEqual(len(self.live("player")), 1)
            for client in clients:
                self.assertIsNone(client.kick_reason)
                await client.close()

    async def test_staleKey(self) -> None:
        """
        A key whose session no longer holds the uid (its release was lost)
        refuses nobody.
        """
        self.redis.command("SET", "gamenet:test:unique:connector:dave", '["connector-2", 99]')
        client = await self.connect(self.apps[0])
        self.assertEqual((await self.bind(client, "dave"))["uid"], "dave")
        self.assertEqual(self.holder("dave"), ["connector-1", 1])


# Real processes

PROCESS_ROUNDS = 30


class ProcessTests(TestCase):
    """
    Two connectors run by a master with twistd, as an operator runs them
    (L{MasterProcess}), with static discovery or through a private Redis;
    real clients bind one uid on both at the same moment, round after round.
    """

    timeout = 180

    async def cluster(self, policy: str, discovery: str = "static") -> dict[str, int]:
        """
        Start the cluster and wait until both connectors accept clients and
        are linked; the connectors' client ports by id.
        """
        ports = dict(zip(["master", "connector-1.node", "connector-2.node", "connector-1.client",
                          "connector-2.client"], free_ports(5)))
        keys: dict[str, Any] = {"plugins": "tests.clusterapp.plugins", "rpc_timeout": 6, "drain_timeout": 0}
        if discovery == "redis":
            redis = RedisServer()
            redis.start()
            self.addCleanup(redis.stop)
            keys.update(discovery="redis", discovery_ttl=3, storage_timeout=1, redis_port=redis.port)
        self.master = MasterProcess(self)
        self.master.write(cluster_section("unique", ports["master"], **keys)
                          + f"\n[frontend]\nunique_session = cluster\nunique_session_policy = {policy}\n"
                          + server_section("connector-1", ports) + server_section("connector-2", ports))
        self.master.start(15.0)
        clients = {c: ports[f"{c}.client"] for c in ("connector-1", "connector-2")}

        async def ready() -> bool:
            self.master.fail_if_exited()
            return all(accepts(port) for port in clients.values()) and await self.master.linked(clients)

        await eventually(ready, 60.0, "both connectors serving and linked", self.master.fail, 0.1)
        return clients

    async def connect(self, port: int) -> Client:
        client = await Client.connect(reactor, "127.0.0.1", port, transport="tcp", timeout=5).addTimeout(10, reactor)
        self.addCleanup(close_quietly, client)
        return client

    async def request(self, client: Client, route: str, msg: Any = None) -> Any:
        return await client.request(route, msg).addTimeout(15, reactor)

    async def rounds(self, ports: dict[str, int], policy: str) -> None:
        """
        L{PROCESS_ROUNDS} rounds of two clients, one on each connector,
        binding C{"player"} at the same moment: exactly one is bound when the
        round ends; with C{kick_old} the other was kicked C{"logged in
        elsewhere"}, with C{refuse} it was answered 409 and is still connected.
        """
        for round in range(PROCESS_ROUNDS):
            clients = [await self.connect(port) for port in ports.values()]
            answers = [client.request("connector.sessionHandler.bind", {"uid": "player"}) for client in clients]
            if policy == "kick_old":
                for answer in answers:
                    answer.addErrback(lambda f: f.trap(ClientError))
                kicked = await DeferredList([c.closed for c in clients], fireOnOneCallback=True).addTimeout(15, reactor)
                loser = clients[kicked[1]]
                self.assertEqual(loser.kick_reason, KICK_REASON, f"round {round}")
                survivor = clients[1 - kicked[1]]
                self.assertEqual((await answers[1 - kicked[1]].addTimeout(15, reactor))["uid"], "player")
            else:
                results = await gatherResults(answers).addTimeout(15, reactor)
                self.assertEqual(sorted(str(r.get("code")) for r in results), ["409", "None"],
                                 f"round {round}: {results}")
                survivor = clients[[r.get("code") for r in results].index(None)]
                loser = clients[1 - clients.index(survivor)]
                self.assertEqual((await self.request(loser, "connector.sessionHandler.info"))["uid"], None)
            self.assertEqual((await self.request(survivor, "connector.sessionHandler.info"))["uid"], "player")
            self.assertIsNone(survivor.kick_reason)
            for client in clients:
                await close_quietly(client)

    async def test_staticKickOld(self) -> None:
        """
        Static discovery, C{kick_old}: the connectors agree over their node links.
        """
        await self.rounds(await self.cluster("kick_old"), "kick_old")

    async def test_staticRefuse(self) -> None:
        """
        Static discovery, C{refuse}.
        """
        await self.rounds(await self.cluster("refuse"), "refuse")

    async def test_redisKickOld(self) -> None:
        """
        Redis discovery, C{kick_old}: the connectors agree through Redis.
        """
        await self.rounds(await self.cluster("kick_old", "redis"), "kick_old")

    async def test_redisRefuse(self) -> None:
        """
        Redis discovery, C{refuse}.
        """
        await self.rounds(await self.cluster("refuse", "redis"), "refuse")
