"""
The tutorial's counter game (doc/tutorial.md, examples/tutorial/) works as the
tutorial says.
"""

from __future__ import annotations

import os

import attrs
import treq
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from examples.tutorial.plugins.counter import counter
from gamenet.client import Client
from gamenet.config import HttpOptions, load
from gamenet.plugins import discover
from gamenet.testing import client_port, cluster_config, free_ports, frontend, start_server

CLUSTER_FILE = os.path.join(os.path.dirname(__file__), "..", "examples", "tutorial", "cluster.ini")


class CounterTests(TestCase):
    """
    The counter handler on a real loopback port.
    """

    async def setUp(self):
        cluster = cluster_config(
            frontend("connector-1", "connector", single_session=True),
            extra_routes=["onCount"],
        )
        self.app = await start_server(cluster, "connector-1", [counter])
        self.addCleanup(self.app.stopService)

    async def connect(self):
        client = await Client.connect(reactor, "127.0.0.1", client_port(self.app))
        self.addCleanup(client.close)
        return client

    async def test_play(self):
        """
        Log in, add twice with notifies, get a push after each, read the total.
        """
        client = await self.connect()
        pushes = []
        client.on("onCount", pushes.append)
        self.assertEqual(
            await client.request("connector.counterHandler.login", {"name": "bob"}),
            {"uid": "bob", "count": 0},
        )
        client.notify("connector.counterHandler.add", {"n": 2})
        client.notify("connector.counterHandler.add", {"n": 3})
        self.assertEqual(await client.request("connector.counterHandler.count"), {"count": 5})
        self.assertEqual(pushes, [{"count": 2}, {"count": 5}])
        self.assertEqual(self.app.sessions.get_by_uid("bob")[0].uid, "bob")

    async def test_loginRequired(self):
        """
        The filter refuses every route but login until the session is bound.
        """
        client = await self.connect()
        self.assertEqual(
            await client.request("connector.counterHandler.count"),
            {"code": 403, "message": "log in first"},
        )

    async def test_badName(self):
        """
        A login without a name is answered 400.
        """
        client = await self.connect()
        self.assertEqual(
            await client.request("connector.counterHandler.login", {}),
            {"code": 400, "message": "name is required"},
        )

    async def test_replaced(self):
        """
        With single_session, a second login of the same name kicks the first
        connection, and the total is kept.
        """
        first = await self.connect()
        await first.request("connector.counterHandler.login", {"name": "bob"})
        first.notify("connector.counterHandler.add", {"n": 4})
        self.assertEqual(await first.request("connector.counterHandler.count"), {"count": 4})
        second = await self.connect()
        self.assertEqual(
            await second.request("connector.counterHandler.login", {"name": "bob"}),
            {"uid": "bob", "count": 4},
        )
        self.assertEqual(await first.closed, "replaced")


class HttpTests(TestCase):
    """
    The totals over HTTP, beside the game.
    """

    async def setUp(self):
        (self.http_port,) = free_ports(1)
        server = attrs.evolve(frontend("connector-1", "connector"), http=HttpOptions(port=self.http_port))
        self.app = await start_server(cluster_config(server, extra_routes=["onCount"]), "connector-1", [counter])
        self.addCleanup(self.app.stopService)

    async def get(self, path):
        response = await treq.get(f"http://127.0.0.1:{self.http_port}{path}", persistent=False, timeout=30)
        return response.code, await response.json()

    async def test_totals(self):
        """
        C{GET /totals} lists the best totals and who is online;
        C{GET /totals/<name>} one total, 404 for a stranger.
        """
        for name, n in (("ann", 3), ("bob", 5)):
            client = await Client.connect(reactor, "127.0.0.1", client_port(self.app))
            self.addCleanup(client.close)
            await client.request("connector.counterHandler.login", {"name": name})
            client.notify("connector.counterHandler.add", {"n": n})
            await client.request("connector.counterHandler.count")
        self.assertEqual(await self.get("/totals?limit=1"), (200, {"top": [{"name": "bob", "count": 5}], "online": 2}))
        self.assertEqual(await self.get("/totals/ann"), (200, {"name": "ann", "count": 3}))
        self.assertEqual(await self.get("/totals/cid"), (404, {"code": 404, "message": "no player cid"}))
        self.assertEqual((await self.get("/totals?limit=x"))[0], 400)


class ClusterFileTests(TestCase):
    """
    The tutorial's cluster file loads and its plugin package is found.
    """

    def test_clusterFile(self):
        cluster = load(CLUSTER_FILE)
        self.assertEqual(cluster.plugins, ("examples.tutorial.plugins",))
        self.assertEqual([s.id for s in cluster.servers], ["connector-1"])
        found = discover(cluster.plugins)
        self.assertIn(
            ["add", "count", "login"],
            [r.method_names() for r in found if r.server_type == "connector" and r.name == "counterHandler"],
        )
