"""
Several frontend processes on one client port (C{reuse_port}, C{SO_REUSEPORT}):
the cluster file's rules for a shared port, two frontends of one test process
sharing a real port with each transport and TLS, and a cluster of processes
whose gate hands out the shared port.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from gamenet import Handler, handler
from gamenet.app import Application
from gamenet.client import Client
from gamenet.connector import ListenError
from gamenet.testing import cluster_config, free_ports, frontend, start_server

from ._processes import MasterProcess, accepts, cluster_section, eventually, server_section
from .test_config import ConfigTestCase
from .test_tls import write_certificate

CLUSTER = """\
[cluster]
name = shared
secret = s
"""

CONNECTOR = """
[server:{id}]
type = {type}
host = 127.0.0.1
node_port = {node_port}
frontend = true
client_port = 3050
"""

REUSE = "reuse_port = true\n"

ATTEMPTS = 200  # connections tried until both frontends got some; all on one by chance: 2 ** -199
WAIT = 30.0


def connector(server_id: str, node_port: int, *lines: str, server_type: str = "connector") -> str:
    return CONNECTOR.format(id=server_id, type=server_type, node_port=node_port) + "".join(lines)


class ConfigTests(ConfigTestCase):
    """
    Frontends share a client port only when each of them sets C{reuse_port};
    every other clash stays the one-line error it was.
    """

    def test_default(self) -> None:
        """
        C{reuse_port} is off unless set.
        """
        cluster = self.load(CLUSTER + connector("connector-1", 4050))
        self.assertFalse(cluster.server("connector-1").options.reuse_port)

    def test_shared(self) -> None:
        """
        Two connectors with C{reuse_port} in their sections load with the same
        C{client_port}, each with its own id and node port.
        """
        cluster = self.load(CLUSTER + connector("connector-1", 4050, REUSE) + connector("connector-2", 4051, REUSE))
        servers = cluster.servers_by_type("connector")
        self.assertEqual([(s.id, s.node_port, s.client_port, s.options.reuse_port) for s in servers],
                         [("connector-1", 4050, 3050, True), ("connector-2", 4051, 3050, True)])

    def test_sharedFromFrontendSection(self) -> None:
        """
        C{reuse_port} in C{[frontend]} counts for every frontend, and so do
        C{tcp_port} and C{ws_port} shared alike.
        """
        ports = "tcp_port = 3051\nws_port = 3052\n"
        cluster = self.load(CLUSTER + "\n[frontend]\n" + REUSE + connector("connector-1", 4050, ports)
                            + connector("connector-2", 4051, ports) + connector("connector-3", 4052, ports))
        self.assertEqual({(s.client_port, s.tcp_port, s.ws_port) for s in cluster.servers}, {(3050, 3051, 3052)})

    def test_notShared(self) -> None:
        """
        Without C{reuse_port}, a shared client port is the error it always was.
        """
        self.assertProblem(CLUSTER + connector("connector-1", 4050) + connector("connector-2", 4051),
                           "[server:connector-2] client_port", "port 3050 is also [server:connector-1] client_port")

    def test_oneSide(self) -> None:
        """
        C{reuse_port} on one of the two servers only is refused, whichever one.
        """
        hint = "port 3050 is also [server:connector-1] client_port; sharing a client port needs reuse_port = true in both"
        self.assertProblem(CLUSTER + connector("connector-1", 4050) + connector("connector-2", 4051, REUSE),
                           "[server:connector-2] client_port", hint)
        self.assertProblem(CLUSTER + connector("connector-1", 4050, REUSE) + connector("connector-2", 4051),
                           "[server:connector-2] client_port", hint)

    def test_third(self) -> None:
        """
        Every server sharing the port must set C{reuse_port}: a third without it is refused.
        """
        path, problems = self.problems(CLUSTER + connector("connector-1", 4050, REUSE)
                                       + connector("connector-2", 4051, REUSE) + connector("connector-3", 4052))
        self.assertEqual(problems, [f"{path} [server:connector-3] client_port: port 3050 is also "
                                    "[server:connector-1] client_port; sharing a client port needs reuse_port = true "
                                    "in both"])

    def test_otherType(self) -> None:
        """
        A gate and a connector cannot share a port: a client would land on either.
        """
        self.assertProblem(
            CLUSTER + connector("gate-1", 4050, REUSE, server_type="gate") + connector("connector-1", 4051, REUSE),
            "[server:connector-1] client_port",
            "port 3050 is also [server:gate-1] client_port; only servers of one type share a port, and that is a gate")

    def test_otherKey(self) -> None:
        """
        One server's C{tcp_port} cannot be another's C{client_port}.
        """
        self.assertProblem(
            CLUSTER + connector("connector-1", 4050, REUSE)
            + connector("connector-2", 4051, REUSE).replace("client_port = 3050", "client_port = 3060\ntcp_port = 3050"),
            "[server:connector-2] tcp_port",
            "port 3050 is also [server:connector-1] client_port; a shared port must be client_port in both")

    def test_otherTransport(self) -> None:
        """
        Servers sharing a client port serve it with the same transport.
        """
        self.assertProblem(
            CLUSTER + connector("connector-1", 4050, REUSE) + connector("connector-2", 4051, REUSE, "transport = tcp\n"),
            "[server:connector-2] client_port",
            "port 3050 is also [server:connector-1] client_port; a shared port must have the same transport and TLS "
            "in both")

    def test_nodePortNotShared(self) -> None:
        """
        C{reuse_port} shares client ports only: a node port on a client port is
        the usual error.
        """
        self.assertProblem(CLUSTER + connector("connector-1", 4050, REUSE) + connector("connector-2", 3050, REUSE)
                           .replace("client_port = 3050", "client_port = 3051"),
                           "[server:connector-2] node_port", "port 3050 is also [server:connector-1] client_port")

    def test_badValue(self) -> None:
        """
        C{reuse_port} is a boolean.
        """
        self.assertProblem(CLUSTER + connector("connector-1", 4050, "reuse_port = twice\n"),
                           "[server:connector-1] reuse_port", "not true or false: 'twice'")


class Who(Handler):
    def who(self, msg: Any, session: Any) -> dict[str, Any]:
        return {"server": self.app.server_id, "transport": session.transport}


class ListenerTests(TestCase):
    """
    Two frontends of this process on one real port: the kernel hands new
    connections to both.
    """

    timeout = 120

    async def start(self, tcp_port: int = 0, ws_port: int = 0, **options: Any) -> list[Application]:
        """
        Start C{connector-1} and C{connector-2} with C{reuse_port} on one new
        client port (and C{tcp_port}, C{ws_port}); C{options}: more frontend options.
        """
        port, *nodes = free_ports(3)
        servers = [attrs.evolve(frontend(f"connector-{n}", "connector", port, node, reuse_port=True, **options),
                                tcp_port=tcp_port, ws_port=ws_port) for n, node in enumerate(nodes, 1)]
        self.cluster = cluster_config(*servers)
        self.port = port
        apps = []
        for server in servers:
            app = await start_server(self.cluster, server.id, [handler(Who, "connector")])
            self.addCleanup(app.stopService)
            apps.append(app)
        return apps

    async def served_by(self, port: int, transport: str, tls: bool = False) -> set[str]:
        """
        Connect to C{port} and ask who serves, at most L{ATTEMPTS} times,
        until both frontends have answered.

        @return: the ids of the servers that answered.
        """
        seen: set[str] = set()
        for _ in range(ATTEMPTS):
            client = await Client.connect(reactor, "127.0.0.1", port, transport, tls=tls, timeout=WAIT)
            try:
                answer = await client.request("connector.who.who", {})
            finally:
                await client.close()
            self.assertEqual(answer["transport"], transport + ("+tls" if tls else ""))
            seen.add(answer["server"])
            if len(seen) == 2:
                break
        return seen

    async def test_hybrid(self) -> None:
        """
        On a shared hybrid port, WebSocket and TCP clients both land on both frontends.
        """
        await self.start()
        for transport in ("websocket", "tcp"):
            self.assertEqual(await self.served_by(self.port, transport), {"connector-1", "connector-2"})

    async def test_websocket(self) -> None:
        """
        A shared WebSocket port serves from both frontends.
        """
        await self.start(transport="websocket")
        self.assertEqual(await self.served_by(self.port, "websocket"), {"connector-1", "connector-2"})

    async def test_tcp(self) -> None:
        """
        A shared TCP port serves from both frontends.
        """
        await self.start(transport="tcp")
        self.assertEqual(await self.served_by(self.port, "tcp"), {"connector-1", "connector-2"})

    async def test_tls(self) -> None:
        """
        A shared port with TLS serves TLS clients from both frontends.
        """
        cert, key = self.mktemp(), self.mktemp()
        write_certificate(cert, key)
        await self.start(tls_cert=cert, tls_key=key)
        for transport in ("websocket", "tcp"):
            self.assertEqual(await self.served_by(self.port, transport, tls=True), {"connector-1", "connector-2"})

    async def test_extraPorts(self) -> None:
        """
        C{tcp_port} and C{ws_port} are shared too.
        """
        tcp_port, ws_port = free_ports(2)
        await self.start(tcp_port=tcp_port, ws_port=ws_port)
        self.assertEqual(await self.served_by(tcp_port, "tcp"), {"connector-1", "connector-2"})
        self.assertEqual(await self.served_by(ws_port, "websocket"), {"connector-1", "connector-2"})

    async def test_oneStops(self) -> None:
        """
        Once one frontend has stopped, the other takes every new connection.
        """
        first, _ = await self.start()
        await first.stopService()
        for _ in range(10):
            client = await Client.connect(reactor, "127.0.0.1", self.port, "tcp", timeout=WAIT)
            self.addCleanup(client.close)
            self.assertEqual((await client.request("connector.who.who", {}))["server"], "connector-2")

    async def test_withoutReusePort(self) -> None:
        """
        A port shared with a frontend that did not set C{reuse_port} cannot be
        opened: the start stops with a L{ListenError} naming the key.
        """
        await self.start()
        node, = free_ports(1)
        server = frontend("connector-3", "connector", self.port, node)
        app = Application(cluster_config(*self.cluster.servers, server), "connector-3", reactor=reactor)
        self.addCleanup(app.node.stopService)
        with self.assertRaises(ListenError) as caught:
            app.privilegedStartService()
        self.assertIn(f"[server:connector-3] client_port: cannot listen for clients on 127.0.0.1:{self.port}: ",
                      str(caught.exception))
        self.assertIn("Address already in use", str(caught.exception))


class ClusterTests(TestCase):
    """
    A cluster of processes as an operator runs it: two connector processes
    on one client port, and the gate that sends clients there.
    """

    timeout = 120

    async def test_cluster(self) -> None:
        """
        The master starts both connectors on the shared port; the gate
        answers that port whichever connector it picks, and clients reach
        both processes through it.
        """
        names = ["master", "gate-1.node", "gate-1.client", "connector-1.node", "connector-2.node", "shared"]
        ports = dict(zip(names, free_ports(len(names))))
        ports["connector-1.client"] = ports["connector-2.client"] = ports["shared"]
        master = MasterProcess(self)
        master.write(cluster_section("shared", ports["master"], plugins="tests.clusterapp.plugins")
                     + server_section("gate-1", ports)
                     + "".join(server_section(c, ports) + REUSE for c in ("connector-1", "connector-2")))
        master.start(15.0)

        async def entry() -> Any:
            master.fail_if_exited()
            if not accepts(ports["gate-1.client"]):
                return None
            gate = await Client.connect(reactor, "127.0.0.1", ports["gate-1.client"], "tcp", timeout=WAIT)
            try:
                return [await gate.request("gate.gateHandler.queryEntry", {"uid": f"user{n}"}) for n in range(8)]
            finally:
                await gate.close()

        entries = await eventually(entry, WAIT, "the gate", master.fail, 0.1)
        self.assertEqual({(e["host"], e["port"]) for e in entries}, {("127.0.0.1", ports["shared"])})
        self.assertEqual({e["id"] for e in entries}, {"connector-1", "connector-2"})

        seen: set[str] = set()

        async def both() -> bool:
            master.fail_if_exited()
            client = await Client.connect(reactor, "127.0.0.1", ports["shared"], "tcp", timeout=WAIT)
            try:
                seen.add((await client.request("connector.sessionHandler.info", {}))["server"])
            finally:
                await client.close()
            return len(seen) == 2

        await eventually(both, WAIT, "clients on both connectors", master.fail, 0.05)
        self.assertEqual(seen, {"connector-1", "connector-2"})


class BenchTests(TestCase):
    """
    C{bench/reuseport.py} runs end to end on a tiny load (what it measures is
    in doc/benchmarks.md; this checks only that it works).
    """

    timeout = 180

    async def test_script(self) -> None:
        """
        Both setups answer both loads without errors, the two processes'
        CPU is split between them, and the ratios are computed.
        """
        from .test_bench import run_script

        code, document, text = await run_script(self, "reuseport", "--transport", "tcp", "--clients", 8,
                                                "--workers", 1, "--seconds", 1, "--steps", 100)
        self.assertEqual(code, 0, text)
        self.assertEqual([(row["load"], row["setup"], len(row["cpu_shares"])) for row in document["rows"]],
                         [("echo", "1 process", 1), ("echo", "2 processes", 2),
                          ("work", "1 process", 1), ("work", "2 processes", 2)])
        for row in document["rows"]:
            self.assertGreater(row["requests_per_second"], 0, text)
            self.assertEqual(row["errors"], {}, text)
        self.assertEqual(sorted(document["loads"]), ["echo", "work"])
        self.assertIn("work: 2 processes / 1: rate", text)
