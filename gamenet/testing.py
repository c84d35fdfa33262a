"""
Test kit for games and for gamenet itself.

L{MemoryCluster} runs a whole cluster inside one trial test: every server's
L{Application}, node links over Perspective Broker pumped in memory, client
connections to frontends pumped in memory, and time from one clock. No socket
is opened, so tests are fast and deterministic::

    cluster = MemoryCluster(cluster_config(frontend("connector-1", "connector"),
                                           backend("chat-1", "chat")), registrations)
    cluster.start()
    client = cluster.client("connector-1")
    d = client.request("chat.chatHandler.send", {"content": "hi"})
    cluster.flush()
    self.assertEqual(self.successResultOf(d), {})

L{start_server} starts one server on real loopback sockets instead.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any, Callable, Iterable

from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.test import iosim
from zope.interface import implementer

from .admin.interfaces import IFleet, IMaster, ISupervisor
from .app import Application
from .client import Client, _TCPClientLink
from .config import ClusterConfig, FrontendOptions, ServerConfig
from .connector.tcp import TCPFactory
from .errors import GamenetError
from .interfaces import IRegistration

__all__ = [
    "FakeFleet",
    "FakeMaster",
    "FakeSupervisor",
    "MemoryCluster",
    "backend",
    "client_port",
    "cluster_config",
    "RedisServer",
    "free_ports",
    "frontend",
    "server_record",
    "start_server",
]


def free_ports(count: int) -> list[int]:
    """
    C{count} distinct ports that were free on 127.0.0.1 a moment ago, for
    servers whose ports must be known before they start (node ports).

    They are taken below the kernel's range of ephemeral ports, where no
    socket bound to port 0 and no outgoing connection lands, and handed out
    in turn through a counter file shared by every process of the user (so
    that tests running in parallel never get the same port while one of them
    has not bound it yet). Where that range leaves too little room, they are
    ports the kernel picks.
    """
    low = _ephemeral_low()
    if low - _FIRST_PORT < 1000:
        return _kernel_ports(count)
    ports: list[int] = []
    path = os.path.join(tempfile.gettempdir(), f"gamenet-test-ports-{os.getuid()}")
    with open(path, "a+", encoding="ascii") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        text = f.read().strip()
        port = int(text) if text.isdigit() else _FIRST_PORT + os.getpid() % (low - _FIRST_PORT)
        for _ in range(low - _FIRST_PORT):
            if len(ports) == count:
                break
            port = port + 1 if _FIRST_PORT <= port < low - 1 else _FIRST_PORT
            if _bindable(port):
                ports.append(port)
        f.seek(0)
        f.truncate()
        f.write(str(port))
    if len(ports) < count:
        return _kernel_ports(count)
    return ports


_FIRST_PORT = 10000


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return _FIRST_PORT


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _kernel_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def frontend(server_id: str, server_type: str, client_port: int = 0, node_port: int = 0,
             **options: Any) -> ServerConfig:
    """
    A frontend on 127.0.0.1; C{client_port} 0 takes a free port when started
    on sockets. C{options} are L{FrontendOptions} fields.
    """
    return ServerConfig(server_id, server_type, "127.0.0.1", node_port, True, client_port,
                        FrontendOptions(**options))


def backend(server_id: str, server_type: str, node_port: int = 0) -> ServerConfig:
    """
    A backend on 127.0.0.1.
    """
    return ServerConfig(server_id, server_type, "127.0.0.1", node_port)


def cluster_config(*servers: ServerConfig, extra_routes: Iterable[str] = (), env: str = "test",
                   secret: str = "test-secret", rpc_timeout: float = 10.0,
                   drain_timeout: float = 0.0) -> ClusterConfig:
    """
    A cluster description without a file.

    @param drain_timeout: 0 by default, unlike a cluster file's 10 s: a
        stopping server kicks its clients at once, so that tests which stop
        servers with clients connected do not wait; tests of the drain set it.
    """
    return ClusterConfig("<test>", "test", secret, env, (), (), tuple(extra_routes), servers,
                         rpc_timeout=rpc_timeout, drain_timeout=drain_timeout)


async def start_server(
    cluster: ClusterConfig, server_id: str, registrations: Iterable[IRegistration] = (), reactor: Any = None,
    configure: Any = None,
) -> Application:
    """
    Start one server of C{cluster} on real sockets and wait until it serves.

    @param configure: called with the app before it starts, to add filters and hooks.
    @return: the running application; stop it with C{await app.stopService()}.
    """
    app = Application(cluster, server_id, registrations, reactor=reactor)
    if configure is not None:
        configure(app)
    app.privilegedStartService()
    await app.startService()
    return app


def client_port(app: Application) -> int:
    """
    The port a started frontend listens on.
    """
    port = getattr(app.namedServices.get("clients"), "port", None)
    if port is not None:
        return int(port.getHost().port)
    raise ValueError(f"{app} is not listening for clients")


class RedisServer:
    """
    A private C{redis-server} for a test, on a free loopback port, keeping
    nothing on disk. It can be killed and started again on the same port.

    @ivar port: its port.
    """

    def __init__(self, executable: str = "redis-server") -> None:
        path = shutil.which(executable)
        if path is None:
            raise RuntimeError("redis-server is not installed (scripts/test installs it)")
        self.executable = path
        self.port = free_ports(1)[0]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        """
        Start it and wait until it answers PING.
        """
        self.process = subprocess.Popen(
            [self.executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        """
        Kill it (SIGKILL: what it had is gone) and wait until it has exited.
        """
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10)

    def command(self, *args: str) -> bytes:
        """
        Run one command with a plain socket and return the raw reply (for
        tests that look at Redis from outside gamenet).
        """
        parts = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            data = arg.encode("utf-8")
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(b"".join(parts))
            return s.recv(65536)


class _ClientFactory(Factory):
    def __init__(self, client: Client) -> None:
        self.client = client


class MemoryCluster:
    """
    Every server of a cluster in this process, linked in memory.

    @ivar reactor: the L{MemoryReactorClock} every server uses; advance time
        with L{advance}.
    @ivar apps: the applications by server id.
    """

    def __init__(self, cluster: ClusterConfig, registrations: Iterable[IRegistration] = (),
                 configure: Any = None) -> None:
        """
        @param configure: called with each app before it starts.
        """
        self.cluster = cluster
        self.reactor = MemoryReactorClock()
        self._registrations = list(registrations)
        self._configure = configure
        self._pumps: list[iosim.IOPump] = []
        self._owners: dict[iosim.IOPump, set[str]] = {}
        self.frozen: set[str] = set()
        self.apps: dict[str, Application] = {}
        for server in cluster.servers:
            self.apps[server.id] = self._make(server.id)

    def _make(self, server_id: str) -> Application:
        app = Application(self.cluster, server_id, self._registrations, reactor=self.reactor,
                          node_connect=lambda server: self._node_connect(server_id, server))
        if self._configure is not None:
            self._configure(app)
        return app

    def _node_connect(self, local_id: str, server: ServerConfig) -> Any:
        def connect(factory: Factory) -> Deferred[Protocol]:
            target = self.apps.get(server.id)
            if target is None or not target.running:
                return fail(ConnectionRefusedError(f"{server.id} is not running"))
            return succeed(self._pipe(factory, target.node.node_server.factory, {local_id, server.id}))

        return connect

    def _pipe(self, client_factory: Factory, server_factory: Factory, owners: set[str]) -> Protocol:
        client = client_factory.buildProtocol(None)
        server = server_factory.buildProtocol(None)
        pump = iosim.connect(server, iosim.makeFakeServer(server), client, iosim.makeFakeClient(client),
                             greet=False, clock=self.reactor)
        self._pumps.append(pump)
        self._owners[pump] = owners
        return client

    def flush(self) -> None:
        """
        Move every pending byte and run every call due now, until nothing moves.
        """
        for _ in range(10000):
            self.reactor.advance(0)
            moved = False
            for pump in list(self._pumps):
                if self._owners[pump] & self.frozen:
                    continue
                moved = pump.pump(advanceClock=False) or moved
                if pump.serverIO.disconnected and pump.clientIO.disconnected:
                    self._pumps.remove(pump)
                    del self._owners[pump]
            if not moved and not any(c.getTime() <= self.reactor.seconds() for c in self.reactor.getDelayedCalls()):
                return
        raise RuntimeError("the cluster did not settle")

    def advance(self, seconds: float) -> None:
        """
        Let C{seconds} pass, in small steps, flushing after each.
        """
        step = 0.1
        while seconds > 1e-9:
            self.reactor.advance(min(step, seconds))
            seconds -= step
            self.flush()

    def start(self, *server_ids: str) -> None:
        """
        Start servers (all by default) and link them.
        """
        for server_id in server_ids or list(self.apps):
            app = self.apps[server_id]
            if app.running:
                continue
            if not app.node.running and app._prepared:
                app = self.apps[server_id] = self._make(server_id)
            app.privilegedStartService()
            app.startService()
        self.settle()

    def settle(self) -> None:
        """
        Flush, and let reconnecting links retry, until every link that can be up is.
        """
        for _ in range(100):
            self.flush()
            waiting = [
                link for app in self.apps.values() if app.running
                for link in app.node.links.values()
                if not link.up and self.apps[link.peer_id].running
            ]
            if not waiting:
                return
            self.advance(0.5)
        raise RuntimeError("node links did not come up")

    def stop(self, *server_ids: str) -> None:
        """
        Stop servers (all by default), as a clean shutdown.
        """
        for server_id in server_ids or list(self.apps):
            app = self.apps[server_id]
            if app.running:
                d = app.stopService()
                self.flush()
                self.advance(3)
                d.addErrback(lambda f: None)

    def freeze(self, server_id: str) -> None:
        """
        Hang a server: its connections stay open but no byte moves to or from
        it, as with a process stopped by SIGSTOP.
        """
        self.frozen.add(server_id)

    def thaw(self, server_id: str) -> None:
        """
        Let a frozen server's bytes move again.
        """
        self.frozen.discard(server_id)
        self.flush()

    def kill(self, server_id: str) -> None:
        """
        Drop a server as if its process died: every link to it breaks at once.
        """
        app = self.apps[server_id]
        for pump in list(self._pumps):
            if pump.server.factory is app.node.node_server.factory or any(
                pump.client is getattr(link._perspective, "broker", None) for link in app.node.links.values()
            ):
                pump.serverIO.disconnecting = pump.clientIO.disconnecting = True
        self.flush()
        for link in app.node.links.values():
            link.stop()
        app.running = False
        for child in app:
            child.running = False
        self.apps[server_id] = self._make(server_id)
        self.flush()

    def client(self, server_id: str, **options: Any) -> Client:
        """
        A client connected in memory to a frontend, its handshake done.

        @param options: passed to L{Client} (C{sys}, C{user}, C{heartbeat}, ...).
        """
        app = self.apps[server_id]
        assert app.frontend is not None, f"{server_id} is not a frontend"
        client = Client(self.reactor, **options)
        server_protocol = TCPFactory(app.frontend).buildProtocol(None)
        client_protocol = _TCPClientLink()
        client_protocol.factory = _ClientFactory(client)
        pump = iosim.connect(server_protocol, iosim.makeFakeServer(server_protocol), client_protocol,
                             iosim.makeFakeClient(client_protocol), greet=False, clock=self.reactor)
        self._pumps.append(pump)
        self._owners[pump] = {server_id}
        self.flush()
        ready = client._ready
        if ready.called and not client._open:
            raise RuntimeError(f"the handshake with {server_id} failed")
        return client


@implementer(ISupervisor)
class FakeSupervisor:
    """
    A process monitor whose children are pretend: it gives them pids and
    records the signals it sends; a test ends a child with L{exit} and lets
    a pending restart happen with L{restart_due}.

    @ivar processes: each child's command line, by name.
    @ivar signals: C{(name, "TERM" | "KILL")}, in order.
    """

    def __init__(self, running: bool = True) -> None:
        self.held: set[str] = set()
        self.no_restart: set[str] = set()
        self.process_listeners: list[Callable[[str, int | None], None]] = []
        self.processes: dict[str, list[str]] = {}
        self.environments: dict[str, dict[str, str]] = {}
        self.pids: dict[str, int] = {}
        self.pending: set[str] = set()
        self.signals: list[tuple[str, str]] = []
        self.running = running
        self._exits: dict[str, list[Deferred[None]]] = {}
        self._next_pid = 1000

    def addProcess(self, name: str, args: list[str], uid: int | None = None, gid: int | None = None,
                   env: dict[str, str] = {}, cwd: str | None = None) -> None:  # noqa: B006 (procmon's signature)
        if name in self.processes:
            raise KeyError(f"remove {name} first")
        self.processes[name] = args
        self.environments[name] = env
        if self.running:
            self._start(name)

    def removeProcess(self, name: str) -> None:
        del self.processes[name]

    def pid(self, name: str) -> int | None:
        return self.pids.get(name)

    def restart_pending(self, name: str) -> bool:
        return name in self.pending

    def hold(self, name: str) -> None:
        self.held.add(name)
        self.pending.discard(name)

    def start_process(self, name: str) -> None:
        self.held.discard(name)
        self.pending.discard(name)
        self._start(name)

    def stop_processes(self, names: list[str]) -> Deferred[Any]:
        waits = []
        for name in names:
            if name in self.pids:
                self.signals.append((name, "TERM"))
                d: Deferred[None] = Deferred()
                self._exits.setdefault(name, []).append(d)
                waits.append(d)
        return DeferredList(waits)

    def kill_process(self, name: str) -> None:
        if name in self.pids:
            self.signals.append((name, "KILL"))

    def _start(self, name: str) -> None:
        if name in self.pids:
            return
        self._next_pid += 1
        self.pids[name] = self._next_pid
        self._tell(name, self._next_pid)

    def exit(self, name: str) -> None:
        """
        A child exits; it is to be restarted unless held or C{no_restart}.
        """
        del self.pids[name]
        if name in self.processes and name not in self.held and name not in self.no_restart:
            self.pending.add(name)
        for d in self._exits.pop(name, []):
            d.callback(None)
        self._tell(name, None)

    def restart_due(self, name: str) -> None:
        """
        The restart delay of an exited child has passed: it starts again.
        """
        self.pending.remove(name)
        self._start(name)

    def _tell(self, name: str, pid: int | None) -> None:
        for listener in list(self.process_listeners):
            listener(name, pid)


@implementer(IMaster)
class FakeMaster:
    """
    A master without processes or sockets: a L{FakeSupervisor}, logins made
    by the test (L{login}, L{logout}), and control calls answered at once from
    C{answers} (by call name: a callable taking the server id and the
    keyword arguments) or, for C{status}, from L{status}.

    @ivar calls: every control call made, C{(server_id, name, kwargs)}.
    @ivar statuses: what each server's C{status} adds to the default one.
    """

    def __init__(self, cluster: ClusterConfig, local: Iterable[ServerConfig] | None = None,
                 env: str | None = None) -> None:
        self.cluster = cluster
        self.local = list(cluster.servers if local is None else local)
        self.env = env
        self.up: dict[str, object] = {}
        self.member_listeners: list[Callable[[str, bool], None]] = []
        self.supervisor = FakeSupervisor()
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.statuses: dict[str, dict[str, Any]] = {}
        self.answers: dict[str, Callable[..., Any]] = {"status": self.status}

    def control(self, server_id: str, name: str, **kwargs: Any) -> Deferred[Any]:
        if server_id not in self.up:
            return fail(GamenetError(f"server {server_id} is not logged in to the master", 404))
        self.calls.append((server_id, name, kwargs))
        answer = self.answers.get(name)
        try:
            result = answer(server_id, **kwargs) if answer is not None else None
        except Exception:
            return fail()
        return result if isinstance(result, Deferred) else succeed(result)

    def status(self, server_id: str) -> dict[str, Any]:
        """
        A server's status: up, linked to every other logged-in server, no
        load; updated with C{statuses[server_id]}.
        """
        return {
            "id": server_id, "pid": self.supervisor.pids.get(server_id), "started": 0.0, "state": "up",
            "clients": 0, "sessions": 0, "links": {other: True for other in self.up if other != server_id},
            "cpu_seconds": 0.0, "rss": 0, "metrics": {}, **self.statuses.get(server_id, {}),
        }

    def login(self, server_id: str) -> None:
        """
        A server logs in to the master.
        """
        self.up[server_id] = object()
        for listener in list(self.member_listeners):
            listener(server_id, True)

    def logout(self, server_id: str) -> None:
        """
        A server's link to the master goes.
        """
        del self.up[server_id]
        for listener in list(self.member_listeners):
            listener(server_id, False)


def server_record(server_id: str, server_type: str, state: str = "up", **fields: Any) -> dict[str, Any]:
    """
    A server's record as the admin API gives it (see C{doc/operations.md}):
    up and ready by default, no load; C{fields} override any key.
    """
    up = state == "up"
    return {
        "id": server_id, "type": server_type, "host": "127.0.0.1",
        "ports": {"node": 0, "client": 0, "web": 0, "metrics": 0}, "pid": 1000 if state != "down" else None,
        "state": state, "ready": up, "uptime": 10.0 if state != "down" else None, "restarts": 0,
        "clients": 0, "sessions": 0,
        "rps": 0.0, "errors_per_second": 0.0, "p50": None, "p99": None, "cpu": 0.0, "rss": 0,
        "frontend": server_type in ("gate", "connector"), **fields,
    }


@implementer(IFleet)
class FakeFleet:
    """
    A fleet (what the admin API asks, L{gamenet.admin.fleet.IFleet}) that
    answers from records kept in memory and records every call: for tests of
    the admin API and of its clients, over the real resource::

        fleet = FakeFleet()
        http = StubTreq(AdminApi(fleet).resource("token"))

    By default it has the five servers of the default cluster, up and ready.
    stop and kill make servers down; restart gives them a new pid, up and
    ready at once.

    @ivar records: the server records, by id, in order.
    @ivar calls: C{(name, kwargs)} of every call made.
    @ivar errors: an error to raise, by call name, instead of answering.
    """

    def __init__(self, records: Iterable[dict[str, Any]] | None = None, name: str = "chat") -> None:
        if records is None:
            records = [server_record(server_id, server_type) for server_id, server_type in (
                ("gate-1", "gate"), ("connector-1", "connector"), ("connector-2", "connector"),
                ("chat-1", "chat"), ("chat-2", "chat"))]
        self.records = {record["id"]: record for record in records}
        self.name = name
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.errors: dict[str, GamenetError] = {}
        self.blocked_networks: list[str] = []
        self._pids = 2000

    def _call(self, name: str, **kwargs: Any) -> None:
        self.calls.append((name, kwargs))
        if name in self.errors:
            raise self.errors[name]

    def _get(self, server_id: str) -> dict[str, Any]:
        if server_id not in self.records:
            raise GamenetError(f"no server {server_id} (servers: {', '.join(self.records)})", 404)
        return self.records[server_id]

    def cluster(self) -> dict[str, Any]:
        self._call("cluster")
        return {"name": self.name, "master": {"pid": 1, "uptime": 10.0}, "servers": len(self.records),
                "up": sum(1 for record in self.records.values() if record["state"] == "up")}

    def servers(self, server_type: str | None = None) -> list[dict[str, Any]]:
        self._call("servers", server_type=server_type)
        if server_type is not None and not any(r["type"] == server_type for r in self.records.values()):
            raise GamenetError(f"unknown server type {server_type}", 400)
        return [record for record in self.records.values() if server_type in (None, record["type"])]

    def server(self, server_id: str) -> dict[str, Any]:
        self._call("server", server_id=server_id)
        return {**self._get(server_id), "routes": {}}

    def history(self, seconds: float) -> dict[str, Any]:
        self._call("history", seconds=seconds)
        return {"interval": 2.0, "servers": {server_id: [] for server_id in self.records}}

    def _select(self, name: str, servers: list[str] | None, type: str | None, all: bool) -> list[dict[str, Any]]:
        self._call(name, servers=servers, type=type, all=all)
        if sum((servers is not None, type is not None, bool(all))) != 1:
            raise GamenetError('give one of "servers" (a list of ids), "type" or "all"', 400)
        if servers is not None:
            return [self._get(server_id) for server_id in servers]
        return [record for record in self.records.values() if type in (None, record["type"])]

    def stop(self, servers: list[str] | None = None, type: str | None = None, all: bool = False) -> list[str]:
        chosen = self._select("stop", servers, type, all)
        for record in chosen:
            record.update(state="down", ready=False, pid=None, uptime=None)
        return [record["id"] for record in chosen]

    def kill(self, servers: list[str] | None = None, type: str | None = None, all: bool = False) -> list[str]:
        chosen = self._select("kill", servers, type, all)
        for record in chosen:
            record.update(state="down", ready=False, pid=None, uptime=None)
        return [record["id"] for record in chosen]

    def restart(self, servers: list[str] | None = None, type: str | None = None, all: bool = False) -> list[str]:
        chosen = self._select("restart", servers, type, all)
        for record in chosen:
            self._pids += 1
            record.update(state="up", ready=True, pid=self._pids, uptime=0.0, restarts=record["restarts"] + 1)
        return [record["id"] for record in chosen]

    def add(self, section: str | None = None, spec: Any = None) -> dict[str, Any]:
        self._call("add", section=section, spec=spec)
        if (section is None) == (spec is None):
            raise GamenetError('give either "section" or "spec"', 400)
        server_id = section.split(":", 1)[-1] if section is not None else spec.get("id")
        if server_id in self.records:
            raise GamenetError(f"server {server_id} already exists", 409)
        record = self.records[server_id] = server_record(
            server_id, spec.get("type", "chat") if spec is not None else "chat", state="starting")
        return record

    def remove(self, server_id: str) -> None:
        self._call("remove", server_id=server_id)
        self._get(server_id)
        del self.records[server_id]

    async def kick(self, uid: str | None = None, server: str | None = None, session: int | None = None,
                   reason: str = "kicked by admin") -> int:
        self._call("kick", uid=uid, server=server, session=session, reason=reason)
        if server is not None:
            self._get(server)
        return 1

    async def blocked(self) -> list[str]:
        self._call("blocked")
        return list(self.blocked_networks)

    async def block(self, networks: list[str]) -> list[str]:
        self._call("block", networks=networks)
        self.blocked_networks += [network for network in networks if network not in self.blocked_networks]
        return list(self.blocked_networks)

    async def unblock(self, networks: list[str]) -> list[str]:
        self._call("unblock", networks=networks)
        for network in networks:
            if network not in self.blocked_networks:
                raise GamenetError(f"{network} is not blocked", 404)
        self.blocked_networks = [n for n in self.blocked_networks if n not in networks]
        return list(self.blocked_networks)

    async def broadcast(self, route: str, msg: Any) -> int:
        self._call("broadcast", route=route, msg=msg)
        return sum(1 for record in self.records.values() if record["frontend"] and record["state"] == "up")
