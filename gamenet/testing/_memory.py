"""
A whole cluster in one process, linked in memory: L{MemoryCluster}.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionLost, ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.test import iosim

from ..app import Application
from ..client import Client, _TCPClientLink
from ..config import ClusterConfig, ServerConfig
from ..connector.tcp import TCPFactory
from ..interfaces import IRegistration


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
        self._cut: set[tuple[str, str]] = set()
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
            if (local_id, server.id) in self._cut:
                return fail(ConnectionRefusedError(f"{local_id}'s link to {server.id} is cut"))
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
                link for server_id, app in self.apps.items() if app.running
                for link in app.node.links.values()
                if not link.up and self.apps[link.peer_id].running and (server_id, link.peer_id) not in self._cut
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

    def cut(self, local_id: str, peer_id: str) -> None:
        """
        Break server C{local_id}'s node link to C{peer_id}, and refuse its
        attempts to link again until L{mend}: the two servers see the
        cluster differently, as when one's link is still retrying. The
        link from C{peer_id} to C{local_id} is left as it is.
        """
        self._cut.add((local_id, peer_id))
        broker = getattr(self.apps[local_id].node.links[peer_id]._perspective, "broker", None)
        for pump in self._pumps:
            if pump.client is broker:
                pump.serverIO.disconnecting = pump.clientIO.disconnecting = True
        self.flush()

    def mend(self, local_id: str, peer_id: str) -> None:
        """
        Let server C{local_id} link to C{peer_id} again (see L{cut}), and
        settle.
        """
        self._cut.discard((local_id, peer_id))
        self.settle()

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

    def client(self, server_id: str, on_push: Callable[[Any], Any] | None = None, refused: bool = False,
               **options: Any) -> Client:
        """
        A client connected in memory to a frontend, its handshake done.

        @param on_push: called with every push, from the first byte on.
        @param refused: a refused handshake is expected (C{client.handshake} says why), not an error.
        @param options: passed to L{Client} (C{sys}, C{user}, C{heartbeat}, ...).
        """
        app = self.apps[server_id]
        assert app.frontend is not None, f"{server_id} is not a frontend"
        client = Client(self.reactor, **options)
        if on_push is not None:
            client.on("*", on_push)
        if refused:
            client._ready.addErrback(lambda failure: None)
        server_protocol = TCPFactory(app.frontend).buildProtocol(None)
        client_protocol = _TCPClientLink()
        client_protocol.factory = _ClientFactory(client)
        pump = iosim.connect(server_protocol, iosim.makeFakeServer(server_protocol), client_protocol,
                             iosim.makeFakeClient(client_protocol), greet=False, clock=self.reactor)
        self._pumps.append(pump)
        self._owners[pump] = {server_id}
        self.flush()
        ready = client._ready
        if ready.called and not client._open and not refused:
            raise RuntimeError(f"the handshake with {server_id} failed")
        return client

    def drop(self, client: Client) -> None:
        """
        Drop the connection of a client from L{client} as a network does:
        its frontend sees a reset, not a close.
        """
        for pump in self._pumps:
            if getattr(pump.client, "client", None) is client:
                pump.serverIO.disconnectReason = pump.clientIO.disconnectReason = ConnectionLost()
        client.drop()
        self.flush()
