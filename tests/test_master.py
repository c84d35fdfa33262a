"""
What doc/cluster.md says of the processes C{twistd gamenet} runs, checked on
real processes: every server in one process (C{--all}); the master's
restarts (and their backoff, on a clock), C{--env} reaching its children,
its port over TLS with node TLS on, a child stopping when its master is
gone, and the master in the background (twistd without C{-n}).
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
from typing import Any

from twisted.internet import reactor
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from gamenet.client import Client
from gamenet.cluster.master import Supervisor
from gamenet.testing import free_ports

from ._processes import alive, cluster_section, eventually, process_table, server_section
from .test_fleet import ProcessClock
from .test_tls import write_certificate
from .test_twistd import (
    START_TIMEOUT, STOP_TIMEOUT, TRACEBACK, TwistdTestCase, accepts, default_cluster, environ, processes_in,
    twistd_command,
)

REQUEST_TIMEOUT = 10.0

ENV_PROBE = '''
from gamenet import Handler, handler


class EnvHandler(Handler):
    def env(self, msg, session):
        return {"env": self.app.env}


probe = handler(EnvHandler, "connector")
'''


def age(pid: int) -> float:
    """
    How long process C{pid} has been running, in seconds.
    """
    with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
        started = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime", encoding="utf-8") as f:
        uptime = float(f.read().split()[0])
    return uptime - started / os.sysconf("SC_CLK_TCK")


class ProcessTestCase(TwistdTestCase):
    """
    Helpers to talk to the processes a test started.
    """

    timeout = 240  # above the sum of a test's bounded waits

    def children(self, parent: int) -> dict[str, int]:
        """
        The live children of C{parent} that run one server: pid by server id.
        """
        return {
            cmdline[cmdline.index("--server") + 1]: pid
            for pid, (ppid, state, cmdline) in process_table().items()
            if ppid == parent and state not in ("Z", "X") and "--server" in cmdline[:-1]
        }

    async def connect(self, port: int, transport: str = "tcp") -> Client:
        client = await Client.connect(reactor, "127.0.0.1", port, transport, timeout=5).addTimeout(
            REQUEST_TIMEOUT, reactor)
        self.addCleanup(client.close)
        return client

    async def request(self, client: Client, route: str, msg: Any) -> Any:
        return await client.request(route, msg).addTimeout(REQUEST_TIMEOUT, reactor)

    async def eventually(self, attempt: Any, what: str) -> Any:
        return await eventually(attempt, START_TIMEOUT, what, lambda text: self.fail(
            f"{text}\n{self.read_output()[-20000:]}"), 0.1)

    async def chat(self, gate_port: int, connectors: set[int], name: str) -> None:
        """
        A user asks the gate for a connector and enters a room of the chat
        example there, alone in it (tried again on a new connection while
        the connector's links are still coming up).
        """
        gate = await self.connect(gate_port)
        entry = await self.request(gate, "gate.gateHandler.queryEntry", {"uid": name})
        self.assertEqual(entry["code"], 200, entry)
        self.assertIn(entry["port"], connectors)
        attempts = iter(range(10000))

        async def enter() -> bool:
            n = next(attempts)
            connector = await self.connect(entry["port"])
            answer = await self.request(connector, "connector.entryHandler.enter",
                                        {"username": f"{name}-{n}", "rid": f"room-{name}-{n}"})
            await connector.close()
            return answer == {"users": [f"{name}-{n}"]}

        await self.eventually(enter, f"{name} to enter a room")


class AllTests(ProcessTestCase):
    """
    C{twistd gamenet --all}: every server of the file in one process.
    """

    async def test_allServes(self) -> None:
        """
        The gate hands out a connector and a user enters a chat room over
        it, with every server in the one twistd process (it has no child
        and starts no master); SIGTERM stops it.
        """
        path, frontends, ports = default_cluster(self.directory)
        process = self.start_twistd("--config", path, "--all")
        clients = [port for _, port in frontends.values()]
        await self.wait_for(lambda: process.poll() is not None or all(accepts(port) for port in clients),
                            START_TIMEOUT, "every client port")
        self.assertIsNone(process.poll(), self.read_output())
        gate = next(port for kind, port in frontends.values() if kind == "gate")
        connectors = {port for kind, port in frontends.values() if kind == "connector"}
        await self.chat(gate, connectors, "ann")
        self.assertEqual(processes_in(self.directory), [process.pid])
        self.assertFalse(accepts(ports["cluster master_port"]))
        process.send_signal(signal.SIGTERM)
        await self.wait_for(lambda: process.poll() is not None, STOP_TIMEOUT, "twistd to stop")
        self.assertNotIn(TRACEBACK, self.read_output())


class SupervisorBackoffTests(SynchronousTestCase):
    """
    The master's restarts, on a clock: at once after a child that ran for a
    second or more, else after a delay doubled at each quick exit, at most
    30 seconds; each logged as C{restarting server ID in Ns}.
    """

    def setUp(self) -> None:
        self.clock = ProcessClock()
        self.supervisor = Supervisor(self.clock, set())
        self.supervisor.addProcess("chat-1", ["twistd", "chat-1"])
        self.lines: list[str] = []
        observer = lambda event: self.lines.append(formatEvent(event) or "")  # noqa: E731
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        self.supervisor.startService()

    def die(self, after: float) -> str:
        """
        Let the running child live C{after} seconds, then die; the restart
        line the master logged.
        """
        self.clock.advance(after)
        self.supervisor.protocols["chat-1"].processEnded(Failure(ProcessTerminated(signal=9)))
        [line] = [line for line in self.lines if line.startswith("restarting server chat-1")]
        self.lines.clear()
        return line

    def test_backoff(self) -> None:
        """
        Quick exits wait 1, 2, 4 ... seconds, at most 30; a child that ran
        for a second is restarted at once, and the delay starts again at 1.
        """
        self.clock.advance(0)
        delays = []
        for _ in range(7):
            line = self.die(0.5)
            delays.append(line)
            pending = self.supervisor.restart["chat-1"]
            self.clock.advance(pending.getTime() - self.clock.seconds())
        self.assertEqual(delays, [f"restarting server chat-1 in {n}s" for n in (1, 2, 4, 8, 16, 30, 30)])
        self.assertEqual(self.die(1.0), "restarting server chat-1 in 0s")
        self.clock.advance(0)
        self.assertEqual(self.die(0.2), "restarting server chat-1 in 1s")

    def test_died(self) -> None:
        """
        The master logs how the child ended, then when it restarts it.
        """
        self.clock.advance(5)
        self.supervisor.protocols["chat-1"].processEnded(Failure(ProcessDone(0)))
        self.assertIn("server chat-1 died: A process has ended without apparent errors: process finished with "
                      "exit code 0.", self.lines)
        self.assertIn("restarting server chat-1 in 0s", self.lines)


class MasterTests(ProcessTestCase):
    """
    The master of a small cluster (one connector, serving a probe of its
    environment name) and its children, seen from outside.
    """

    def write_cluster(self, **keys: object) -> tuple[str, dict[str, int]]:
        """
        A cluster file of the master and C{connector-1} (with the probe
        plugin), C{keys} added to C{[cluster]}; its path and ports.
        """
        probe = os.path.join(self.directory, "probe", "envprobe")
        os.makedirs(probe)
        with open(os.path.join(probe, "__init__.py"), "w", encoding="utf-8") as f:
            f.write("")
        with open(os.path.join(probe, "probe.py"), "w", encoding="utf-8") as f:
            f.write(ENV_PROBE)
        ports = dict(zip(("master", "connector-1.node", "connector-1.client"), free_ports(3)))
        text = cluster_section("masters", ports["master"], plugins="envprobe", **keys)
        text = text.replace("plugin_path = ", f"plugin_path = {os.path.dirname(probe)} ", 1)
        path = os.path.join(self.directory, "cluster.ini")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text + server_section("connector-1", ports))
        return path, ports

    async def serving(self, master: int, ports: dict[str, int]) -> int:
        """
        Wait until the master's child C{connector-1} serves clients; its pid.
        """
        await self.wait_for(lambda: self.children(master).get("connector-1") and accepts(ports["connector-1.client"]),
                            START_TIMEOUT, "connector-1 to serve")
        return self.children(master)["connector-1"]

    async def env(self, port: int) -> Any:
        client = await self.connect(port)
        return await self.request(client, "connector.envHandler.env", {})

    async def test_envReachesChildren(self) -> None:
        """
        C{--env} given to the master is the environment of its children:
        their command line carries it and their app has it (the file says
        C{development}).
        """
        path, ports = self.write_cluster(env="development")
        master = self.start_twistd("--config", path, "--env", "staging")
        child = await self.serving(master.pid, ports)
        self.assertEqual(process_table()[child][2][-2:], ["--env", "staging"])
        self.assertEqual(await self.env(ports["connector-1.client"]), {"env": "staging"})

    async def test_restartedAtOnce(self) -> None:
        """
        A child that ran for a second or more and is killed is logged as
        died and restarted at once (C{restarting server ID in 0s}).
        """
        path, ports = self.write_cluster()
        master = self.start_twistd("--config", path)
        child = await self.serving(master.pid, ports)
        await self.wait_for(lambda: age(child) >= 1.5, START_TIMEOUT, "the child to have run 1.5 s")
        os.kill(child, signal.SIGKILL)
        await self.wait_for(lambda: self.children(master.pid).get("connector-1") not in (None, child), START_TIMEOUT,
                            "connector-1 to be started again")
        await self.serving(master.pid, ports)
        out = self.read_output()
        self.assertIn("server connector-1 died: A process has ended with a probable error condition: process "
                      "ended by signal 9.", out)
        self.assertIn("restarting server connector-1 in 0s", out)
        self.assertEqual(await self.env(ports["connector-1.client"]), {"env": "development"})

    async def test_childStopsWithoutMaster(self) -> None:
        """
        The master killed (SIGKILL: it cannot stop its children), its child
        stops by itself.
        """
        path, ports = self.write_cluster()
        master = self.start_twistd("--config", path)
        child = await self.serving(master.pid, ports)
        os.kill(master.pid, signal.SIGKILL)
        await self.wait_for(lambda: not alive(child), STOP_TIMEOUT, "the child to stop")
        self.assertFalse(accepts(ports["connector-1.client"]))

    async def test_masterPortTLS(self) -> None:
        """
        With node TLS set, the master's port speaks TLS with the node
        certificate (to a client showing it too), and the child logs in
        to the master over it.
        """
        cert, key = os.path.join(self.directory, "node.pem"), os.path.join(self.directory, "node.key")
        write_certificate(cert, key, "gamenet-cluster")
        path, ports = self.write_cluster(node_tls_cert=cert, node_tls_key=key)
        master = self.start_twistd("--config", path)
        await self.serving(master.pid, ports)
        await self.wait_for(lambda: "server connector-1 is up" in self.read_output(), START_TIMEOUT,
                            "connector-1 to log in to the master")
        context = ssl.create_default_context(cafile=cert)
        context.check_hostname = False
        context.load_cert_chain(cert, key)
        with ssl.create_connection(("127.0.0.1", ports["master"]), timeout=REQUEST_TIMEOUT) as raw:
            with context.wrap_socket(raw) as tls:
                seen = tls.getpeercert(binary_form=True)
        with open(cert, "rb") as f:
            self.assertEqual(seen, ssl.PEM_cert_to_DER_cert(f.read().decode()))

    async def test_daemon(self) -> None:
        """
        The master in the background (C{twistd} without C{-n}, with
        C{--pidfile} and C{--logfile}): its children keep running past
        their checks of the master (once a second), and SIGTERM to the pid
        in the pid file stops it and them.
        """
        path, ports = self.write_cluster()
        pidfile, logfile = os.path.join(self.directory, "twistd.pid"), os.path.join(self.directory, "twistd.log")
        with open(self.output, "ab") as out:
            starter = subprocess.run(
                [*twistd_command(), f"--pidfile={pidfile}", f"--logfile={logfile}", "gamenet", "--config", path],
                cwd=self.directory, env=environ(), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                timeout=START_TIMEOUT,
            )
        self.assertEqual(starter.returncode, 0, self.read_output())
        await self.wait_for(lambda: os.path.exists(pidfile), START_TIMEOUT, "the pid file")
        with open(pidfile, encoding="ascii") as f:
            master = int(f.read().strip())
        child = await self.serving(master, ports)
        await self.wait_for(lambda: not alive(child) or age(child) >= 3.5, START_TIMEOUT,
                            "the child to have run 3.5 s")
        self.assertEqual(self.children(master), {"connector-1": child})
        with open(logfile, encoding="utf-8", errors="replace") as f:
            log = f.read()
        self.assertNotIn("the master is gone", log)
        self.assertEqual(await self.env(ports["connector-1.client"]), {"env": "development"})

        os.kill(master, signal.SIGTERM)
        await self.wait_for(lambda: not alive(master) and not alive(child), STOP_TIMEOUT,
                            "the master and its child to stop")
        await self.wait_for(lambda: not os.path.exists(pidfile), STOP_TIMEOUT, "the pid file to go")
        with open(logfile, encoding="utf-8", errors="replace") as f:
            log = f.read()
        self.assertIn("server connector-1 stopped", log)
        self.assertNotIn(TRACEBACK, log)
        self.assertEqual(processes_in(self.directory), [])
