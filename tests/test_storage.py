"""
Session storage: the keeper's semantics with the memory backend, a failing
backend and a game's own storage plugin, in a L{MemoryCluster}.
"""

from __future__ import annotations

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from gamenet import Handler, IStorageHandler, handler, storage_handler
from gamenet.storage import MemoryStorage, choose_storage
from gamenet.testing import MemoryCluster, backend, cluster_config, frontend


class Game(Handler):
    async def login(self, msg, session):
        await session.bind(msg["uid"])
        for key, value in msg.get("set", {}).items():
            session.set(key, value)
        await session.push(*msg.get("set", {}))
        return dict(session.settings)

    async def logout(self, msg, session):
        await session.unbind()
        return {}

    def settings(self, msg, session):
        return dict(session.settings)

    def put(self, msg, session):
        for key, value in msg.items():
            session.set(key, value)
        return dict(session.settings)


@implementer(IStorageHandler)
class Flaky:
    """
    A storage that fails, hangs or works, as the test says.
    """

    def __init__(self, app=None):
        self.mode = "work"
        self.records = {}
        self.calls = []
        self.pending = []

    def _answer(self, value=None):
        if self.mode == "fail":
            return fail(ConnectionError("storage is down"))
        if self.mode == "raise":
            raise ConnectionError("storage is down, and says so at once")
        if self.mode == "reject":
            return fail(ValueError("cannot store that"))
        if self.mode == "manual":
            d = Deferred()
            self.pending.append((d, value))
            return d
        if self.mode == "hang":
            return Deferred()
        return succeed(value)

    def storage(self, session):
        self.calls.append(("storage", session.uid))
        if self.mode == "work":
            self.records[session.uid] = dict(session.settings)
        return self._answer()

    def delete(self, session):
        self.calls.append(("delete", session.uid))
        if self.mode == "work":
            self.records.pop(session.uid, None)
        return self._answer()

    def query(self, uid):
        self.calls.append(("query", uid))
        return self._answer(self.records.get(uid))

    def heartbeat(self, session):
        self.calls.append(("heartbeat", session.uid))
        return self._answer()


FLAKY = Flaky()


def make_cluster(**options):
    config = attrs.evolve(
        cluster_config(frontend("connector-1", "connector"), frontend("connector-2", "connector"),
                       backend("area-1", "area")),
        **options,
    )
    cluster = MemoryCluster(config, [handler(Game, "connector"), storage_handler(FLAKY, "flaky")])
    cluster.start()
    return cluster


class Base(SynchronousTestCase):
    options: dict = {}

    def setUp(self):
        self.cluster = make_cluster(**self.options)
        self.addCleanup(self.cluster.stop)

    def request(self, client, route, msg=None):
        d = client.request(route, msg or {})
        self.cluster.flush()
        return self.successResultOf(d)


class MemoryStorageTests(Base):
    """
    The default memory storage: settings come back on another connector
    within the record's life, and are gone after it or after a logout.
    """

    options = {"storage_ttl": 60.0, "storage_heartbeat": 20.0}

    def test_interface(self):
        """
        L{MemoryStorage} provides L{IStorageHandler}.
        """
        verifyObject(IStorageHandler, MemoryStorage(1, self.cluster.reactor))

    def test_reconnect(self):
        """
        A user who drops and logs in again on another connector gets the
        settings back, merged under the new session's own keys.
        """
        first = self.cluster.client("connector-1")
        self.request(first, "connector.game.login", {"uid": "ann", "set": {"level": 4, "room": "r1"}})
        first.close()
        self.cluster.flush()
        second = self.cluster.client("connector-2")
        answer = self.request(second, "connector.game.login", {"uid": "ann", "set": {"room": "r2"}})
        self.assertEqual(answer, {"level": 4, "room": "r2"})

    def test_expires(self):
        """
        A record no heartbeat keeps alive is gone after its TTL.
        """
        first = self.cluster.client("connector-1")
        self.request(first, "connector.game.login", {"uid": "bob", "set": {"gold": 9}})
        first.close()
        self.cluster.flush()
        self.cluster.reactor.advance(61)
        second = self.cluster.client("connector-2")
        self.assertEqual(self.request(second, "connector.game.login", {"uid": "bob"}), {})

    def test_heartbeatKeepsAlive(self):
        """
        While the user stays connected, heartbeats keep the record past its TTL.
        """
        client = self.cluster.client("connector-1")
        self.request(client, "connector.game.login", {"uid": "cat", "set": {"gold": 1}})
        for _ in range(5):
            self.cluster.reactor.advance(20)
            self.cluster.flush()
        storage = self.cluster.apps["connector-1"].sessions.keeper.handler
        self.assertEqual(self.successResultOf(storage.query("cat")), {"gold": 1})

    def test_logoutDeletes(self):
        """
        An explicit logout (unbind) deletes the record.
        """
        client = self.cluster.client("connector-1")
        self.request(client, "connector.game.login", {"uid": "dan", "set": {"gold": 2}})
        self.request(client, "connector.game.logout")
        other = self.cluster.client("connector-2")
        self.assertEqual(self.request(other, "connector.game.login", {"uid": "dan"}), {})
        keeper = self.cluster.apps["connector-1"].sessions.keeper
        self.assertEqual(keeper.metrics["storage_deletes"], 1)

    def test_coalesced(self):
        """
        Several changes in one turn are stored once.
        """
        client = self.cluster.client("connector-1")
        keeper = self.cluster.apps["connector-1"].sessions.keeper
        self.request(client, "connector.game.login", {"uid": "eve"})
        before = keeper.metrics["storage_writes"]
        self.request(client, "connector.game.login", {"uid": "eve", "set": {"a": 1, "b": 2, "c": 3}})
        self.assertEqual(keeper.metrics["storage_writes"] - before, 1)


