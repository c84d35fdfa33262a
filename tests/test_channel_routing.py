"""
Channels that follow routing while servers see the cluster differently
(L{gamenet.channel_routing}): a copy dropped after members changed through
it tells the server the channel routes to, which rebuilds its own copy. The
chat example's rooms in a L{MemoryCluster} whose node links are cut one way
(L{MemoryCluster.cut}), as when one server's link is still retrying.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from gamenet.channel_routing import FORGET_ROUTE

from .test_chat import CONNECTORS, GARDEN, LOBBY, added, chat
from .test_rooms import RoomsMixin


class SplitViewTests(RoomsMixin, SynchronousTestCase):
    """
    A room served by both chat servers for a moment: one connector and the
    other chat server cannot reach the room's own chat server, the rest can.
    """

    def split(self, name: str) -> str:
        """
        Cut the links of C{name}'s connector and of the other chat server
        to the room's chat server; that connector's id.
        """
        connector = self.query_entry(name)
        for server_id in (connector, self.other.server_id):
            self.cluster.cut(server_id, self.home.server_id)
        return connector

    def mend(self, connector: str) -> None:
        for server_id in (connector, self.other.server_id):
            self.cluster.mend(server_id, self.home.server_id)

    def test_joinedThroughOtherCopy(self):
        """
        A user who enters the lobby through the other chat server's copy,
        while the two see the cluster differently, is in the lobby on its own
        chat server once the other drops its copy: it hears the others, and
        they hear it.
        """
        connector = self.split("frank")
        home_copy = self.home.channels.get_channel(LOBBY)
        users = self.enter("frank@lobby")["users"]
        self.assertEqual((sorted(users[:-1]), users[-1]), (["alice", "bob", "carol"], "frank"))
        self.assertIn(LOBBY, self.other.channels.channels)
        self.assertNotIn("frank*lobby", home_copy.get_members())
        self.mend(connector)
        self.assertEqual(self.other.channels.channels, [GARDEN])
        self.assertTrue(home_copy.destroyed)
        self.assertEqual(self.say("alice@lobby", "hello frank"), {})
        self.assertEqual(self.say("frank@lobby", "hello all"), {})
        for user in ("alice@lobby", "bob@lobby", "carol@lobby"):
            self.assertEqual(self.since(user), [added("frank"), chat("hello frank", "alice"),
                                                chat("hello all", "frank")], user)
        self.assertEqual(self.pushes["frank@lobby"], [chat("hello frank", "alice"), chat("hello all", "frank")])
        self.assertEqual(sorted(self.home.channels.get_channel(LOBBY).get_members()),
                         ["alice*lobby", "bob*lobby", "carol*lobby", "frank*lobby"])

    def test_leftThroughOtherCopy(self):
        """
        A user who leaves the lobby through the other chat server's copy is
        no longer in it on its own chat server once the other drops its
        copy: a push there reaches every member, none is reported missing.
        """
        user = "alice@lobby"
        connector = self.split("alice")
        self.quit(user)
        self.mend(connector)
        stayed = sorted({"alice@lobby", "bob@lobby", "carol@lobby"} - {user})
        d = self.home.channels.rebuild(LOBBY, "rid", LOBBY)
        self.cluster.flush()
        channel = self.successResultOf(d)
        self.assertEqual(sorted(channel.get_members()), [name.replace("@", "*") for name in stayed])
        missing = channel.push_message("onChat", {"msg": "still two", "from": "system", "target": "*"})
        self.cluster.flush()
        self.assertEqual(self.successResultOf(missing), [])

    def test_unchangedCopyNotTold(self):
        """
        A copy through which only messages went, no joins or leaves, is
        dropped without telling: the room's own chat server keeps its copy,
        and is not asked to rebuild it.
        """
        sender = "alice@lobby"
        connector = self.split("alice")
        home_copy = self.home.channels.get_channel(LOBBY)
        self.assertEqual(self.say(sender, "through the other"), {})
        self.assertIn(LOBBY, self.other.channels.channels)
        asked = self.count_finds()
        self.mend(connector)
        self.assertEqual(self.other.channels.channels, [GARDEN])
        self.assertIs(self.home.channels.get_channel(LOBBY), home_copy)
        self.assertFalse(home_copy.destroyed)
        self.assertEqual(self.say(sender, "home again"), {})
        self.assertEqual(asked, {})


class ForgetTests(RoomsMixin, SynchronousTestCase):
    """
    C{ChannelService.forget}, the remote C{sys.channels.forget}.
    """

    def forget(self, app, name):
        d = self.other.node.call_remote(app.server_id, FORGET_ROUTE, [name, self.other.server_id])
        self.cluster.flush()
        return self.successResultOf(d)

    def test_held(self):
        """
        A copy held is destroyed; the next call rebuilds it from the live
        sessions.
        """
        copy = self.home.channels.get_channel(LOBBY)
        self.assertTrue(self.forget(self.home, LOBBY))
        self.assertTrue(copy.destroyed)
        self.assertIsNone(self.home.channels.get_channel(LOBBY))
        self.assertEqual(self.say("bob@lobby", "rebuilt"), {})
        self.assertEqual(len(self.home.channels.get_channel(LOBBY).get_members()), 3)

    def test_beingRebuilt(self):
        """
        A copy being rebuilt serves the calls waiting for it, then is
        destroyed: its query may have run before the changes.
        """
        self.home.channels.destroy_channel(LOBBY)
        served = self.home.channels.rebuild(LOBBY, "rid", LOBBY).addCallback(
            lambda channel: (channel, channel.destroyed, channel.user_count))
        self.assertTrue(self.home.channels.forget(LOBBY, self.other.server_id))
        self.cluster.flush()
        channel, destroyed, count = self.successResultOf(served)
        self.assertEqual((destroyed, count), (False, 3))
        self.assertTrue(channel.destroyed)
        self.assertIsNone(self.home.channels.get_channel(LOBBY))
        d = self.home.channels.rebuild(LOBBY, "rid", LOBBY)
        self.cluster.flush()
        self.assertFalse(self.successResultOf(d).destroyed)

    def test_nothingHeld(self):
        """
        Nothing held, nothing to do.
        """
        self.home.channels.destroy_channel(LOBBY)
        self.assertFalse(self.forget(self.home, LOBBY))

    def test_notFollowing(self):
        """
        A server whose channels do not follow routing keeps them.
        """
        connector = self.cluster.apps[CONNECTORS[0]]
        channel = connector.channels.create_channel("mine")
        self.assertFalse(self.forget(connector, "mine"))
        self.assertIs(connector.channels.get_channel("mine"), channel)
