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

import shutil
import socket
import subprocess
import time
from typing import Any, Iterable

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.test import iosim

from .app import Application
from .client import Client, _TCPClientLink
from .config import ClusterConfig, FrontendOptions, ServerConfig
from .connector.tcp import TCPFactory
from .interfaces import IRegistration

__all__ = [
    "MemoryCluster",
    "backend",
    "client_port",
    "cluster_config",
    "RedisServer",
    "free_ports",
    "frontend",
    "start_server",
]


def free_ports(count: int) -> list[int]:
    """
    C{count} distinct ports that were free on 127.0.0.1 a moment ago, for
    servers whose ports must be known before they start (node ports).
    """
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
                   secret: str = "test-secret", rpc_timeout: float = 10.0) -> ClusterConfig:
    """
    A cluster description without a file.
    """
    return ClusterConfig("<test>", "test", secret, env, (), (), tuple(extra_routes), servers,
                         rpc_timeout=rpc_timeout)


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
    for service in app:
        port = getattr(service, "port", None)
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
            if app.node.running is False and app._prepared:
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
