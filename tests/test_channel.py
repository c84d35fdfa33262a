"""
Channels (L{gamenet.channel}): members, and pushes to many users spread over
several frontends, with L{MemoryCluster}.

A push to a channel costs one C{push_uids} sys call per frontend holding any
member; that frontend encodes the push once and writes the same bytes to each
member. Members that cannot be reached are returned as "missing", and the
others still get the push.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from gamenet import Handler, handler
from gamenet.channel import Channel
from gamenet.cluster import wire
from gamenet.testing import MemoryCluster, backend, cluster_config, frontend

FRONTENDS = ("connector-1", "connector-2")


class Entry(Handler):
    async def login(self, msg, session):
        await session.bind(msg["uid"])
        return {"server": self.app.server_id}


REGISTRATIONS = [handler(Entry, "connector")]


def make_cluster(**options):
    """
    Two connectors and one backend, C{room-1}, whose L{ChannelService} the tests use.

    @param options: L{FrontendOptions} fields for both connectors.
    """
    return MemoryCluster(
        cluster_config(
            frontend("connector-1", "connector", **options),
            frontend("connector-2", "connector", **options),
            backend("room-1", "room"),
            extra_routes=["onNote", "onNum", "onAll"],
        ),
        REGISTRATIONS,
    )


class ClusterTestCase(SynchronousTestCase):
    """
    A started L{make_cluster}, with helpers to log users in and watch what
    crosses the node links.
    """

    options: dict = {}

    def setUp(self):
        self.cluster = make_cluster(**self.options)
        self.cluster.start()
        self.addCleanup(self.cluster.stop)
        self.channels = self.cluster.apps["room-1"].channels
        self.pushes = {}
        self.clients = {}

    def login(self, server_id, uid):
        """
        Connect a client to C{server_id} and bind it to C{uid}; every push it
        gets is recorded as C{(route, body)} in C{self.pushes[uid]}.
        """
        client = self.cluster.client(server_id)
        self.pushes[uid] = []
        client.on("*", self.pushes[uid].append)
        d = client.request("connector.entry.login", {"uid": uid})
        self.cluster.flush()
        self.assertEqual(self.successResultOf(d), {"server": server_id})
        self.clients[uid] = client
        return client

    def guest(self, server_id, name):
        """
        Connect a client that stays unbound; its pushes go to C{self.pushes[name]}.
        """
        client = self.cluster.client(server_id)
        self.pushes[name] = []
        client.on("*", self.pushes[name].append)
        self.clients[name] = client
        return client

    def result(self, d):
        """
        Flush the cluster and return what C{d} fired with.
        """
        self.cluster.flush()
        return self.successResultOf(d)

    def watch_sys(self):
        """
        Record every sys record reaching each frontend over a node link, as
        C{(peer_id, name, args)}, by wrapping the avatars' C{perspective_calls}
        and unpacking the batches; also count the batches.

        @return: C{(records, batches)}, dicts by frontend id.
        """
        records = {server_id: [] for server_id in FRONTENDS}
        batches = {server_id: 0 for server_id in FRONTENDS}
        for server_id in FRONTENDS:
            for avatar in self.cluster.apps[server_id].node.node_server.peers:
                original = avatar.perspective_calls

                def calls(batch, original=original, server_id=server_id, peer_id=avatar.peer_id):
                    sys = [wire.decode_call(payload) for _, kind, payload in wire.unpack(batch) if kind == wire.SYS]
                    if sys:
                        batches[server_id] += 1
                    records[server_id].extend((peer_id, name, args) for name, args in sys)
                    return original(batch)

                avatar.perspective_calls = calls
        return records, batches

    def watch_encoding(self):
        """
        Count the pushes each frontend encodes, by wrapping C{Frontend.push_package}.

        @return: a dict of lists of C{(route, bytes)} by frontend id.
        """
        encoded = {server_id: [] for server_id in FRONTENDS}
        for server_id in FRONTENDS:
            front = self.cluster.apps[server_id].frontend
            original = front.push_package

            def push_package(route, msg, original=original, seen=encoded[server_id]):
                data = original(route, msg)
                seen.append((route, data))
                return data

            front.push_package = push_package
        return encoded

    def watch_writes(self, uid, server_id):
        """
        Record the bytes written to C{uid}'s connection on C{server_id}.
        """
        (session,) = self.cluster.apps[server_id].sessions.get_by_uid(uid)
        link = session._link.link
        written = []
        original = link.send

        def send(data):
            written.append(data)
            return original(data)

        link.send = send
        return written


class ChannelTests(ClusterTestCase):
    """
    A L{Channel} keeps its members and who holds each one's session.
    """

    def test_addAndMembers(self):
        """
        Members are listed in the order they joined, each with its frontend;
        C{user_count} counts them; an unknown uid is no member.
        """
        channel = self.channels.create_channel("r1")
        self.assertIsInstance(channel, Channel)
        self.assertEqual((channel.name, channel.get_members(), channel.user_count), ("r1", [], 0))
        self.assertTrue(channel.add("carol", "connector-2"))
        self.assertTrue(channel.add("alice", "connector-1"))
        self.assertTrue(channel.add("bob", "connector-2"))
        self.assertEqual(channel.get_members(), ["carol", "alice", "bob"])
        self.assertEqual(channel.user_count, 3)
        self.assertEqual(channel.get_member("alice"), ("alice", "connector-1"))
        self.assertEqual(channel.get_member("bob"), ("bob", "connector-2"))
        self.assertIsNone(channel.get_member("zed"))
        self.assertIn("3 members", repr(channel))

    def test_leave(self):
        """
        C{leave} removes a member and says so; given a frontend id that is not
        the member's, it does nothing; a non-member's leave answers C{False}.
        """
        channel = self.channels.create_channel("r1")
        channel.add("alice", "connector-1")
        channel.add("bob", "connector-2")
        self.assertFalse(channel.leave("alice", "connector-2"))
        self.assertEqual(channel.get_members(), ["alice", "bob"])
        self.assertTrue(channel.leave("alice", "connector-1"))
        self.assertEqual(channel.get_members(), ["bob"])
        self.assertFalse(channel.leave("alice"))
        self.assertTrue(channel.leave("bob"))
        self.assertEqual((channel.get_members(), channel.user_count), ([], 0))

    def test_destroy(self):
        """
        A destroyed channel is empty, forgotten by its service, and refuses
        C{add}; a channel made later under the same name is a new, empty one.
        """
        channel = self.channels.create_channel("r1")
        channel.add("alice", "connector-1")
        channel.destroy()
        self.assertTrue(channel.destroyed)
        self.assertEqual(channel.get_members(), [])
        self.assertFalse(channel.add("bob", "connector-1"))
        self.assertEqual(channel.get_members(), [])
        self.assertIsNone(self.channels.get_channel("r1"))
        self.assertEqual(self.channels.channels, [])
        again = self.channels.create_channel("r1")
        self.assertIsNot(again, channel)
        self.assertEqual((again.get_members(), again.destroyed), ([], False))


class ChannelServiceTests(ClusterTestCase):
    """
    A server's L{ChannelService} makes, finds and forgets channels.
    """

    def test_createAndGet(self):
        """
        C{create_channel} makes a channel once and then returns the same one;
        C{get_channel} finds it, answers C{None} for an unknown name, and
        makes it when asked with C{create}.
        """
        first = self.channels.create_channel("r1")
        self.assertIs(self.channels.create_channel("r1"), first)
        self.assertIs(self.channels.get_channel("r1"), first)
        self.assertIs(self.channels.get_channel("r1", True), first)
        self.assertIsNone(self.channels.get_channel("r2"))
        self.assertEqual(self.channels.channels, ["r1"])
        second = self.channels.get_channel("r2", create=True)
        self.assertEqual(second.name, "r2")
        self.assertIs(self.channels.get_channel("r2"), second)
        self.assertEqual(self.channels.channels, ["r1", "r2"])

    def test_destroyChannel(self):
        """
        C{destroy_channel} forgets a channel and empties it; an unknown name is ignored.
        """
        channel = self.channels.create_channel("r1")
        channel.add("alice", "connector-1")
        self.channels.create_channel("r2")
        self.channels.destroy_channel("r1")
        self.channels.destroy_channel("nothing")
        self.assertEqual(self.channels.channels, ["r2"])
        self.assertTrue(channel.destroyed)
        self.assertEqual(channel.user_count, 0)

    def test_perServer(self):
        """
        Channels belong to one server: another server's service does not see them.
        """
        self.channels.create_channel("r1")
        self.assertIsNone(self.cluster.apps["connector-1"].channels.get_channel("r1"))
        self.assertIs(self.cluster.apps["room-1"].channel_service, self.channels)


class PushTests(ClusterTestCase):
    """
    C{push_message} and C{push_message_by_uids}: every member reached once,
    one sys call and one encoding per frontend.
    """

    def setUp(self):
        super().setUp()
        self.login("connector-1", "alice")
        self.login("connector-2", "bob")
        self.login("connector-1", "carol")
        self.login("connector-2", "dave")
        self.outsider = self.login("connector-1", "eve")
        self.channel = self.channels.create_channel("r1")
        for uid, server_id in [("alice", "connector-1"), ("bob", "connector-2"), ("carol", "connector-1"),
                               ("dave", "connector-2")]:
            self.channel.add(uid, server_id)

    def test_pushMessage(self):
        """
        A push to a channel with members on two frontends reaches exactly the
        members, once each, with its route and body; nobody is missing.
        """
        missing = self.result(self.channel.push_message("onNote", {"text": "hello", "n": 1}))
        self.assertEqual(missing, [])
        for uid in ("alice", "bob", "carol", "dave"):
            self.assertEqual(self.pushes[uid], [("onNote", {"text": "hello", "n": 1})], uid)
        self.assertEqual(self.pushes["eve"], [])

    def test_routeNotInDictionary(self):
        """
        A push on a route outside the route dictionary arrives with its route spelled out.
        """
        self.assertEqual(self.result(self.channel.push_message("onSomething", [1, "two"])), [])
        self.assertEqual(self.pushes["bob"], [("onSomething", [1, "two"])])

    def test_oneCallPerFrontend(self):
        """
        A push costs one C{push_uids} sys record per frontend, naming that
        frontend's members only, and nothing reaches a frontend without members.
        """
        records, batches = self.watch_sys()
        self.assertEqual(self.result(self.channel.push_message("onNote", {"n": 2})), [])
        self.assertEqual(records["connector-1"], [("room-1", "push_uids", ["onNote", {"n": 2}, ["alice", "carol"]])])
        self.assertEqual(records["connector-2"], [("room-1", "push_uids", ["onNote", {"n": 2}, ["bob", "dave"]])])
        self.assertEqual(batches, {"connector-1": 1, "connector-2": 1})
        self.channel.leave("bob")
        self.channel.leave("dave")
        self.assertEqual(self.result(self.channel.push_message("onNote", {"n": 3})), [])
        self.assertEqual(len(records["connector-1"]), 2)
        self.assertEqual(len(records["connector-2"]), 1)
        self.assertEqual(self.pushes["bob"], [("onNote", {"n": 2})])

    def test_encodedOnce(self):
        """
        Each frontend encodes a push once and writes the very same bytes to
        each of its members.
        """
        encoded = self.watch_encoding()
        writes = {uid: self.watch_writes(uid, server_id) for uid, server_id in
                  [("alice", "connector-1"), ("carol", "connector-1"), ("bob", "connector-2"),
                   ("dave", "connector-2")]}
        self.assertEqual(self.result(self.channel.push_message("onNote", {"n": 4})), [])
        self.assertEqual([route for route, _ in encoded["connector-1"]], ["onNote"])
        self.assertEqual([route for route, _ in encoded["connector-2"]], ["onNote"])
        (data1,) = [data for _, data in encoded["connector-1"]]
        (data2,) = [data for _, data in encoded["connector-2"]]
        self.assertIs(writes["alice"][0], data1)
        self.assertIs(writes["carol"][0], data1)
        self.assertIs(writes["bob"][0], data2)
        self.assertIs(writes["dave"][0], data2)
        self.assertEqual(data1, data2)
        self.assertEqual({uid: len(w) for uid, w in writes.items()}, dict.fromkeys(writes, 1))

    def test_pushMessageByUids(self):
        """
        C{push_message_by_uids} reaches the users given as C{(uid, frontend_id)},
        channel or not; a user named with a frontend that does not hold its
        session is missing, and no-one else gets it.
        """
        d = self.channels.push_message_by_uids(
            "onNote", {"only": "some"}, [("eve", "connector-1"), ("dave", "connector-2"), ("alice", "connector-2")])
        self.assertEqual(self.result(d), ["alice"])
        self.assertEqual(self.pushes["eve"], [("onNote", {"only": "some"})])
        self.assertEqual(self.pushes["dave"], [("onNote", {"only": "some"})])
        for uid in ("alice", "bob", "carol"):
            self.assertEqual(self.pushes[uid], [], uid)
        self.assertEqual(self.result(self.channels.push_message_by_uids("onNote", {}, [])), [])

    def test_disconnectedMember(self):
        """
        A member whose client has disconnected is skipped and returned as
        missing; the other members still get the push.
        """
        self.clients["carol"].close()
        self.cluster.flush()
        self.assertEqual(self.cluster.apps["connector-1"].sessions.get_by_uid("carol"), [])
        self.assertEqual(self.result(self.channel.push_message("onNote", {"n": 5})), ["carol"])
        for uid in ("alice", "bob", "dave"):
            self.assertEqual(self.pushes[uid], [("onNote", {"n": 5})], uid)
        self.assertEqual(self.pushes["carol"], [])

    def test_frontendDown(self):
        """
        Users on a frontend that is down are missing; the members on the
        other frontend still get the push. A channel no longer holds the
        members of a frontend that is gone (see L{tests.test_recovery}).
        """
        self.cluster.kill("connector-2")
        missing = self.result(self.channels.push_message_by_uids(
            "onNote", {"n": 6}, [(uid, self.channel.get_member(uid)[1]) for uid in ("alice", "carol")]
            + [("bob", "connector-2"), ("dave", "connector-2")]))
        self.assertEqual(sorted(missing), ["bob", "dave"])
        self.assertEqual(self.result(self.channel.push_message("onNote", {"n": 7})), [])
        self.assertEqual(sorted(self.channel.get_members()), ["alice", "carol"])
        self.assertEqual(self.pushes["alice"], [("onNote", {"n": 6}), ("onNote", {"n": 7})])
        self.assertEqual(self.pushes["carol"], [("onNote", {"n": 6}), ("onNote", {"n": 7})])
        self.assertEqual((self.pushes["bob"], self.pushes["dave"]), ([], []))

    def test_order(self):
        """
        Fifty pushes made in one go arrive at each member numbered 0 to 49, in
        order, once each; they cross each node link in one batch.
        """
        records, batches = self.watch_sys()
        ds = [self.channel.push_message("onNum", {"n": n}) for n in range(50)]
        self.cluster.flush()
        self.assertEqual([self.successResultOf(d) for d in ds], [[]] * 50)
        for uid in ("alice", "bob", "carol", "dave"):
            self.assertEqual(self.pushes[uid], [("onNum", {"n": n}) for n in range(50)], uid)
        self.assertEqual({server_id: len(r) for server_id, r in records.items()},
                         {"connector-1": 50, "connector-2": 50})
        self.assertEqual(batches, {"connector-1": 1, "connector-2": 1})

    def test_orderMixed(self):
        """
        Channel pushes and pushes to single users, interleaved, keep their
        order for each user.
        """
        for n in range(10):
            self.channel.push_message("onNum", {"n": n})
            self.channels.push_message_by_uids("onNote", {"n": n}, [("bob", "connector-2")])
        self.cluster.flush()
        expected = [item for n in range(10) for item in (("onNum", {"n": n}), ("onNote", {"n": n}))]
        self.assertEqual(self.pushes["bob"], expected)
        self.assertEqual(self.pushes["dave"], [("onNum", {"n": n}) for n in range(10)])

    def test_fromFrontend(self):
        """
        A frontend's own channel reaches its local members without a node
        call, and the members on the other frontend with one.
        """
        channel = self.cluster.apps["connector-1"].channels.create_channel("local")
        channel.add("alice", "connector-1")
        channel.add("bob", "connector-2")
        records, _ = self.watch_sys()
        self.assertEqual(self.result(channel.push_message("onNote", {"from": "front"})), [])
        self.assertEqual(self.pushes["alice"], [("onNote", {"from": "front"})])
        self.assertEqual(self.pushes["bob"], [("onNote", {"from": "front"})])
        self.assertEqual(records["connector-1"], [])
        self.assertEqual(records["connector-2"], [("connector-1", "push_uids", ["onNote", {"from": "front"}, ["bob"]])])

    def test_unreachableFrontends(self):
        """
        Users named on a server that does not exist, or on a backend, are
        missing; the others still get the push.
        """
        d = self.channels.push_message_by_uids(
            "onNote", {"n": 7}, [("x", "nowhere-1"), ("y", "room-1"), ("alice", "connector-1")])
        self.assertEqual(sorted(self.result(d)), ["x", "y"])
        self.assertEqual(self.pushes["alice"], [("onNote", {"n": 7})])
        d = self.cluster.apps["connector-1"].channels.push_message_by_uids("onNote", {"n": 8}, [("y", "room-1")])
        self.assertEqual(self.result(d), ["y"])

    def test_frontendHangs(self):
        """
        While one frontend does not answer, the members on the others get the
        push at once; the hung frontend's members are reported missing when
        the call times out.
        """
        self.cluster.apps["connector-2"].node.sys._calls["push_uids"] = lambda *args: Deferred()
        d = self.channel.push_message("onNote", {"n": 9})
        self.cluster.flush()
        self.assertEqual(self.pushes["alice"], [("onNote", {"n": 9})])
        self.assertEqual(self.pushes["carol"], [("onNote", {"n": 9})])
        self.assertNoResult(d)
        self.cluster.advance(self.cluster.cluster.rpc_timeout + 1)
        self.assertEqual(sorted(self.successResultOf(d)), ["bob", "dave"])

    def test_pushMessageAfterDestroy(self):
        """
        Pushing to a destroyed channel reaches nobody and misses nobody.
        """
        self.channel.destroy()
        self.assertEqual(self.result(self.channel.push_message("onNote", {})), [])
        self.assertEqual(sum(len(p) for p in self.pushes.values()), 0)


class BroadcastTests(ClusterTestCase):
    """
    C{broadcast(frontend_type, route, msg, only_bound)} reaches the clients of
    every frontend of a type.
    """

    def setUp(self):
        super().setUp()
        self.login("connector-1", "alice")
        self.login("connector-2", "bob")
        self.guest("connector-1", "guest-1")
        self.guest("connector-2", "guest-2")

    def test_everyone(self):
        """
        Every client, bound or not, on every connector gets the broadcast;
        the count says how many.
        """
        self.assertEqual(self.result(self.channels.broadcast("connector", "onAll", {"b": 1})), 4)
        for name in ("alice", "bob", "guest-1", "guest-2"):
            self.assertEqual(self.pushes[name], [("onAll", {"b": 1})], name)

    def test_onlyBound(self):
        """
        With C{only_bound}, only clients bound to a uid get it.
        """
        self.assertEqual(self.result(self.channels.broadcast("connector", "onAll", {"b": 2}, True)), 2)
        self.assertEqual(self.pushes["alice"], [("onAll", {"b": 2})])
        self.assertEqual(self.pushes["bob"], [("onAll", {"b": 2})])
        self.assertEqual((self.pushes["guest-1"], self.pushes["guest-2"]), ([], []))

    def test_oneCallAndEncodingPerFrontend(self):
        """
        A broadcast is one sys record and one encoding per frontend.
        """
        records, _ = self.watch_sys()
        encoded = self.watch_encoding()
        self.assertEqual(self.result(self.channels.broadcast("connector", "onAll", {"b": 3})), 4)
        self.assertEqual(records["connector-1"], [("room-1", "broadcast", ["onAll", {"b": 3}, False])])
        self.assertEqual(records["connector-2"], [("room-1", "broadcast", ["onAll", {"b": 3}, False])])
        self.assertEqual({server_id: len(e) for server_id, e in encoded.items()},
                         {"connector-1": 1, "connector-2": 1})

    def test_frontendDown(self):
        """
        A frontend that is down is left out; the others still get it.
        """
        self.cluster.kill("connector-2")
        self.assertEqual(self.result(self.channels.broadcast("connector", "onAll", {"b": 4})), 2)
        self.assertEqual(self.pushes["alice"], [("onAll", {"b": 4})])
        self.assertEqual(self.pushes["guest-1"], [("onAll", {"b": 4})])

    def test_noSuchType(self):
        """
        A type with no servers reaches nobody: the count is 0.
        """
        self.assertEqual(self.result(self.channels.broadcast("nothing", "onAll", {})), 0)
        self.assertEqual(self.result(self.channels.broadcast("room", "onAll", {})), 0)
        self.assertEqual(sum(len(p) for p in self.pushes.values()), 0)


class SlowClientTests(ClusterTestCase):
    """
    A slow client cannot make a frontend's memory grow without bound: pushes
    to it go through its connection's outbound queue, limited by
    C{max_outbound_queue} (crossed over real sockets in
    L{tests.test_limits}); once dropped, it is a missing member.
    """

    options = {"max_outbound_queue": 4096}

    def test_slowMember(self):
        """
        A member whose client stops reading has pushes queued for it up to
        C{max_outbound_queue} bytes, is then dropped as a slow consumer, and
        reported missing from the push that crossed the limit on; another
        member gets every push.
        """
        self.login("connector-1", "alice")
        slow = self.login("connector-1", "bob")
        channel = self.channels.create_channel("r1")
        channel.add("alice", "connector-1")
        channel.add("bob", "connector-1")
        (session,) = self.cluster.apps["connector-1"].sessions.get_by_uid("bob")
        connection = session._link
        connection.pauseProducing()  # what the transport does when the client stops reading
        text = "x" * 1000
        size = len(self.cluster.apps["connector-1"].frontend.push_package("onNote", {"n": 0, "text": text}))
        crossing = 4096 // size + 1  # the push that takes the queue over the limit
        missing = [self.result(channel.push_message("onNote", {"n": n, "text": text})) for n in range(8)]
        # The push that crosses the limit drops the connection as it is
        # written: it and every one after it report the member missing.
        self.assertEqual(missing, [[]] * (crossing - 1) + [["bob"]] * (9 - crossing))
        self.assertEqual(self.pushes["bob"], [])
        self.assertEqual(self.cluster.apps["connector-1"].frontend.metrics["slow_consumers"], 1)
        self.assertEqual(self.successResultOf(slow.closed), "connection lost")
        self.assertEqual(self.result(channel.push_message("onNote", {"n": 8})), ["bob"])
        self.assertEqual([body["n"] for _, body in self.pushes["alice"]], list(range(9)))

    def test_closedSession(self):
        """
        A push to a member whose session was closed by the server is skipped
        and reports it missing.
        """
        self.login("connector-2", "bob")
        self.login("connector-2", "dave")
        (session,) = self.cluster.apps["connector-2"].sessions.get_by_uid("bob")
        self.result(session.close("bye"))
        self.assertTrue(session.closed)
        d = self.channels.push_message_by_uids("onNote", {}, [("bob", "connector-2"), ("dave", "connector-2")])
        self.assertEqual(self.result(d), ["bob"])
        self.assertEqual(self.pushes["dave"], [("onNote", {})])
        self.assertEqual(self.pushes["bob"], [])
