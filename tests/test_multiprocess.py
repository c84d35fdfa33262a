"""
A real cluster of processes, as an operator runs it: C{twistd -n gamenet
--config FILE} (the master) starts a gate, two connectors and two C{area}
backends of the game in L{tests.clusterapp.plugins} as child processes, and
the tests talk to it with L{gamenet.client.Client} over loopback sockets.

The processes run the installed gamenet (see L{tests._processes.MasterProcess});
only the test game is found through the cluster file's C{plugin_path}.

Every wait is a bounded polling loop; every process started here is stopped
(SIGTERM, then SIGKILL) at cleanup.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import zlib
from typing import Any, Awaitable, Callable

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from gamenet.client import Client
from gamenet.testing import free_ports

from ._processes import (
    MasterProcess, accepts, alive, cluster_section, environ, eventually, is_error, server_section, stop_process,
    twistd_command,
)

RPC_TIMEOUT = 2.0
START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0
REQUEST_TIMEOUT = 10.0
EVENT_TIMEOUT = 15.0  # the longest a test waits for something a running cluster does
POLL = 0.05

AREAS = ("area-1", "area-2")
FRONTENDS = ("gate-1", "connector-1", "connector-2")
SERVERS = (*FRONTENDS, *AREAS)


def cluster_text(ports: dict[str, int], drain_timeout: float = 0.0) -> str:
    """
    The cluster file: C{ports} has C{master}, C{<id>.node}, and C{<id>.client}
    for the frontends.
    """
    text = cluster_section("multiprocess", ports["master"], plugins="tests.clusterapp.plugins",
                           rpc_timeout=f"{RPC_TIMEOUT:g}", drain_timeout=f"{drain_timeout:g}")
    return text + "".join(server_section(server, ports) for server in SERVERS)


def key_for(server: str, prefix: str) -> str:
    """
    A route parameter that gamenet's default router (crc32 modulo the number
    of servers, in file order) sends to C{server} of L{AREAS}.
    """
    wanted = AREAS.index(server)
    for n in range(1000):
        key = f"{prefix}{n}"
        if zlib.crc32(key.encode("utf-8")) % len(AREAS) == wanted:
            return key
    raise AssertionError("no key found")


def default_area(frontend: str, session_id: int) -> str:
    """
    The C{area} server the default router picks for an unbound session.
    """
    return AREAS[zlib.crc32(f"{frontend}:{session_id}".encode("utf-8")) % len(AREAS)]


class EchoLoad:
    """
    Clients each asking C{area.areaHandler.echo} one request after another,
    C{pace} seconds apart (well under a connection's messages_per_second),
    until stopped or kicked; what each got, and when.

    @ivar records: by client name, C{(start, end, answer)} of each request;
        the answer is the exception when one failed.
    """

    def __init__(self, test: ClusterTestCase, clients: dict[str, Client], pace: float) -> None:
        self.records: dict[str, list[tuple[float, float, Any]]] = {name: [] for name in clients}
        self._stopped = False
        self._loops = [Deferred.fromCoroutine(self._run(test, name, client, pace)) for name, client in clients.items()]

    async def _run(self, test: ClusterTestCase, name: str, client: Client, pace: float) -> None:
        n = 0
        while not self._stopped and client.kick_reason is None:
            n += 1
            start = time.monotonic()
            try:
                answer = await test.request(client, "area.areaHandler.echo", {"n": n})
            except Exception as e:
                answer = e
            self.records[name].append((start, time.monotonic(), answer))
            await test.sleep(pace)

    def served(self, server: str, after: float = 0.0, names: tuple[str, ...] | None = None) -> list[Any]:
        """
        The answers C{server} gave to requests sent from C{after} on, by the clients C{names} (all by default).
        """
        return [answer for name in names or self.records for start, _, answer in self.records[name]
                if start >= after and isinstance(answer, dict) and answer.get("server") == server]

    def errors(self, name: str) -> list[tuple[float, float, Any]]:
        """
        The records of C{name}'s requests that no server answered.
        """
        return [record for record in self.records[name]
                if not (isinstance(record[2], dict) and "server" in record[2])]

    async def stop(self) -> None:
        """
        Stop sending; fires once every client's last request is done.
        """
        self._stopped = True
        await gatherResults(self._loops)


class ClusterTestCase(TestCase):
    """
    Starts the master with a fresh cluster file, and waits until the cluster serves.

    @ivar drain_timeout: the cluster's; 0 (no drain) unless a test is about it.
    """

    timeout = 120
    drain_timeout = 0.0

    async def setUp(self) -> None:
        names = ["master", *(f"{s}.node" for s in SERVERS), *(f"{s}.client" for s in FRONTENDS)]
        self.ports = dict(zip(names, free_ports(len(names))))
        self.master = MasterProcess(self)
        self.master.write(cluster_text(self.ports, self.drain_timeout))
        self.master.start(STOP_TIMEOUT)
        self.clients: list[Client] = []
        self.addCleanup(self.close_clients)
        await self.wait_ready()

    # Waiting

    async def sleep(self, seconds: float = POLL) -> None:
        await deferLater(reactor, seconds, lambda: None)

    async def wait_until(self, condition: Callable[[], Any], timeout: float, what: str) -> Any:
        """
        Poll C{condition()} until it is true; fail after C{timeout} seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                self.master.fail(f"timed out after {timeout:g}s waiting for {what}")
            await self.sleep()

    async def eventually(self, attempt: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
        """
        Run C{attempt()} until it returns a true value without raising; fail
        after C{timeout} seconds with the last problem and the master's log.
        """
        return await eventually(attempt, timeout, what, self.master.fail, 0.1)

    async def wait_ready(self) -> None:
        """
        Wait until every port accepts connections and every link a request
        needs is up: each connector forwards to each area server, which
        reaches the connector back and the other area server.
        """
        ports = list(self.ports.values())

        def listening() -> bool:
            self.master.fail_if_exited()
            return all(accepts(port) for port in ports)

        await self.wait_until(listening, START_TIMEOUT, "every port of the cluster")
        for connector in ("connector-1", "connector-2"):
            client = await self.eventually(
                lambda: self.connect(connector, "tcp"), START_TIMEOUT, f"a connection to {connector}"
            )
            for area in AREAS:

                async def ready() -> bool:
                    await self.request(client, "connector.sessionHandler.pin", {"server": area})
                    answer = await self.request(client, "area.areaHandler.ready", {})
                    return (not is_error(answer) and answer["server"] == area and answer["connected"] is True
                            and answer["peers"] == {a: a for a in AREAS})

                await self.eventually(ready, START_TIMEOUT, f"{connector} -> {area} and back")
            await self.close(client)

    # Clients

    def port(self, frontend: str) -> int:
        return self.ports[frontend + ".client"]

    async def connect(self, frontend: str, transport: str) -> Client:
        d = Client.connect(reactor, "127.0.0.1", self.port(frontend), transport=transport, timeout=5)
        client = await d.addTimeout(REQUEST_TIMEOUT, reactor)
        self.clients.append(client)
        return client

    async def request(self, client: Client, route: str, msg: Any = None, timeout: float = REQUEST_TIMEOUT) -> Any:
        return await client.request(route, msg).addTimeout(timeout, reactor)

    async def close(self, client: Client) -> None:
        try:
            await client.close().addTimeout(5, reactor)
        except Exception:
            pass

    async def close_all(self) -> None:
        await gatherResults([Deferred.fromCoroutine(self.close(client)) for client in self.clients])

    def close_clients(self) -> Deferred[Any]:
        return Deferred.fromCoroutine(self.close_all())


class MultiProcessTests(ClusterTestCase):
    """
    What a player's client sees of a cluster of processes.
    """

    async def test_forwarding(self) -> None:
        """
        The gate answers a connector's address; requests from clients on both
        connectors, over WebSocket and TCP, to backend routes are forwarded
        and answered, naming the backend that served (the one the route
        function picks: by session id by default, the pinned one when pinned).
        """
        gate = await self.connect("gate-1", "websocket")
        entry = await self.request(gate, "gate.gateHandler.queryEntry", {"uid": "alice"})
        self.assertEqual(entry["code"], 200)
        self.assertEqual(entry["host"], "127.0.0.1")
        self.assertEqual(entry["port"], self.port(entry["id"]))
        self.assertIn(entry["id"], ("connector-1", "connector-2"))
        self.assertEqual(await self.request(gate, "gate.gateHandler.queryEntry", {}), {"code": 500})

        seen = set()
        for frontend in ("connector-1", "connector-2"):
            for transport in ("websocket", "tcp"):
                client = await self.connect(frontend, transport)
                msg = {"text": f"héllo from {frontend} over {transport}", "n": [1, 2.5, None, True]}
                first = await self.request(client, "area.areaHandler.echo", msg)
                self.assertEqual(first["msg"], msg)
                self.assertEqual(first["frontend"], frontend)
                self.assertEqual(first["server"], default_area(frontend, first["sid"]))
                again = await self.request(client, "area.areaHandler.echo", {"again": True})
                self.assertEqual((again["server"], again["sid"]), (first["server"], first["sid"]))
                seen.add(first["server"])
                for area in AREAS:
                    pinned = await self.request(client, "connector.sessionHandler.pin", {"server": area})
                    self.assertEqual((pinned["server"], pinned["pin"]), (frontend, area))
                    answer = await self.request(client, "area.areaHandler.echo", {"to": area})
                    self.assertEqual((answer["server"], answer["frontend"], answer["msg"]),
                                     (area, frontend, {"to": area}))
                    seen.add(answer["server"])
        self.assertEqual(seen, set(AREAS))

        # The connector the gate named serves too.
        client = await self.connect(entry["id"], "tcp")
        answer = await self.request(client, "area.areaHandler.echo", {"via": "gate"})
        self.assertEqual((answer["frontend"], answer["msg"]), (entry["id"], {"via": "gate"}))

    async def test_rpc(self) -> None:
        """
        A backend handler calls a remote of the other backend by server id,
        by route parameter and by broadcast, and the results reach the client;
        a remote's error reaches the client with its code.
        """
        client = await self.connect("connector-1", "websocket")
        for here, other in (AREAS, reversed(AREAS)):
            await self.request(client, "connector.sessionHandler.pin", {"server": here})
            answer = await self.request(client, "area.areaHandler.rpc", {"to": other, "key": key_for(other, "k")})
            self.assertFalse(is_error(answer), answer)
            self.assertEqual(answer["server"], here)
            self.assertEqual(answer["by_id"], {"server": other, "caller": here})
            self.assertEqual(answer["by_param"], {"server": other, "caller": here})
            self.assertEqual(answer["broadcast"], {area: {"server": area, "caller": here} for area in AREAS})
            # By route parameter to the server itself: a local call.
            answer = await self.request(client, "area.areaHandler.rpc", {"to": other, "key": key_for(here, "k")})
            self.assertEqual(answer["by_param"], {"server": here, "caller": here})

            failed = await self.request(client, "area.areaHandler.rpcFail", {"to": other, "code": 418})
            self.assertEqual(failed, {"code": 418, "message": f"{other} failed on purpose"})
            unknown = await self.request(client, "area.areaHandler.rpc", {"to": "area-9", "key": "k"})
            self.assertEqual(unknown["code"], 404)

    async def test_sessionSettings(self) -> None:
        """
        A backend binds the session and pushes a setting; the next request,
        served by the other backend, carries the uid and the setting, and the
        frontend's session has them.
        """
        for n, (frontend, transport) in enumerate((("connector-1", "websocket"), ("connector-2", "tcp"))):
            client = await self.connect(frontend, transport)
            first = await self.request(client, "area.areaHandler.echo", {})
            binder = first["server"]
            reader = AREAS[1 - AREAS.index(binder)]
            uid = key_for(reader, f"player{n}-")

            login = await self.request(client, "area.areaHandler.login", {"uid": uid, "key": "level", "value": 7})
            self.assertEqual((login["server"], login["uid"]), (binder, uid))

            seen = await self.request(client, "area.areaHandler.whoami", {"keys": ["level", "nothing"]})
            self.assertEqual(seen["server"], reader)
            self.assertEqual((seen["uid"], seen["settings"]), (uid, {"level": 7, "nothing": None}))

            local = await self.request(client, "connector.sessionHandler.info", {"keys": ["level"]})
            self.assertEqual(local, {"server": frontend, "sid": first["sid"], "uid": uid, "settings": {"level": 7}})

    async def test_kickByUid(self) -> None:
        """
        A backend kicks a uid on a frontend: that client gets the kick with its
        reason and its connection closes; other clients are not touched.
        """
        victim = await self.connect("connector-1", "websocket")
        bystander = await self.connect("connector-1", "tcp")
        kicker = await self.connect("connector-2", "tcp")
        await self.request(victim, "area.areaHandler.login", {"uid": "victim", "key": "k", "value": 1})
        await self.request(bystander, "area.areaHandler.login", {"uid": "bystander", "key": "k", "value": 2})

        answer = await self.request(
            kicker, "area.areaHandler.kick", {"frontend": "connector-1", "uid": "victim", "reason": "banned for a test"}
        )
        self.assertEqual((answer["kicked"], answer["left"]), ("victim", 0))
        reason = await victim.closed.addTimeout(5, reactor)
        self.assertEqual(victim.kick_reason, "banned for a test")
        self.assertEqual(reason, "banned for a test")

        still = await self.request(bystander, "area.areaHandler.whoami", {"keys": ["k"]})
        self.assertEqual((still["uid"], still["settings"]), ("bystander", {"k": 2}))
        self.assertIsNone(bystander.kick_reason)

    async def test_backendKilled(self) -> None:
        """
        With clients sending requests, one backend is killed: requests routed
        to it fail fast with 503/504, others go on being served by the other
        backend; the master restarts it alone, and it serves again.
        """
        before = await self.wait_until(lambda: len(self.master.children()) == len(SERVERS) and self.master.children(),
                                       EVENT_TIMEOUT, "the master's children")
        pinned_1 = await self.connect("connector-1", "websocket")
        await self.request(pinned_1, "connector.sessionHandler.pin", {"server": "area-1"})
        pinned_2 = await self.connect("connector-2", "tcp")
        await self.request(pinned_2, "connector.sessionHandler.pin", {"server": "area-2"})
        free = await self.connect("connector-1", "tcp")
        await self.request(free, "connector.sessionHandler.bind", {"uid": key_for("area-1", "free")})

        load = EchoLoad(self, {"pinned_1": pinned_1, "pinned_2": pinned_2, "free": free}, 0.02)

        def served(name: str, server: str, after: float = 0.0) -> list[Any]:
            return load.served(server, after, (name,))

        errors = load.errors
        try:
            await self.wait_until(
                lambda: served("pinned_1", "area-1") and served("pinned_2", "area-2") and len(served("free", "area-1")) >= 3,
                EVENT_TIMEOUT, "the load to be served",
            )
            killed_at = time.monotonic()
            os.kill(before["area-1"], signal.SIGKILL)

            await self.wait_until(lambda: errors("pinned_1"), EVENT_TIMEOUT, "a failed request pinned to area-1")
            await self.wait_until(lambda: served("free", "area-2", killed_at), EVENT_TIMEOUT,
                                  "the unpinned client to be served by area-2")
            await self.wait_until(lambda: "server area-1 died" in self.master.log(), EVENT_TIMEOUT,
                                  "the master to see area-1 exit")
            await self.wait_until(
                lambda: self.master.children().get("area-1") not in (None, before["area-1"]), EVENT_TIMEOUT,
                "area-1 to be restarted",
            )
            await self.wait_until(lambda: accepts(self.ports["area-1.node"]), START_TIMEOUT, "area-1's node port")
            await self.wait_until(lambda: served("pinned_1", "area-1", killed_at), START_TIMEOUT,
                                  "requests pinned to area-1 to succeed again")
            recovered_at = time.monotonic()
            await self.wait_until(lambda: served("pinned_1", "area-1", recovered_at), EVENT_TIMEOUT, "one more")
        finally:
            await load.stop()

        # Every failure is gamenet's answer (503 or 504), none the client's own
        # REQUEST_TIMEOUT: requests to the dead server fail fast.
        for name in load.records:
            for start, end, answer in errors(name):
                self.assertTrue(is_error(answer) and answer["code"] in (503, 504), f"{name}: {answer!r}")
                self.assertGreaterEqual(end, killed_at, f"{name}: failed before the kill: {answer!r}")
        self.assertTrue(errors("pinned_1"))
        self.assertEqual(errors("pinned_2"), [])
        self.assertEqual({a["server"] for _, _, a in load.records["pinned_2"]}, {"area-2"})
        # The unpinned client is routed around the dead server: at most the
        # request in flight when it died fails.
        self.assertLessEqual(len(errors("free")), 1, errors("free"))

        after = self.master.children()
        self.assertEqual(set(after), set(SERVERS))
        self.assertNotEqual(after["area-1"], before["area-1"])
        self.assertEqual({s: p for s, p in after.items() if s != "area-1"},
                         {s: p for s, p in before.items() if s != "area-1"})
        log = self.master.log()
        self.assertEqual(log.count("area-1 (area) started"), 2)
        self.assertEqual(log.count("server area-1 is up"), 2)
        for server in SERVERS:
            if server != "area-1":
                self.assertEqual(log.count(f"{server} ({server.rsplit('-', 1)[0]}) started"), 1, server)

    # Above its worst case: each wait at its bound (about 150 s), and the
    # requests in flight at their REQUEST_TIMEOUT.
    test_backendKilled.timeout = 240  # type: ignore[attr-defined]

    async def test_backendHung(self) -> None:
        """
        A backend that stops answering (SIGSTOP) without dying: requests
        routed to it are answered 504 after the RPC timeout, the other backend
        answers at once meanwhile; from then on the frontend routes around it
        (503 at once for requests that can only go there), and once it goes on
        (SIGCONT) it serves again.
        """
        before = self.master.children()
        hung = await self.connect("connector-1", "websocket")
        await self.request(hung, "connector.sessionHandler.pin", {"server": "area-1"})
        other = await self.connect("connector-2", "tcp")
        await self.request(other, "connector.sessionHandler.pin", {"server": "area-2"})

        def resume() -> None:
            try:
                os.kill(before["area-1"], signal.SIGCONT)
            except OSError:
                pass

        self.addCleanup(resume)
        os.kill(before["area-1"], signal.SIGSTOP)
        start = time.monotonic()
        waiting = Deferred.fromCoroutine(self.request(hung, "area.areaHandler.echo", {"n": 1}))
        answer = await self.request(other, "area.areaHandler.echo", {"n": 2})
        self.assertEqual(answer["server"], "area-2")
        self.assertFalse(waiting.called, "the request to the hung area-1 was answered before area-2's")
        answer = await waiting
        elapsed = time.monotonic() - start
        self.assertEqual(answer["code"], 504, answer)
        self.assertGreaterEqual(elapsed, RPC_TIMEOUT - 0.1)
        # 503 (not sent) rather than 504 (sent, then timed out): refused at once.
        answer = await self.request(hung, "area.areaHandler.echo", {"n": 4})
        self.assertEqual(answer["code"], 503, answer)

        async def logged() -> bool:
            # The frontend's log reaches the file a moment after its answer.
            return "area-1 is not answering; routing around it" in self.master.log()

        await self.eventually(logged, EVENT_TIMEOUT, "the frontend to log that it routes around area-1")

        resume()

        async def served() -> bool:
            answer = await self.request(hung, "area.areaHandler.echo", {"n": 3})
            return answer.get("server") == "area-1" and answer["msg"] == {"n": 3}

        await self.eventually(served, START_TIMEOUT, "area-1 to serve again")
        self.assertEqual(self.master.children(), before)

    async def test_wrongSecret(self) -> None:
        """
        A server started with a wrong cluster secret (here a second area-2 on
        another node port) is refused by every server and the master, which
        log it, and none of its links comes up; the cluster goes on serving.
        """
        rogue_config = os.path.join(self.master.directory, "rogue.ini")
        (rogue_port,) = free_ports(1)
        with open(self.master.config, encoding="utf-8") as f:
            text = f.read()
        text = text.replace(f"node_port = {self.ports['area-2.node']}\n", f"node_port = {rogue_port}\n")
        with open(rogue_config, "w", encoding="utf-8") as f:
            f.write(text)
        rogue_log = os.path.join(self.master.directory, "rogue.log")
        with open(rogue_log, "wb") as out:
            rogue = subprocess.Popen(
                [*twistd_command(), "-n", "--pidfile=", "gamenet", "--config", rogue_config, "--server", "area-2"],
                cwd=self.master.directory, env=environ(GAMENET_SECRET="wrong"), stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT,
            )

        self.addCleanup(stop_process, rogue, STOP_TIMEOUT)

        def read_rogue() -> str:
            with open(rogue_log, encoding="utf-8", errors="replace") as f:
                return f.read()

        peers = ("master", "gate-1", "connector-1", "connector-2", "area-1")
        refusal = "node link refused: wrong cluster secret from 'area-2'"

        def refused_everywhere() -> bool:
            log = self.master.log()
            master_lines = [line for line in log.splitlines() if "Supervisor#" not in line]
            return (all(f"area-2: {peer} refused our node link" in read_rogue() for peer in peers)
                    and any(refusal in line for line in master_lines)
                    and all(re.search(rf"\[{re.escape(s)}\] .*{re.escape(refusal)}", log) for s in peers[1:]))

        try:
            await self.wait_until(refused_everywhere, 15, "the rogue server to be refused everywhere")
        except Exception:
            print("--- rogue log ---\n" + read_rogue())
            raise
        rogue_text = read_rogue()
        self.assertNotRegex(rogue_text, r"node link to \S+ up")
        self.assertIsNone(rogue.poll(), "the refused server keeps running and retrying")

        # The real area-2 still serves; nothing reached the rogue.
        client = await self.connect("connector-2", "tcp")
        await self.request(client, "connector.sessionHandler.pin", {"server": "area-2"})
        answer = await self.request(client, "area.areaHandler.ready", {})
        self.assertEqual((answer["server"], answer["connected"]), ("area-2", True))
        self.assertNotIn("node link from", rogue_text)
        self.assertNotIn("Traceback", self.master.log())
        self.assertNotIn("Traceback", rogue_text)
        stop_process(rogue, STOP_TIMEOUT)

    async def test_sigtermStopsEverything(self) -> None:
        """
        SIGTERM to the master stops its children, frontends first (their
        clients are kicked C{server shutting down}), then itself.
        """
        children = self.master.children()
        self.assertEqual(set(children), set(SERVERS))
        client = await self.connect("connector-1", "websocket")
        await self.request(client, "area.areaHandler.echo", {})

        self.master.process.send_signal(signal.SIGTERM)
        await self.wait_until(lambda: self.master.process.poll() is not None, STOP_TIMEOUT, "the master to exit")
        await self.wait_until(lambda: not any(alive(pid) for pid in children.values()), STOP_TIMEOUT,
                              "the children to exit")
        # twistd ends by the signal that stopped it (twisted.application.app._exitWithSignal).
        self.assertIn(self.master.process.returncode, (0, -signal.SIGTERM))
        self.assertEqual(await client.closed.addTimeout(REQUEST_TIMEOUT, reactor), "server shutting down")

        log = self.master.log()
        frontends_gone = max(log.index(f"server {s} stopped") for s in FRONTENDS)
        backends_told = min(log.index(f"[{s}] [twisted.internet.base#info] Received SIGTERM") for s in AREAS)
        self.assertLess(frontends_gone, backends_told)
        self.assertNotIn("Traceback", log)
        self.assertEqual(self.master.ours(), {})
