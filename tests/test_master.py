"""
What doc/cluster.md says of the processes C{twistd gamenet} runs, checked on
real processes: every server in one process (C{--all}); the master's
restarts (and their backoff, on a clock), C{--env} reaching its children,
its port over TLS with node TLS on, servers outliving a master that dies
(adopted by the next one), and the master in the background (twistd
without C{-n}).
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
from typing import Any

from twisted.internet import reactor
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from gamenet.admin._client import Api, Master, http_client
from gamenet.client import Client
from gamenet.cluster import adopt, master
from gamenet.cluster.adopt import adoptable, pid_path, read_pid, write_pid
from gamenet.cluster.master import Supervisor
from gamenet.config import ClusterConfig, ServerConfig
from gamenet.testing import free_ports

from ._processes import alive, cluster_section, eventually, process_table, server_section
from .test_fleet import ProcessClock
from .test_tls import write_certificate
from .test_twistd import (
    START_TIMEOUT, STOP_TIMEOUT, TRACEBACK, TwistdTestCase, accepts, default_cluster, environ, processes_in,
    twistd_command,
)

REQUEST_TIMEOUT = 10.0
ADMIN_TOKEN = "masters-admin-token"

ENV_PROBE = '''
import os

from gamenet import Handler, handler


class EnvHandler(Handler):
    def env(self, msg, session):
        return {"env": self.app.env}


class EchoHandler(Handler):
    def echo(self, msg, session):
        return {**msg, "pid": os.getpid()}


probe = handler(EnvHandler, "connector")
echo = handler(EchoHandler, "echo")
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


def fake_process(proc: str, pid: int, cmdline: list[str], state: str = "S") -> None:
    """
    Make process C{pid} in the pretend C{/proc} directory C{proc}: its
    C{stat} (with C{state}) and C{cmdline}.
    """
    os.makedirs(os.path.join(proc, str(pid)))
    with open(os.path.join(proc, str(pid), "stat"), "w", encoding="utf-8") as f:
        f.write(f"{pid} (python3) {state} 1 {pid} {pid} 0 -1\n")
    with open(os.path.join(proc, str(pid), "cmdline"), "wb") as f:
        f.write(b"".join(part.encode() + b"\0" for part in cmdline))


class AdoptionTests(SynchronousTestCase):
    """
    How a new master recognises a server left running by an earlier one
    (L{adoptable}), on a pretend C{/proc}, and how its supervisor watches
    an adopted server and starts it again once it is gone.
    """

    def setUp(self) -> None:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        self.proc = os.path.join(directory, "proc")
        os.makedirs(self.proc)
        self.cluster = ClusterConfig(
            path=os.path.join(directory, "cluster.ini"), name="adopt", secret="s", env="development", plugins=(),
            plugin_path=(), extra_routes=(), servers=(ServerConfig("chat-1", "chat", "127.0.0.1", 4000),))
        self.pid_file = pid_path(self.cluster, "chat-1")
        self.command = [sys.executable, "-c", "...", "--nodaemon", "--pidfile=", "gamenet",
                        "--config", self.cluster.path, "--server", "chat-1"]

    def test_pidFile(self) -> None:
        """
        The pid file of a server is in the run directory beside the cluster
        file (C{cluster.run/chat-1.pid}).
        """
        self.assertEqual(self.pid_file, os.path.join(os.path.dirname(os.path.realpath(self.cluster.path)),
                                                     "cluster.run", "chat-1.pid"))

    def test_aliveAndMatching(self) -> None:
        """
        A pid file naming a live process started with C{--config FILE
        --server ID} gives that process, and stays.
        """
        fake_process(self.proc, 4242, self.command)
        write_pid(self.pid_file, 4242)
        self.assertEqual(adoptable(self.cluster, "chat-1", self.proc), 4242)
        self.assertTrue(os.path.exists(self.pid_file))

    def test_none(self) -> None:
        """
        Without a pid file (a server the master stopped cleanly) there is
        nothing to adopt.
        """
        fake_process(self.proc, 4242, self.command)
        self.assertIsNone(adoptable(self.cluster, "chat-1", self.proc))

    def test_stale(self) -> None:
        """
        A pid file naming no process (or a zombie) is stale: nothing to
        adopt, and the file is removed.
        """
        write_pid(self.pid_file, 4242)
        self.assertIsNone(adoptable(self.cluster, "chat-1", self.proc))
        self.assertFalse(os.path.exists(self.pid_file))
        fake_process(self.proc, 4243, self.command, state="Z")
        write_pid(self.pid_file, 4243)
        self.assertIsNone(adoptable(self.cluster, "chat-1", self.proc))

    def test_recycled(self) -> None:
        """
        A pid now used by another process, another server, or a server of
        another cluster file is not adopted.
        """
        others = {
            4242: ["sleep", "100"],
            4243: [*self.command[:-1], "chat-2"],
            4244: [*self.command[:7], "/elsewhere/cluster.ini", "--server", "chat-1"],
        }
        for pid, cmdline in others.items():
            fake_process(self.proc, pid, cmdline)
            write_pid(self.pid_file, pid)
            self.assertIsNone(adoptable(self.cluster, "chat-1", self.proc), cmdline)
            self.assertFalse(os.path.exists(self.pid_file))

    def test_supervisor(self) -> None:
        """
        The supervisor adopts a server that still runs rather than spawning
        it: its pid is told, a stop signals it by pid; once its process is
        gone the master logs it died and starts it again as a child, whose
        pid is written to the pid file.
        """
        running = {4242}
        signals: list[tuple[int, int]] = []
        self.patch(master, "adoptable", lambda cluster, name: 4242 if running else None)
        self.patch(master, "runs_server", lambda pid, path, name: pid in running)
        self.patch(adopt.os, "kill", lambda pid, number: signals.append((pid, number)))
        lines: list[str] = []
        observer = lambda event: lines.append(formatEvent(event) or "")  # noqa: E731
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        clock = ProcessClock()
        supervisor = Supervisor(clock, set(), self.cluster)
        events: list[tuple[str, int | None]] = []
        supervisor.process_listeners.append(lambda name, pid: events.append((name, pid)))
        supervisor.addProcess("chat-1", self.command)
        supervisor.startService()
        self.assertEqual((clock.processes, supervisor.pid("chat-1"), events), ([], 4242, [("chat-1", 4242)]))
        self.assertIn("server chat-1 still runs from an earlier master (pid 4242): adopted", lines)

        supervisor.kill_process("chat-1")
        self.assertEqual(signals, [(4242, signal.SIGKILL)])
        clock.advance(5)
        self.assertEqual(events, [("chat-1", 4242)])
        running.clear()
        clock.advance(1)
        [child] = clock.processes
        self.assertEqual(events, [("chat-1", 4242), ("chat-1", None), ("chat-1", child.pid)])
        self.assertIn("server chat-1 stopped", lines)
        self.assertIn("restarting server chat-1 in 0s", lines)
        self.assertEqual(supervisor.pid("chat-1"), child.pid)
        self.assertEqual(read_pid(self.pid_file), child.pid)


class MasterTests(ProcessTestCase):
    """
    The master of a small cluster (one connector, serving a probe of its
    environment name) and its children, seen from outside.
    """

    def write_cluster(self, backend: bool = False, **keys: object) -> tuple[str, dict[str, int]]:
        """
        A cluster file of the master and C{connector-1} (with the probe
        plugin), C{keys} added to C{[cluster]}; its path and ports. With
        C{backend}, a backend C{echo-1} too (whose C{echoHandler.echo}
        answers the message with its pid added), the admin API on
        C{ports["admin"]} with L{ADMIN_TOKEN}, and a drain of 2 seconds.
        """
        probe = os.path.join(self.directory, "probe", "envprobe")
        os.makedirs(probe)
        with open(os.path.join(probe, "__init__.py"), "w", encoding="utf-8") as f:
            f.write("")
        with open(os.path.join(probe, "probe.py"), "w", encoding="utf-8") as f:
            f.write(ENV_PROBE)
        ports = dict(zip(("master", "connector-1.node", "connector-1.client", "echo-1.node", "admin"), free_ports(5)))
        if backend:
            keys.update(admin_port=ports["admin"], admin_token=ADMIN_TOKEN, drain_timeout=2)
        text = cluster_section("masters", ports["master"], plugins="envprobe", **keys)
        text = text.replace("plugin_path = ", f"plugin_path = {os.path.dirname(probe)} ", 1)
        text += server_section("connector-1", ports)
        if backend:
            text += server_section("echo-1", ports)
        path = os.path.join(self.directory, "cluster.ini")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
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

    async def test_serversOutliveMaster(self) -> None:
        """
        The master killed (SIGKILL), its servers keep serving a client
        connected before (the connector forwards to the backend), their
        output goes to the run directory; a new master on the same file
        adopts both (the same pids, no second copies) and they log in to
        it; an adopted server killed is started again as its child; the
        new master stopped cleanly stops the adopted server too.
        """
        path, ports = self.write_cluster(backend=True)
        first = self.start_twistd("--config", path)
        await self.serving(first.pid, ports)
        await self.wait_for(lambda: all(f"server {i} is up" in self.read_output() for i in ("connector-1", "echo-1")),
                            START_TIMEOUT, "both servers to log in to the master")
        servers = self.children(first.pid)
        self.assertEqual(sorted(servers), ["connector-1", "echo-1"])
        client = await self.connect(ports["connector-1.client"])

        async def echo(n: int, server: int) -> bool:
            answer = await self.request(client, "echo.echoHandler.echo", {"n": n})
            return answer == {"n": n, "pid": server}

        await self.eventually(lambda: echo(1, servers["echo-1"]), "the backend to answer through the connector")

        os.kill(first.pid, signal.SIGKILL)
        first.wait(STOP_TIMEOUT)
        run = os.path.join(self.directory, "cluster.run")

        def logged(server_id: str, text: str) -> bool:
            try:
                with open(os.path.join(run, f"{server_id}.log"), encoding="utf-8", errors="replace") as f:
                    return text in f.read()
            except OSError:
                return False

        for server_id in servers:
            await self.wait_for(lambda: logged(server_id, f"{server_id}: the master is gone; serving on"),
                                START_TIMEOUT, f"{server_id} to notice the master is gone")
        self.assertTrue(await echo(2, servers["echo-1"]))
        self.assertTrue(all(alive(pid) for pid in servers.values()))

        before = len(self.read_output())
        second = self.start_twistd("--config", path)
        since = lambda: self.read_output()[before:]  # noqa: E731
        for server_id, pid in servers.items():
            await self.wait_for(lambda: f"server {server_id} is up" in since(), START_TIMEOUT,
                                f"{server_id} to log in to the new master")
            self.assertIn(f"server {server_id} still runs from an earlier master (pid {pid}): adopted", since())
        self.assertEqual(self.children(second.pid), {})
        self.assertEqual(sorted(processes_in(self.directory)), sorted([second.pid, *servers.values()]))
        self.assertTrue(await echo(3, servers["echo-1"]))
        api = Api(http_client(reactor, ""), Master(f"http://127.0.0.1:{ports['admin']}", ADMIN_TOKEN), reactor)

        async def listed(pids: dict[str, int]) -> bool:
            records = await api.servers()
            return {record["id"]: (record["state"], record["pid"]) for record in records} == {
                server_id: ("up", pid) for server_id, pid in pids.items()}

        await self.eventually(lambda: listed(servers), "the admin API to list the adopted servers up")

        os.kill(servers["echo-1"], signal.SIGKILL)
        await self.wait_for(lambda: "echo-1" in self.children(second.pid), START_TIMEOUT,
                            "the new master to start echo-1 again")
        restarted = self.children(second.pid)["echo-1"]
        self.assertIn(f"server echo-1 died: adopted process {servers['echo-1']} is gone", since())
        self.assertIn("restarting server echo-1 in 0s", since())
        await self.eventually(lambda: echo(4, restarted), "the restarted backend to answer")
        await self.eventually(lambda: listed({**servers, "echo-1": restarted}),
                              "the admin API to list echo-1 up again")

        os.kill(second.pid, signal.SIGTERM)
        await self.wait_for(lambda: not processes_in(self.directory), STOP_TIMEOUT,
                            "the new master and every server to stop")
        self.assertIn("server connector-1 stopped", since())
        self.assertIn("server echo-1 stopped", since())
        self.assertEqual([name for name in os.listdir(run) if name.endswith(".pid")], [])

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
