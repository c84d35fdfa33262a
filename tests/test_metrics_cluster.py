"""
C{/metrics} of a real cluster of processes: C{twistd -n gamenet --config
FILE} (the master) runs the chat example's connector and chat server as
child processes, each serving its metrics on its own port, and the test
scrapes them over HTTP while a client sends known numbers of requests, or a
flood of unknown routes.

The processes run the installed gamenet (see L{tests._processes.MasterProcess});
only the chat example is found through the cluster file's C{plugin_path}. Every wait is bounded; every process
started here is stopped at cleanup.
"""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families
import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from gamenet.client import Client
from gamenet.protocol import package
from gamenet.testing import free_ports

from ._processes import CHAT_EXAMPLE, MasterProcess, cluster_section, eventually, is_error, server_section

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
REQUEST_TIMEOUT = 10.0

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


FLOOD = 100_000


def cluster_text(ports: dict[str, int]) -> str:
    """
    A cluster of one connector and one chat server of the chat example,
    each with its own metrics port; a client may send its whole L{FLOOD}
    within a second.
    """
    return (cluster_section("metrics", ports["master"], **CHAT_EXAMPLE, rpc_timeout=5)
            + f"\n[frontend]\nmessages_per_second = {2 * FLOOD}\n"
            + server_section("connector-1", ports) + server_section("chat-1", ports))


def scrape_text(text: str) -> Samples:
    """
    The samples of an exposition, by name and sorted labels.
    """
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