class FailingStorageTests(Base):
    """
    A storage that fails or hangs never holds up players, and loses nothing
    once it is back.
    """

    options = {"storage": "flaky", "storage_timeout": 1.0}

    def setUp(self):
        FLAKY.__init__()
        super().setUp()

    def test_pluginChosen(self):
        """
        C{storage = flaky} picks the game's storage plugin of that name.
        """
        self.assertIs(self.cluster.apps["connector-1"].sessions.keeper.handler, FLAKY)

    def test_failing(self):
        """
        With the storage failing, login still answers at once from memory,
        the failure is counted, and later calls do not wait for the storage.
        When it is back, the stored settings are read and merged first, then
        the last settings written: nothing stored or committed is lost.
        """
        FLAKY.records["ann"] = {"bag": 3}
        FLAKY.mode = "fail"
        client = self.cluster.client("connector-1")
        answer = self.request(client, "connector.game.login", {"uid": "ann", "set": {"gold": 5}})
        self.assertEqual(answer, {"gold": 5})
        keeper = self.cluster.apps["connector-1"].sessions.keeper
        self.assertEqual((keeper.metrics["storage_errors"], keeper.healthy), (1, False))
        self.request(client, "connector.game.login", {"uid": "ann", "set": {"gold": 6}})
        self.assertEqual(FLAKY.calls, [("query", "ann")])
        FLAKY.mode = "work"
        self.cluster.advance(5.5)
        self.assertEqual(FLAKY.calls, [("query", "ann"), ("query", "ann"), ("storage", "ann")])
        self.assertEqual(FLAKY.records, {"ann": {"gold": 6, "bag": 3}})
        self.assertEqual(self.request(client, "connector.game.settings"), {"gold": 6, "bag": 3})
        self.assertTrue(keeper.healthy)

    def test_hanging(self):
        """
        With the storage hanging, a login waits at most the storage timeout,
        then answers; the next one does not wait at all.
        """
        FLAKY.mode = "hang"
        client = self.cluster.client("connector-1")
        d = client.request("connector.game.login", {"uid": "bob", "set": {"gold": 1}})
        self.cluster.flush()
        self.assertNoResult(d)
        self.cluster.advance(1.1)
        self.assertEqual(self.successResultOf(d), {"gold": 1})
        other = self.cluster.client("connector-1")
        self.assertEqual(self.request(other, "connector.game.login", {"uid": "eve"}), {})
        self.assertEqual(self.request(client, "connector.game.settings"), {"gold": 1})

    def test_queryMerges(self):
        """
        On bind the stored settings are merged under the live session's keys.
        """
        FLAKY.records["cat"] = {"gold": 7, "room": "old"}
        client = self.cluster.client("connector-2")
        answer = self.request(client, "connector.game.login", {"uid": "cat", "set": {"room": "new"}})
        self.assertEqual(answer, {"gold": 7, "room": "new"})
        self.assertEqual(FLAKY.records["cat"], {"gold": 7, "room": "new"})
        self.assertEqual(FLAKY.calls[0], ("query", "cat"))

    def test_probe(self):
        """
        A failed heartbeat marks the storage down even when nothing is owed;
        a retry probes it, and heartbeats resume once it answers.
        """
        client = self.cluster.client("connector-1")
        self.request(client, "connector.game.login", {"uid": "dan"})
        keeper = self.cluster.apps["connector-1"].sessions.keeper
        FLAKY.mode = "fail"
        self.cluster.reactor.advance(60)
        self.cluster.flush()
        self.assertFalse(keeper.healthy)
        FLAKY.mode = "work"
        self.cluster.advance(5.5)
        self.assertTrue(keeper.healthy)
        self.assertEqual(FLAKY.calls[-1], ("heartbeat", "dan"))

    def test_deleteOwed(self):
        """
        A logout while the storage is down deletes the record once it is
        back, and a login on that frontend meanwhile does not bring the old
        settings back.
        """
        client = self.cluster.client("connector-1")
        self.request(client, "connector.game.login", {"uid": "fay", "set": {"gold": 1}})
        FLAKY.mode = "fail"
        self.request(client, "connector.game.logout")
        self.assertEqual(FLAKY.records, {"fay": {"gold": 1}})
        FLAKY.mode = "work"
        again = self.cluster.client("connector-1")
        self.assertEqual(self.request(again, "connector.game.login", {"uid": "fay"}), {})
        self.cluster.advance(5.5)
        self.assertEqual(FLAKY.records, {"fay": {}})
        self.assertEqual(self.request(again, "connector.game.settings"), {})

    def test_raising(self):
        """
        A storage plugin that raises instead of failing its Deferred is
        counted as down; the request does not hang.
        """
        FLAKY.mode = "raise"
        client = self.cluster.client("connector-1")
        self.assertEqual(self.request(client, "connector.game.login", {"uid": "gus", "set": {"a": 1}}), {"a": 1})
        keeper = self.cluster.apps["connector-1"].sessions.keeper
        self.assertEqual((keeper.healthy, keeper.metrics["storage_errors"]), (False, 1))

    def test_rejected(self):
        """
        A value the storage refuses is counted and dropped, not retried, and
        does not make the storage count as down.
        """
        client = self.cluster.client("connector-1")
        self.request(client, "connector.game.login", {"uid": "hal"})
        FLAKY.mode = "reject"
        self.request(client, "connector.game.login", {"uid": "hal", "set": {"x": 1}})
        keeper = self.cluster.apps["connector-1"].sessions.keeper
        self.assertEqual((keeper.healthy, keeper.metrics["storage_rejected"]), (True, 1))
        calls = len(FLAKY.calls)
        self.cluster.advance(5.5)
        self.assertEqual(len(FLAKY.calls), calls)

    def test_changeDuringQuery(self):
        """
        A change made while the bind's query is out is not written before
        the stored settings are merged: the record is never partial.
        """
        FLAKY.records["ann"] = {"gold": 7}
        FLAKY.mode = "manual"
        client = self.cluster.client("connector-1")
        login = client.request("connector.game.login", {"uid": "ann"})
        self.cluster.flush()
        self.assertEqual(self.request(client, "connector.game.put", {"x": 1}), {"x": 1})
        self.assertEqual(FLAKY.calls, [("query", "ann")])
        FLAKY.mode = "work"
        query, stored = FLAKY.pending.pop()
        query.callback(stored)
        self.cluster.flush()
        self.assertEqual(self.successResultOf(login), {"gold": 7, "x": 1})
        self.assertEqual(FLAKY.records, {"ann": {"gold": 7, "x": 1}})

    def test_refusedQuery(self):
        """
        A refused query counts as no record: the session is written, and
        nothing is retried.
        """
        keeper = self.cluster.apps["connector-1"].sessions.keeper
        FLAKY.mode = "reject"
        client = self.cluster.client("connector-1")
        self.request(client, "connector.game.login", {"uid": "ivy", "set": {"a": 1}})
        self.assertTrue(keeper.healthy)
        calls = len(FLAKY.calls)
        FLAKY.mode = "work"
        self.cluster.advance(5.5)
        self.assertEqual(len(FLAKY.calls), calls)
        self.request(client, "connector.game.put", {"b": 2})
        self.assertEqual(FLAKY.records, {"ivy": {"a": 1, "b": 2}})

    def test_closedWhileOwed(self):
        """
        A session that closes while its query and write are owed is still
        written once the storage answers.
        """
        FLAKY.mode = "fail"
        client = self.cluster.client("connector-1")
        self.request(client, "connector.game.login", {"uid": "jo", "set": {"gold": 3}})
        client.close()
        self.cluster.flush()
        FLAKY.mode = "work"
        self.cluster.advance(5.5)
        self.assertEqual(FLAKY.records, {"jo": {"gold": 3}})

    def test_stopPaysDebts(self):
        """
        Stopping the frontend writes what is owed, if the storage answers.
        """
        FLAKY.mode = "fail"
        client = self.cluster.client("connector-1")
        self.request(client, "connector.game.login", {"uid": "kim", "set": {"gold": 4}})
        FLAKY.mode = "work"
        self.cluster.stop("connector-1")
        self.assertEqual(FLAKY.records, {"kim": {"gold": 4}})

    def test_unknownStorage(self):
        """
        A storage name that is neither built in nor a plugin is an error naming it.
        """
        error = self.assertRaises(ValueError, make_cluster, storage="nowhere")
        self.assertIn("nowhere", str(error))


class ChooseStorageTests(SynchronousTestCase):
    """
    L{choose_storage}, which the Application asks for its frontends' storage.
    """

    def test_choices(self):
        """
        C{memory} is the process's shared memory storage, a plugin's name its
        object; a plugin that is not an L{IStorageHandler} is a TypeError
        naming it, an unknown name a ValueError.
        """
        config = cluster_config(frontend("connector-1", "connector"))
        self.assertIsInstance(choose_storage(config, [], None, Clock()), MemoryStorage)
        plugins = [storage_handler(FLAKY, "flaky"), storage_handler(object(), "broken")]
        self.assertIs(choose_storage(attrs.evolve(config, storage="flaky"), plugins, None, Clock()), FLAKY)
        error = self.assertRaises(TypeError, choose_storage, attrs.evolve(config, storage="broken"), plugins, None,
                                  Clock())
        self.assertIn("storage 'broken'", str(error))
        self.assertRaises(ValueError, choose_storage, attrs.evolve(config, storage="nowhere"), plugins, None, Clock())
