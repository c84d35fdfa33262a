"""
Service discovery through Redis (C{discovery = redis}), against a private
C{redis-server} started for each test.

In-process tests start servers with L{gamenet.testing.start_server} on
loopback sockets; each server's cluster description lists only itself, so
whatever it knows of its peers it learnt through Redis. A multi-process test
runs a master with C{twistd}, starts one more server by hand from a cluster
file the others do not have, and SIGKILLs a backend.

Every wait is a bounded polling loop; every process and server started here
is stopped at cleanup.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from typing import Any, Awaitable, Callable

import attrs
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from gamenet import Handler, Remote, handler, remote
from gamenet.client import Client
from gamenet.cluster.discovery import RedisDiscovery
from gamenet.cluster.records import encode_server
from gamenet.cluster.routing import default_router
from gamenet.config import ServerConfig
from gamenet.testing import (
    RedisServer,
    backend,
    client_port,
    cluster_config,
    free_ports,
    frontend,
    start_server,
)

from ._processes import accepts, environ, eventually, is_error, kill_leftovers, process_table, twistd_command
from .test_storage_redis import keys_in

POLL = 0.02
WAIT = 15.0  # the longest any wait may take before the test fails
STORAGE_TIMEOUT = 0.5  # every Redis call's bound in these tests


def _pinned(route_param: Any, servers: Any) -> Any:
    get = getattr(route_param, "get", None)
    pin = get("pin") if callable(get) and not isinstance(route_param, dict) else None
    return str(pin) if pin else default_router(route_param, servers)


class AreaHandler(Handler):
    def echo(self, msg: Any, session: Any) -> dict[str, Any]:
        return {"server": self.app.server_id, "msg": msg}


class AreaRemote(Remote):
    def whoami(self, caller: str) -> dict[str, Any]:
        return {"server": self.app.server_id, "caller": caller}


class SessionHandler(Handler):
    def init(self) -> None:
        self.app.route("area", _pinned)

    async def pin(self, msg: Any, session: Any) -> dict[str, Any]:
        if msg.get("server"):
            session.set("pin", msg["server"])
        else:
            session.delete("pin")
        await session.push("pin")
        return {"pin": session.get("pin")}


REGISTRATIONS = [handler(AreaHandler, "area"), remote(AreaRemote, "area"), handler(SessionHandler, "connector")]


def reply(raw: bytes) -> Any:
    """
    The value of a raw RESP reply: bytes, an int, C{None}, or a list of those.
    """

    def parse(data: bytes) -> tuple[Any, bytes]:
        head, _, rest = data.partition(b"\r\n")
        if head.startswith(b":"):
            return int(head[1:]), rest
        if head in (b"$-1", b"*-1"):
            return None, rest
        if head.startswith(b"$"):
            size = int(head[1:])
            return rest[:size], rest[size + 2:]
        if head.startswith(b"*"):
            items = []
            for _ in range(int(head[1:])):
                item, rest = parse(rest)
                items.append(item)
            return items, rest
        if head.startswith(b"+"):
            return head[1:].decode(), rest
        raise AssertionError(f"unexpected reply {data!r}")

    return parse(raw)[0]


class DiscoveryTestCase(TestCase):
    """
    A private redis-server for each test, and helpers to start servers that
    know only themselves.
    """

    timeout = 60
    redis_arguments: tuple[str, ...] = ()
    redis_options: dict[str, Any] = {}

    def setUp(self) -> None:
        self.redis = RedisServer(arguments=self.redis_arguments)
        self.redis.start()
        self.addCleanup(self.redis.stop)
        self.events: dict[str, list[tuple[str, Any]]] = {}
        self.clients: list[Client] = []
        self.log_events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.log_events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.log_events.append)

    def config(self, server: ServerConfig, ttl: float) -> Any:
        return attrs.evolve(cluster_config(server, rpc_timeout=2.0), discovery="redis", discovery_ttl=ttl,
                            redis_port=self.redis.port, storage_timeout=STORAGE_TIMEOUT, **self.redis_options)

    async def start(self, server_id: str, ttl: float = 1.0) -> Any:
        """
        Start a server whose cluster description lists only itself.
        """
        server_type = server_id.rsplit("-", 1)[0]
        node_port, port = free_ports(2)
        if server_type == "connector":
            server = frontend(server_id, server_type, client_port=port, node_port=node_port, transport="tcp")
        else:
            server = backend(server_id, server_type, node_port=node_port)
        events = self.events.setdefault(server_id, [])

        def configure(app: Any) -> None:
            app.on("add_servers", lambda servers: events.append(("add", sorted(s.id for s in servers))))
            app.on("remove_servers", lambda ids: events.append(("remove", sorted(ids))))

        app = await start_server(self.config(server, ttl), server_id, REGISTRATIONS, configure=configure)
        self.addCleanup(self.stop, app)
        return app

    async def stop(self, app: Any) -> None:
        if app.running:
            await app.stopService()

    async def sleep(self, seconds: float = POLL) -> None:
        await deferLater(reactor, seconds, lambda: None)

    async def wait_until(self, condition: Callable[[], Any], what: str, timeout: float = WAIT) -> float:
        """
        Poll until C{condition()} is true; the seconds it took.
        """
        start = time.monotonic()
        while not condition():
            if time.monotonic() - start > timeout:
                self.fail(f"timed out after {timeout:g}s waiting for {what}")
            await self.sleep()
        return time.monotonic() - start

    async def eventually(self, attempt: Callable[[], Awaitable[Any]], what: str, timeout: float = WAIT) -> Any:
        return await eventually(attempt, timeout, what, self.fail, 0.05)

    @staticmethod
    def knows(app: Any, *ids: str) -> bool:
        """
        Whether C{app} knows exactly C{ids} besides itself.
        """
        return set(app.servers) == {app.server_id, *ids}

    @staticmethod
    def linked(app: Any, *ids: str) -> bool:
        """
        Whether C{app}'s links to C{ids} are up.
        """
        return all(i in app.node.links and app.node.links[i].available for i in ids)

    async def connect(self, app: Any) -> Client:
        client = await Client.connect(reactor, "127.0.0.1", client_port(app), transport="tcp", timeout=5)
        self.clients.append(client)
        self.addCleanup(self.close, client)
        return client

    async def close(self, client: Client) -> None:
        try:
            await client.close().addTimeout(5, reactor)
        except Exception:
            pass

    async def request(self, client: Client, route: str, msg: Any = None) -> Any:
        return await client.request(route, msg).addTimeout(5, reactor)

    async def echo(self, client: Client, area: str | None) -> Any:
        """
        Pin the client's session to C{area} (or unpin it) and send an echo request.
        """
        await self.request(client, "connector.sessionHandler.pin", {"server": area})
        return await self.request(client, "area.areaHandler.echo", {"to": area})

    async def served_by(self, client: Client, area: str) -> Any:
        """
        The answer to an echo pinned to C{area} if C{area} served it, else C{None}.
        """
        answer = await self.echo(client, area)
        return answer if not is_error(answer) and answer["server"] == area else None

    def get(self, key: str) -> Any:
        value = reply(self.redis.command("GET", key))
        return None if value is None else json.loads(value)

    def warnings(self, text: str) -> list[str]:
        from twisted.logger import formatEvent

        return [formatEvent(e) for e in self.log_events if text in (e.get("log_format") or "")]


def abandon(discovery: RedisDiscovery) -> None:
    """
    Make a server's discovery die as its process would: no more renewals,
    resyncs or messages, and no leave.
    """
    discovery._stopping = True
    for loop in (discovery._renew_loop, discovery._resync_loop):
        if loop is not None and loop.running:
            loop.stop()
    for client in (discovery._redis, discovery._subscription.redis):
        client.close("the process died")


class DiscoveryTests(DiscoveryTestCase):
    """
    Servers that know only themselves find each other through Redis.
    """

    async def test_peersThroughRedis(self) -> None:
        """
        Each server registers its record under C{gamenet:<cluster>:servers:<id>}
        with a TTL; every server finds the others, links to them and fires
        C{add_servers}; the connector forwards to C{area} servers it knows only
        through Redis, and C{app.rpc ... .to(id)} reaches them.
        """
        area1 = await self.start("area-1")
        self.assertEqual(list(area1.servers), ["area-1"])
        area2 = await self.start("area-2")
        connector = await self.start("connector-1")
        apps = (area1, area2, connector)
        for app in apps:
            others = [a.server_id for a in apps if a is not app]
            await self.wait_until(lambda app=app, others=others: self.knows(app, *others)
                                  and self.linked(app, *others), f"{app.server_id} to know and reach {others}")

        record = self.get("gamenet:test:servers:connector-1")
        self.assertEqual(record, {"id": "connector-1", "type": "connector", "host": "127.0.0.1",
                                  "node_port": connector.server.node_port, "frontend": True,
                                  "client_port": connector.server.client_port, "metadata": {}})
        ttl = reply(self.redis.command("PTTL", "gamenet:test:servers:area-1"))
        self.assertTrue(0 < ttl <= 1000, ttl)
        self.assertEqual(connector.servers["area-2"], ServerConfig("area-2", "area", "127.0.0.1",
                                                                   area2.server.node_port))
        self.assertEqual(sorted(s.id for s in connector.node.available("area")), ["area-1", "area-2"])
        await self.wait_until(lambda: sorted(i for e in self.events["connector-1"] if e[0] == "add" for i in e[1])
                              == ["area-1", "area-2"], "add_servers on connector-1")

        client = await self.connect(connector)
        for area in ("area-1", "area-2"):
            answer = await self.echo(client, area)
            self.assertEqual(answer, {"server": area, "msg": {"to": area}})
            result = await connector.rpc.area.areaRemote.whoami.to(area)("connector-1")
            self.assertEqual(result, {"server": area, "caller": "connector-1"})
        broadcast = await area1.rpc.area.areaRemote.whoami.broadcast("area-1")
        self.assertEqual(sorted(broadcast), ["area-1", "area-2"])

    async def test_joinAndLeave(self) -> None:
        """
        With resyncs far apart, a server started later is learnt from its
        join message (no resync ran meanwhile) and takes requests; a server stopped
        cleanly deletes its key, and its leave message drops it from every
        view at once (C{remove_servers} fires); requests then go to the others.
        """
        ttl = 60.0  # no periodic resync during this test
        area1 = await self.start("area-1", ttl)
        connector = await self.start("connector-1", ttl)
        await self.wait_until(lambda: self.linked(connector, "area-1"), "connector-1 -> area-1")
        resyncs = connector.node.discovery.resyncs

        area2 = await self.start("area-2", ttl)
        await self.wait_until(lambda: self.knows(connector, "area-1", "area-2") and self.knows(area1, "connector-1",
                                                                                              "area-2"),
                              "the join of area-2")
        self.assertEqual(connector.node.discovery.resyncs, resyncs)  # learnt from the message, not a resync

        client = await self.connect(connector)
        answer = await self.eventually(lambda: self.served_by(client, "area-2"), "area-2 taking requests")
        self.assertEqual(answer["server"], "area-2")

        await area2.stopService()
        self.assertIsNone(self.get("gamenet:test:servers:area-2"))
        await self.wait_until(lambda: self.knows(connector, "area-1") and self.knows(area1, "connector-1"),
                              "the leave of area-2")
        self.assertEqual(connector.node.discovery.resyncs, resyncs)  # learnt from the message, not a resync
        self.assertIn(("remove", ["area-2"]), self.events["connector-1"])
        self.assertNotIn("area-2", connector.node.links)
        self.assertTrue(is_error(await self.echo(client, "area-2")))
        self.assertEqual((await self.echo(client, None))["server"], "area-1")

    async def test_lapsedRegistration(self) -> None:
        """
        A server that stops renewing its registration without leaving (as a
        dead process would) drops out of every view once its key has expired,
        through the periodic resync (within 2 x discovery_ttl on an idle
        machine; not timed here); routing stops choosing it.
        """
        ttl = 1.0
        area1 = await self.start("area-1", ttl)
        area2 = await self.start("area-2", ttl)
        connector = await self.start("connector-1", ttl)
        await self.wait_until(lambda: self.linked(connector, "area-1", "area-2") and self.linked(area1, "area-2"),
                              "the cluster")
        client = await self.connect(connector)
        self.assertEqual((await self.echo(client, "area-2"))["server"], "area-2")

        abandon(area2.node.discovery)
        died = time.monotonic()
        resyncs = connector.node.discovery.resyncs
        # Dropped by a resync once its key has expired (how soon depends on
        # the machine's load: doc/storage.md gives the bound, 2 x ttl).
        await self.wait_until(lambda: self.knows(connector, "area-1") and self.knows(area1, "connector-1"),
                              "area-2 to drop out")
        self.assertGreater(time.monotonic() - died, ttl / 3)  # it lapsed, nobody announced a leave
        self.assertGreater(connector.node.discovery.resyncs, resyncs)
        self.assertIsNone(self.get("gamenet:test:servers:area-2"))
        self.assertIn(("remove", ["area-2"]), self.events["connector-1"])
        self.assertTrue(is_error(await self.echo(client, "area-2")))
        for _ in range(5):
            self.assertEqual((await self.echo(client, None))["server"], "area-1")

    async def test_redisRestart(self) -> None:
        """
        Redis killed: every server keeps its view and requests go on over
        the links already made, each server logging the outage once. Redis
        started again (empty): every server registers again at once and
        subscribes again, so a server started afterwards is learnt by the
        old ones from its join message, before any resync.
        """
        ttl = 3.0
        area1 = await self.start("area-1", ttl)
        connector = await self.start("connector-1", ttl)
        await self.wait_until(lambda: self.linked(connector, "area-1") and self.linked(area1, "connector-1"),
                              "the cluster")
        client = await self.connect(connector)
        self.assertEqual((await self.echo(client, "area-1"))["server"], "area-1")

        self.redis.stop()
        outage = time.monotonic()
        while time.monotonic() - outage < ttl + 1:  # a resync and several renewals fail meanwhile
            self.assertEqual((await self.echo(client, "area-1"))["server"], "area-1")
            self.assertTrue(self.knows(connector, "area-1") and self.knows(area1, "connector-1"))
            await self.sleep(0.2)
        self.assertEqual(len(self.warnings("is unreachable")), 2, self.warnings("is unreachable"))
        self.assertEqual(len(self.warnings("lost the subscription")), 2)
        for app in (area1, connector):
            self.assertFalse(app.node.discovery.subscribed)

        self.redis.start()
        back = time.monotonic()
        discoveries = [area1.node.discovery, connector.node.discovery]
        await self.wait_until(lambda: all(d.subscribed for d in discoveries)
                              and self.get("gamenet:test:servers:area-1") and self.get("gamenet:test:servers:connector-1"),
                              "registration and subscription again")
        again = time.monotonic() - back
        self.assertLess(again, ttl)
        numsub = reply(self.redis.command("PUBSUB", "NUMSUB", "gamenet:test:db0:membership"))
        self.assertEqual(numsub[1], 2)
        self.assertEqual(len(self.warnings("is reachable again")), 2)

        # Right after a resync of each old server, so that the next is ttl away.
        counts = [d.resyncs for d in discoveries]
        await self.wait_until(lambda: all(d.resyncs > n for d, n in zip(discoveries, counts)), "a resync")
        counts = [d.resyncs for d in discoveries]
        await self.start("area-2", ttl)
        await self.wait_until(lambda: self.knows(connector, "area-1", "area-2")
                              and self.knows(area1, "connector-1", "area-2"), "area-2 joining")
        self.assertEqual([d.resyncs for d in discoveries], counts)  # learnt from the join message, not a resync
        answer = await self.eventually(lambda: self.served_by(client, "area-2"), "area-2 taking requests")
        self.assertEqual(answer["server"], "area-2")
        self.assertEqual((await self.echo(client, "area-1"))["server"], "area-1")
        self.assertEqual([e for e in self.events["connector-1"] if e[0] == "remove"], [])
        self.assertTrue(area1.running and connector.running)

    async def test_emptyRedisAfterRestart(self) -> None:
        """
        Redis back empty: for discovery_ttl after it was unreachable a resync
        adds servers but removes none (live servers may not have registered
        again yet); a server that does not register again is dropped after that.
        """
        ttl = 1.0
        area1 = await self.start("area-1", ttl)
        connector = await self.start("connector-1", ttl)
        await self.wait_until(lambda: self.linked(connector, "area-1"), "the cluster")
        discovery = connector.node.discovery
        self.redis.stop()
        abandon(area1.node.discovery)  # it will not register again
        await self.sleep(ttl)
        resyncs = discovery.resyncs
        self.redis.start()
        await self.wait_until(lambda: discovery.resyncs > resyncs, "a resync after the restart")
        self.assertTrue(self.get("gamenet:test:servers:connector-1"))
        self.assertIsNone(self.get("gamenet:test:servers:area-1"))
        self.assertTrue(self.knows(connector, "area-1"))  # kept, though Redis does not have it
        await self.wait_until(lambda: self.knows(connector), "area-1 to drop out")
        # Dropped by a resync once Redis has been reachable for 0.9 x ttl, not before.
        after = reactor.seconds() - discovery._reachable_since
        self.assertGreaterEqual(after, 0.9 * ttl)

    async def test_badRecords(self) -> None:
        """
        Malformed records and messages, and other clusters' records, are
        ignored; each bad record is logged once, not at every resync.
        """
        area1 = await self.start("area-1", 0.5)
        other = json.dumps(encode_server(ServerConfig("area-9", "area", "127.0.0.1", 1)))
        self.redis.command("SET", "gamenet:test:servers:bogus", "not json")
        self.redis.command("SET", "gamenet:test:servers:x", other)
        self.redis.command("SET", "gamenet:other:servers:area-9", other)
        resyncs = area1.node.discovery.resyncs
        await self.wait_until(lambda: area1.node.discovery.resyncs >= resyncs + 3, "three resyncs")
        await self.wait_until(lambda: reply(self.redis.command("PUBSUB", "NUMSUB", "gamenet:test:db0:membership"))[1],
                              "the subscription")
        self.redis.command("PUBLISH", "gamenet:test:db0:membership", '{"event":"join"}')
        self.redis.command("PUBLISH", "gamenet:test:db0:membership", f'{{"event":"dance","server":{other}}}')
        await self.wait_until(lambda: len(self.warnings("on {channel}")) == 2, "the bad messages")
        self.assertEqual(list(area1.servers), ["area-1"])
        self.assertEqual(len(self.warnings("bad server record")), 2)

    async def test_startWithoutRedis(self) -> None:
        """
        Servers started while Redis is down serve, keep retrying, and find
        each other once it is up.
        """
        self.redis.stop()
        area1 = await self.start("area-1")
        connector = await self.start("connector-1")
        await self.wait_until(lambda: len(self.warnings("is unreachable")) == 2, "both servers to try Redis")
        self.assertEqual(list(connector.servers), ["connector-1"])
        self.redis.start()
        await self.wait_until(lambda: self.linked(connector, "area-1") and self.knows(area1, "connector-1"),
                              "the cluster once redis is up")
        client = await self.connect(connector)
        self.assertEqual((await self.echo(client, "area-1"))["server"], "area-1")


# A real cluster of processes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROCESS_TTL = 2.0  # discovery_ttl of the multi-process cluster
PROBE = '''
from gamenet import Handler, handler


class ProbeHandler(Handler):
    """
    connector.probeHandler.view: the servers this connector knows, and the
    area servers it would route to now.
    """

    def view(self, msg, session):
        return {"known": sorted(self.app.servers),
                "available": sorted(s.id for s in self.app.node.available("area"))}


probe = handler(ProbeHandler, "connector")
'''


class MultiProcessDiscoveryTests(DiscoveryTestCase):
    """
    C{discovery = redis} in a cluster file run by the master with twistd;
    one more server started by hand joins; a SIGKILLed backend drops out.
    """

    timeout = 120

    def cluster_text(self, ports: dict[str, int], servers: tuple[str, ...]) -> str:
        text = (
            "[cluster]\n"
            "name = discovery\n"
            "secret = discovery-secret\n"
            f"plugin_path = {REPO} {self.probe_path}\n"
            "plugins = tests.clusterapp.plugins discoveryprobe\n"
            "rpc_timeout = 2\n"
            "discovery = redis\n"
            f"discovery_ttl = {PROCESS_TTL:g}\n"
            f"storage_timeout = {STORAGE_TIMEOUT:g}\n"
            "redis_host = 127.0.0.1\n"
            f"redis_port = {self.redis.port}\n"
        )
        for server in servers:
            server_type = server.rsplit("-", 1)[0]
            text += f"\n[server:{server}]\ntype = {server_type}\nhost = 127.0.0.1\nnode_port = {ports[server]}\n"
            if server_type == "connector":
                text += f"frontend = true\nclient_port = {ports['client']}\n"
            if server == "area-2":
                text += "auto_restart = false\n"
        return text

    def spawn(self, args: list[str], log_name: str) -> subprocess.Popen[bytes]:
        with open(os.path.join(self.directory, log_name), "wb") as out:
            process = subprocess.Popen([*twistd_command(), "-n", "--pidfile=", "gamenet", *args], cwd=self.directory,
                                       env=environ(), stdin=subprocess.DEVNULL, stdout=out,
                                       stderr=subprocess.STDOUT)
        self.spawned.append(process)
        return process

    def ours(self) -> dict[int, int]:
        """
        Every live process started for this test (its command line names
        this test's directory): pid to parent pid.
        """
        return {pid: ppid for pid, (ppid, state, cmdline) in process_table().items()
                if state not in ("Z", "X") and any(self.directory in arg for arg in cmdline)}

    def child(self, master: subprocess.Popen[bytes], server_id: str) -> int | None:
        for pid, (ppid, state, cmdline) in process_table().items():
            if ppid == master.pid and state not in ("Z", "X") and cmdline[-2:] == ["--server", server_id]:
                return pid
        return None

    def stop_processes(self) -> None:
        """
        SIGTERM what this test started and wait; SIGKILL what is left.
        """
        for process in self.spawned:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.spawned:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        kill_leftovers(self.ours, POLL)

    def logs(self) -> str:
        text = ""
        for name in sorted(os.listdir(self.directory)):
            if name.endswith(".log"):
                with open(os.path.join(self.directory, name), encoding="utf-8", errors="replace") as f:
                    text += f"--- {name} ---\n{f.read()[-15000:]}\n"
        return text

    def fail(self, msg: Any = None) -> Any:
        return super().fail(f"{msg}\n{self.logs()}" if getattr(self, "directory", None) else msg)

    async def test_clusterOfProcesses(self) -> None:
        """
        The master starts a connector and two areas from a file with
        C{discovery = redis}; they find each other through Redis and serve
        clients. An C{area-3} started by hand from a second file (which has
        its section; the first file does not) joins and takes requests, by
        route function and by C{.to(id)}. A SIGKILLed C{area-2} (not
        restarted) drops out of the connector's view (the time it took is
        printed, not asserted), and requests go to the others meanwhile.
        """
        self.directory = os.path.abspath(self.mktemp())
        self.probe_path = os.path.join(self.directory, "probe")
        os.makedirs(os.path.join(self.probe_path, "discoveryprobe"))
        with open(os.path.join(self.probe_path, "discoveryprobe", "__init__.py"), "w") as f:
            f.write("")
        with open(os.path.join(self.probe_path, "discoveryprobe", "probe.py"), "w") as f:
            f.write(PROBE)
        ports = dict(zip(["client", "connector-1", "area-1", "area-2", "area-3"], free_ports(5)))
        first = os.path.join(self.directory, "cluster.ini")
        second = os.path.join(self.directory, "cluster-more.ini")
        with open(first, "w") as f:
            f.write(self.cluster_text(ports, ("connector-1", "area-1", "area-2")))
        with open(second, "w") as f:
            f.write(self.cluster_text(ports, ("connector-1", "area-1", "area-2", "area-3")))
        self.spawned: list[subprocess.Popen[bytes]] = []
        self.addCleanup(self.stop_processes)

        started = time.monotonic()
        master = self.spawn(["--config", first], "master.log")
        await self.wait_until(lambda: accepts(ports["client"]), "the connector's port", timeout=30)
        client = await self.eventually(lambda: self.connect_port(ports["client"]), "a connection to connector-1")
        for area in ("area-1", "area-2"):
            answer = await self.eventually(lambda area=area: self.served_by(client, area), f"connector-1 -> {area}",
                                           timeout=30)
            self.assertEqual(answer["server"], area)
        ready = time.monotonic() - started
        view = await self.request(client, "connector.probeHandler.view")
        self.assertEqual(view, {"known": ["area-1", "area-2", "connector-1"], "available": ["area-1", "area-2"]})

        # One more server, from a file the running servers do not have.
        started = time.monotonic()
        self.spawn(["--config", second, "--server", "area-3"], "area-3.log")
        answer = await self.eventually(lambda: self.served_by(client, "area-3"), "area-3 taking requests",
                                       timeout=30)
        self.assertEqual(answer["server"], "area-3")
        joined = time.monotonic() - started
        await self.request(client, "connector.sessionHandler.pin", {"server": "area-1"})

        async def rpc() -> Any:
            answer = await self.request(client, "area.areaHandler.rpc", {"to": "area-3", "key": "k"})
            return None if is_error(answer) else answer

        answer = await self.eventually(rpc, "area-1 -> area-3")
        self.assertFalse(is_error(answer), answer)
        self.assertEqual(answer["by_id"], {"server": "area-3", "caller": "area-1"})
        self.assertEqual(sorted(answer["broadcast"]), ["area-1", "area-2", "area-3"])

        # SIGKILL area-2; the master does not restart it.
        victim = self.child(master, "area-2")
        self.assertIsNotNone(victim)
        clients = [client, *[await self.connect_port(ports["client"]) for _ in range(3)]]
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        routed_around = None
        while True:
            view = await self.request(client, "connector.probeHandler.view")
            if "area-2" not in view["known"]:
                dropped = time.monotonic() - killed
                break
            if time.monotonic() - killed > WAIT:
                self.fail(f"area-2 still known {time.monotonic() - killed:.2f}s after SIGKILL: {view}")
            answers = [await self.echo(c, None) for c in clients]
            if routed_around is None and not any(is_error(a) for a in answers):
                routed_around = time.monotonic() - killed
            for answer in answers:
                self.assertTrue(is_error(answer) or answer["server"] in ("area-1", "area-3"), answer)
            await self.sleep(0.05)
        self.assertEqual(view, {"known": ["area-1", "area-3", "connector-1"], "available": ["area-1", "area-3"]})
        self.assertIsNone(self.get("gamenet:discovery:servers:area-2"))
        for c in clients:
            answer = await self.echo(c, None)
            self.assertIn(answer["server"], ("area-1", "area-3"))
        self.assertTrue(is_error(await self.echo(client, "area-2")))
        self.assertEqual((await self.echo(client, "area-3"))["server"], "area-3")
        await self.wait_until(lambda: "server area-2 is not restarted" in self.logs(), "the master's word")
        self.assertIsNone(self.child(master, "area-2"))
        print(f"\n  cluster ready in {ready:.2f}s; area-3 took requests {joined:.2f}s after its start; "
              f"after SIGKILL of area-2: requests all served after "
              f"{'n/a' if routed_around is None else f'{routed_around:.2f}s'}, "
              f"dropped from the view after {dropped:.2f}s (ttl {PROCESS_TTL:g}s, bound {2 * PROCESS_TTL:g}s)")

    async def connect_port(self, port: int) -> Client:
        client = await Client.connect(reactor, "127.0.0.1", port, transport="tcp", timeout=5)
        self.addCleanup(self.close, client)
        return client


class PasswordDiscoveryTests(DiscoveryTestCase):
    """
    Discovery through a Redis that asks for a password (C{redis_password}),
    in the database C{redis_db} names.
    """

    redis_arguments = ("--requirepass", "discovery pass")
    redis_options = {"redis_password": "discovery pass", "redis_db": 5}

    async def test_passwordAndDatabase(self) -> None:
        """
        Servers find each other, link and serve; their registrations are in
        database 5, none in database 0, and the membership channel carries
        the database's number.
        """
        area1 = await self.start("area-1")
        connector = await self.start("connector-1")
        await self.wait_until(lambda: self.knows(connector, "area-1") and self.linked(connector, "area-1")
                              and self.knows(area1, "connector-1"), "the servers to find each other")
        client = await self.connect(connector)
        self.assertEqual((await self.echo(client, "area-1"))["server"], "area-1")
        self.assertEqual(keys_in(self.redis, "discovery pass", 5),
                         ["gamenet:test:servers:area-1", "gamenet:test:servers:connector-1"])
        self.assertEqual(keys_in(self.redis, "discovery pass", 0), [])
        self.assertEqual(connector.node.discovery.channel, "gamenet:test:db5:membership")