class MetricsClusterTests(TestCase):
    """
    The counters of a connector and of a chat server, scraped from their
    C{/metrics}, move by the known numbers of what a client did.
    """

    timeout = 120

    async def setUp(self) -> None:
        names = ["master", "connector-1.node", "chat-1.node", "connector-1.client", "connector-1.metrics",
                 "chat-1.metrics"]
        self.ports = dict(zip(names, free_ports(len(names))))
        self.metrics = {server: self.ports[f"{server}.metrics"] for server in ("connector-1", "chat-1")}
        self.master = MasterProcess(self)
        self.master.write(cluster_text(self.ports))
        self.master.start(STOP_TIMEOUT)
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.clients: list[Client] = []
        self.addCleanup(self.close_clients)
        await self.eventually(self.serving, START_TIMEOUT, "the connector to reach the chat server")

    async def eventually(self, attempt: Any, timeout: float, what: str) -> Any:
        return await eventually(attempt, timeout, what, self.master.fail, 0.1)

    # Clients and scrapes

    async def connect(self) -> Client:
        d = Client.connect(reactor, "127.0.0.1", self.ports["connector-1.client"], transport="tcp", timeout=5)
        client = await d.addTimeout(REQUEST_TIMEOUT, reactor)
        self.clients.append(client)
        return client

    async def request(self, client: Client, route: str, msg: Any = None) -> Any:
        return await client.request(route, msg).addTimeout(REQUEST_TIMEOUT, reactor)

    async def close_all(self) -> None:
        for client in self.clients:
            if not client.closed.called:
                try:
                    await client.close().addTimeout(5, reactor)
                except Exception:
                    pass

    def close_clients(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self.close_all())

    async def serving(self) -> bool:
        """
        Whether both metrics ports answer and a client of the connector gets
        through to the chat server (an unbound session's send is refused there).
        """
        for server in self.metrics:
            await self.scrape(server)
        client = await self.connect()
        try:
            answer = await self.request(client, "chat.chatHandler.send", {"content": "x", "target": "*"})
        finally:
            await client.close().addTimeout(5, reactor)
        return is_error(answer) and answer["message"] == "not in a room"

    async def scrape(self, server: str) -> Samples:
        response = await treq.get(f"http://127.0.0.1:{self.metrics[server]}/metrics", pool=self.pool,
                                  timeout=REQUEST_TIMEOUT)
        self.assertEqual(response.code, 200)
        return scrape_text(await response.text())

    def value(self, samples: Samples, server: str, name: str, **labels: str) -> float:
        server_type = server.split("-")[0]
        key = (name, tuple(sorted({"server_id": server, "server_type": server_type, **labels}.items())))
        return samples.get(key, 0.0)

    async def test_countersMove(self) -> None:
        """
        Known numbers of local requests, forwarded requests, channel pushes
        and kicks move the connector's and the chat server's counters by
        exactly those numbers.
        """
        before = {server: await self.scrape(server) for server in self.metrics}
        alice, bob = await self.connect(), await self.connect()
        heard: list[Any] = []
        bob.on("onChat", heard.append)
        for name, client in (("alice", alice), ("bob", bob)):
            answer = await self.request(client, "connector.entryHandler.enter", {"username": name, "rid": "r1"})
            self.assertFalse(is_error(answer), answer)
        for n in range(5):
            self.assertEqual(await self.request(alice, "connector.echoHandler.echo", {"n": n}), {"n": n})
        for n in range(4):
            answer = await self.request(alice, "chat.chatHandler.send", {"content": f"hi {n}", "target": "*"})
            self.assertFalse(is_error(answer), answer)
        await self.eventually(self.async_value(lambda: len(heard) == 4), REQUEST_TIMEOUT, "bob to hear 4 messages")
        for _ in range(3):
            bad = await self.connect()
            bad.send_raw(package.encode(package.HANDSHAKE, b"{}"))
            reason = await bad.closed.addTimeout(REQUEST_TIMEOUT, reactor)
            self.assertIn("unexpected", reason)

        async def moved() -> dict[str, float]:
            after = {server: await self.scrape(server) for server in self.metrics}

            def delta(server: str, name: str, **labels: str) -> float:
                return (self.value(after[server], server, name, **labels)
                        - self.value(before[server], server, name, **labels))

            found = {
                "echo": delta("connector-1", "gamenet_requests_total", route="connector.echoHandler.echo",
                              kind="request"),
                "echo latency": delta("connector-1", "gamenet_handler_duration_seconds_count",
                                      route="connector.echoHandler.echo"),
                "forwarded": delta("connector-1", "gamenet_forwarded_requests_total", route="chat.chatHandler.send",
                                   kind="request"),
                "forwarded latency": delta("connector-1", "gamenet_forward_duration_seconds_count",
                                           route="chat.chatHandler.send"),
                "served": delta("chat-1", "gamenet_requests_total", route="chat.chatHandler.send", kind="request"),
                "kicks": delta("connector-1", "gamenet_client_kicks_total", reason="protocol error"),
                "protocol errors": delta("connector-1", "gamenet_client_protocol_errors_total"),
                "rpc add": delta("chat-1", "gamenet_rpc_calls_total", method="chat.chatRemote.add")
                + delta("connector-1", "gamenet_rpc_calls_total", method="chat.chatRemote.add"),
                # Each enter pushes onAdd to the room (alice's to nobody, bob's to alice); each send, to both.
                "pushes": delta("chat-1", "gamenet_channel_pushes_total"),
                "reached": delta("chat-1", "gamenet_channel_push_members_total"),
            }
            self.assertEqual(self.value(after["chat-1"], "chat-1", "gamenet_client_connections_open"), 0)
            return found

        expected = {"echo": 5, "echo latency": 5, "forwarded": 4, "forwarded latency": 4, "served": 4, "kicks": 3,
                    "protocol errors": 3, "rpc add": 2, "pushes": 6, "reached": 9}
        last: dict[str, float] = {}

        async def settled() -> bool:
            last.update(await moved())
            return last == expected

        await eventually(settled, REQUEST_TIMEOUT, "the counters",
                         lambda text: self.fail(f"{text}: {last} != {expected}"), 0.2)
        connector = await self.scrape("connector-1")
        self.assertGreater(self.value(connector, "connector-1", "process_resident_memory_bytes"), 0)
        self.assertEqual(self.value(connector, "connector-1", "gamenet_client_connections_open"), 2)

    async def test_unknownRouteFlood(self) -> None:
        """
        A client sending L{FLOOD} notifies to as many different unknown
        routes, half of the connector's type and half of the chat server's
        (forwarded there), adds no series to either server: both count them
        under C{route="unknown"}, and the connector still answers.
        """
        client = await self.connect()
        for route in ("connector.nothing.first", "chat.nothing.first"):
            self.assertEqual((await self.request(client, route, {}))["code"], 404)
            client.notify(route, {})
        last: dict[str, Any] = {}

        async def counted(notifies: int) -> dict[str, Samples]:
            """
            Scrape both servers until the connector served C{notifies}
            unknown notifies and forwarded as many, and chat-1 served those.
            """
            async def attempt() -> bool:
                samples = last["samples"] = {server: await self.scrape(server) for server in self.metrics}
                last["found"] = [self.value(samples[server], server, name, route="unknown", kind="notify")
                                 for server, name in (("connector-1", "gamenet_requests_total"),
                                                      ("connector-1", "gamenet_forwarded_requests_total"),
                                                      ("chat-1", "gamenet_requests_total"))]
                return last["found"] == [notifies] * 3

            await eventually(attempt, 60, f"{notifies} unknown notifies counted",
                             lambda text: self.fail(f"{text}; counted {last.get('found')}"), 0.2)
            return last["samples"]

        before = await counted(1)
        for n in range(FLOOD // 2):
            client.notify(f"connector.nothing.m{n}", {})
            client.notify(f"chat.nothing.m{n}", {})
        after = await counted(1 + FLOOD // 2)
        for server in self.metrics:
            self.assertEqual(set(after[server]), set(before[server]), server)
        answer = await self.request(client, "connector.echoHandler.echo", {"still": "here"})
        self.assertEqual(answer, {"still": "here"})

    @staticmethod
    def async_value(condition: Any) -> Any:
        async def attempt() -> Any:
            return condition()

        return attempt
