"""
A server's place in the cluster: its node port, its links to every other
server, forwarding, C{app.rpc}, sys calls and membership.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable

from twisted.application.service import Service
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, DeferredList, fail, maybeDeferred, succeed
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger

from .._settle import settle
from ..config import ServerConfig
from ..connector.frontend import wait_at_most
from ..connector.listener import listen
from ..errors import GamenetError, RouteNotFound
from ..protocol import serializer
from . import routing, wire
from .adopt import detach_output, run_directory
from .backend import BackendSessionService
from .control import ControlRemote
from .forward import Forwarder, run_forwarded
from .link import NodeLink
from .master import MASTER_ID, PARENT_ENVIRONMENT
from .node import NodeServer, RemoteError, node_tls_options
from .recovery import Recovery
from .rpc import RpcCall, rpc_proxy
from .sysremote import SysRemote

if TYPE_CHECKING:
    from ..app import Application

log = Logger()


class ClusterNode(Service):
    """
    Links one server to the rest of its cluster.

    @ivar links: the link to every other server, by id.
    @ivar remotes: remote route to callable, for calls from other servers.
    @ivar backend_sessions: the L{BackendSessionService}.
    @ivar recovery: the L{Recovery} of the state the frontends' sessions
        rebuild, and of members of frontends that are gone.
    @ivar rpc: the C{app.rpc} proxy.
    @ivar use_master: whether to log in to the master (for its control
        calls, and for membership with static discovery).
    @ivar draining: whether this server is leaving routing (see L{leave}).
    """

    def __init__(
        self,
        app: Application,
        connect: Callable[[ServerConfig], Callable[[Any], Deferred[Any]]] | None = None,
        use_master: bool = False,
    ) -> None:
        self.app = app
        self.reactor = app.reactor
        cluster = app.cluster
        self.use_master = use_master and bool(cluster.master_port)
        # With Redis discovery, membership comes from Redis: the master knows
        # only the servers of its own file.
        self._master_membership = self.use_master and cluster.discovery == "static"
        self.tls = node_tls_options(cluster) if cluster.node_tls_cert else None
        self.node_server = NodeServer(app.server_id, cluster.secret, self._known, self, self.reactor)
        self.node_server.login_listeners.append(self._peer_logged_in)
        self.links: dict[str, NodeLink] = {}
        self.remotes: dict[str, Callable[..., Any]] = {}
        self.backend_sessions = BackendSessionService(self)
        self.recovery = Recovery(self, app.channels)
        self.rpc = rpc_proxy(self)
        self.sys = SysRemote(app.sessions, app.channels) if app.sessions is not None else None
        self.master_link: NodeLink | None = None
        self.membership: set[str] = set()
        self._available: set[str] = {app.server_id}
        # Peers that said they drain (wire.DRAIN): not available until their
        # link goes down and comes up again.
        self._draining: set[str] = set()
        self.draining = False
        # available() by server type, sorted: it is asked on every forwarded
        # request and call. Forgotten whenever a link becomes available or
        # stops being so (_link_changed) and whenever the registry changes.
        self._available_by_type: dict[str, tuple[ServerConfig, ...]] = {}
        app.registry.listeners.append(self._forget_available)
        # The types of the cluster file, for forwarder(): routes a client
        # made up are never cached, and must not cost a scan of the file.
        self._file_types = frozenset(server.type for server in cluster.servers)
        self._connect = connect or self._tcp_connect
        self._port: Any = None
        self._orphan_check: LoopingCall | None = None
        # discovery = redis: the registry holds only this server until Redis
        # tells of others (see gamenet.cluster.discovery).
        self.discovery: Any = None
        if cluster.discovery == "redis":
            from .discovery import RedisDiscovery

            self.discovery = RedisDiscovery(app)

    def _known(self, server_id: str) -> bool:
        return server_id in self.app.registry

    # Listening and linking

    def _tcp_connect(self, server: ServerConfig) -> Callable[[Any], Deferred[Any]]:
        endpoint: Any = endpoints.TCP4ClientEndpoint(self.reactor, server.host, server.node_port, timeout=5)
        if self.tls is not None:
            endpoint = endpoints.wrapClientTLS(self.tls, endpoint)
        return endpoint.connect

    def listen(self) -> None:
        """
        Open the node port.

        @raise ListenError: it cannot be opened.
        """
        server = self.app.server
        self._port = listen(self.reactor, server.node_port, self.node_server.factory, server.host,
                            f"[server:{server.id}] node_port: cannot listen for node links", self.tls)

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        if self._port is None:
            self.listen()

    def startService(self) -> None:
        if self._port is None:
            self.listen()
        super().startService()
        timeout = self.app.cluster.rpc_timeout
        for server in self.app.registry:
            self._link_to(server)
        self.app.registry.listeners.append(self._servers_changed)
        self.recovery.start()
        if self.discovery is not None:
            self.discovery.startService()
        if self.use_master:
            cluster = self.app.cluster
            master = self.app.master
            assert master is not None
            self.master_link = NodeLink(self.app.server_id, MASTER_ID, cluster.secret, self._connect(master),
                                        self.reactor, timeout, ping=False)
            if self._master_membership:
                self.master_link.membership_listeners.append(self._membership_changed)
            self.master_link.control = ControlRemote(self.app).call
            self.master_link.start()
        parent = os.environ.get(PARENT_ENVIRONMENT)
        if parent:
            self._orphan_check = LoopingCall(self._check_parent, int(parent))
            self._orphan_check.clock = self.reactor
            self._orphan_check.start(1.0, now=False)

    def _link_to(self, server: ServerConfig) -> None:
        if server.id == self.app.server_id:
            return
        link = NodeLink(self.app.server_id, server.id, self.app.cluster.secret, self._connect(server),
                        self.reactor, self.app.cluster.rpc_timeout)
        link.listeners.append(self._link_changed)
        if self.app.metrics.enabled:
            link.batch_sizes = self.app.metrics.batch_sizes
        self.links[server.id] = link
        link.start()

    def _servers_changed(self, added: list[ServerConfig], removed: list[ServerConfig]) -> None:
        for server in removed:
            link = self.links.pop(server.id, None)
            if link is not None:
                link.stop()
        for server in added:
            self._link_to(server)

    def stopService(self) -> Deferred[None]:  # type: ignore[override]
        super().stopService()
        if self._servers_changed in self.app.registry.listeners:
            self.app.registry.listeners.remove(self._servers_changed)
        self.recovery.stop()
        if self._orphan_check is not None and self._orphan_check.running:
            self._orphan_check.stop()
        links = [*self.links.values(), *([self.master_link] if self.master_link else [])]
        self.links.clear()
        port, self._port = self._port, None
        waits = [link.stop() for link in links]
        # Peers' links to this server go down now, as they would if the
        # process ended, rather than when it ends.
        for avatar in list(self.node_server.peers):
            if avatar.mind is not None:
                avatar.mind.broker.transport.loseConnection()
        if self.discovery is not None and self.discovery.running:
            waits.append(self.discovery.stopService())
        if port is not None:
            waits.append(maybeDeferred(port.stopListening))
        return DeferredList(waits).addCallback(lambda _: None)

    def _check_parent(self, parent: int) -> None:
        # A master that dies leaves its servers serving: this one's output,
        # piped to the master, now goes to a file; its master link keeps
        # trying, and a new master adopts it (gamenet.cluster.adopt).
        if os.getppid() != parent:
            assert self._orphan_check is not None
            self._orphan_check.stop()
            path = os.path.join(run_directory(self.app.cluster), f"{self.app.server_id}.log")
            if not detach_output(path):
                path = "nowhere"
            log.warn("{server_id}: the master is gone; serving on, logging to {path}",
                     server_id=self.app.server_id, path=path)

    def _peer_logged_in(self, peer_id: str) -> None:
        # A peer that links to this server is running: link back to it now
        # rather than when the backoff says, so that it is routed to as
        # soon as it can answer.
        link = self.links.get(peer_id)
        if link is not None:
            link.retry_now()

    def _link_changed(self, peer_id: str, up: bool) -> None:
        link = self.links.get(peer_id)
        if link is None or not link.up:
            # Gone: what comes back on this link is a new process, not draining.
            self._draining.discard(peer_id)
        if up and peer_id not in self._draining:
            self._available.add(peer_id)
        else:
            self._available.discard(peer_id)
        self._availability_changed()

    def _availability_changed(self) -> None:
        self._available_by_type.clear()
        if not self._master_membership:
            self._membership_changed(sorted(self._available - {self.app.server_id}))

    def link_available(self, peer_id: str) -> bool:
        """
        Whether calls are routed to C{peer_id} now: its link is up, it
        answers, and it has not said it drains.
        """
        return peer_id in self._available

    def _membership_changed(self, ids: list[str]) -> None:
        new = set(ids) - {self.app.server_id}
        added, removed = new - self.membership, self.membership - new
        self.membership = new
        if added:
            self.app.emit("add_servers", [self.app.registry.get(i) for i in sorted(added) if i in self.app.registry])
        if removed:
            self.app.emit("remove_servers", sorted(removed))

    # Routing

    def available(self, server_type: str) -> list[ServerConfig]:
        """
        The servers of a type that can take calls now (their link is up and
        the peer answers, or it is this server), sorted by id.
        """
        servers = self._available_by_type.get(server_type)
        if servers is None:
            # By id, so that every server of the cluster sees the same order,
            # whatever order discovery told it of them.
            servers = self._available_by_type[server_type] = tuple(sorted(
                (server for server in self.app.servers_by_type(server_type) if server.id in self._available),
                key=lambda server: server.id,
            ))
        return list(servers)

    def reachable(self, server_type: str) -> list[ServerConfig]:
        """
        The servers of a type that calls reach now, draining ones included
        (their link is up, or it is this server), sorted by id: those a push
        to every client must reach, where L{available} says where new work goes.
        """
        local_id = self.app.server_id
        return sorted(
            (server for server in self.app.servers_by_type(server_type)
             if server.id == local_id or (server.id in self.links and self.links[server.id].up)),
            key=lambda server: server.id,
        )

    def _forget_available(self, added: list[ServerConfig], removed: list[ServerConfig]) -> None:
        self._available_by_type.clear()

    def pick(self, server_type: str, route_param: Any, route: str = "", body: Any = None) -> ServerConfig:
        """
        The server of C{server_type} that serves C{route_param} (for a call
        of C{route} with C{body}, which route functions may look at; see
        L{routing.router}).

        @raise Unavailable: none is available.
        """
        return routing.pick(self.app.routers.get(server_type), server_type, route_param,
                            self.available(server_type), route, body)

    def forwarder(self, route: str) -> Forwarder | None:
        """
        The dispatcher's fallback: a L{Forwarder} for routes of other server
        types of the cluster (registered now, or in the cluster file, so that
        a type whose servers are all gone answers 503 rather than 404);
        C{None} for unknown types and C{sys}.
        """
        server_type = route.split(".", 1)[0]
        if server_type in ("sys", self.app.server_type):
            return None
        if server_type not in self._file_types and not self.app.servers_by_type(server_type):
            return None
        return Forwarder(self, server_type)

    # Outgoing calls

    def call_remote(self, server_id: str, route: str, args: list[Any]) -> Deferred[Any]:
        """
        Call a remote on one server, through the C{rpc_before}/C{rpc_after} hooks.
        """
        return Deferred.fromCoroutine(self._rpc(RpcCall(server_id, route, args)))

    async def _rpc(self, call: RpcCall) -> Any:
        hooks = self.app.hooks.for_route(call.route)
        try:
            for hook in hooks.rpc_before:
                await settle(hook(call))
            payload = wire.encode_call(call.route, call.args)
            if call.server_id == self.app.server_id:
                call.result = serializer.loads(await self._run_local(payload))
            else:
                link = self.links.get(call.server_id)
                if link is None:
                    raise GamenetError(f"no server {call.server_id}", 404)
                call.result = serializer.loads(await link.call(wire.RPC, payload, call.route))
        except Exception as e:
            call.error = e
        self.app.metrics.rpc_done(call.route, call.error)
        for hook in hooks.rpc_after:
            await settle(hook(call))
        if call.error is not None:
            raise call.error
        return call.result

    def sys_call(self, frontend_id: str, name: str, args: list[Any]) -> Deferred[Any]:
        """
        A session operation on a frontend's sys remote.
        """
        if frontend_id == self.app.server_id:
            if self.sys is None:
                return fail(GamenetError(f"{frontend_id} is not a frontend", 400))
            return maybeDeferred(self.sys.call, name, args)
        link = self.links.get(frontend_id)
        if link is None:
            return fail(GamenetError(f"no server {frontend_id}", 404))
        return link.call(wire.SYS, wire.encode_call(name, args), f"sys.{name}").addCallback(serializer.loads)

    # Incoming calls (the node server's inbox)

    def receive(self, peer_id: str, kind: int, payload: bytes) -> Deferred[bytes] | None:
        """
        Run one call from C{peer_id}.
        """
        if kind == wire.FORWARD or kind == wire.NOTIFY:
            return run_forwarded(self, kind, payload)
        if kind == wire.PING:
            return succeed(b"")
        if kind == wire.DRAIN:
            return self._peer_drains(peer_id)
        name, args = wire.decode_call(payload)
        if kind == wire.RPC:
            return Deferred.fromCoroutine(self._run_remote(name, args))
        if kind == wire.SYS:
            if self.sys is None:
                return fail(GamenetError(f"{self.app.server_id} is not a frontend", 400))
            return maybeDeferred(self.sys.call, name, args).addCallback(serializer.dumps)
        return fail(GamenetError(f"unknown call kind {kind}", 400))

    async def _run_local(self, payload: bytes) -> bytes:
        # A call to this very server fails as a call to another one would.
        try:
            return await self._run_remote(*wire.decode_call(payload))
        except Exception as e:
            if not isinstance(e, GamenetError):
                log.failure("local remote call failed on {server_id}", server_id=self.app.server_id)
                e = GamenetError()
            raise RemoteError(e.message, e.code, type(e).__name__, self.app.server_id) from None

    # Drain

    def _peer_drains(self, peer_id: str) -> Deferred[bytes]:
        # Route nothing new to the peer, and answer once a ping sent after
        # every call already routed to it is answered: the link delivers in
        # order, so those calls have reached the peer by then.
        if peer_id not in self._draining:
            log.info("{server_id}: {peer_id} is draining; routing around it", server_id=self.app.server_id,
                     peer_id=peer_id)
        self._draining.add(peer_id)
        self._available.discard(peer_id)
        self._availability_changed()
        link = self.links.get(peer_id)
        if link is None or not link.up:
            return succeed(b"")
        return link.call(wire.PING, b"", "drain ping").addBoth(lambda _: b"")

    async def leave(self, timeout: float) -> None:
        """
        Leave routing: from now on this server is L{draining}, routes none of
        its own calls to itself, and tells every peer (L{wire.DRAIN}), which
        routes no new call to it. Fires once every peer has answered, so that
        every call a peer routed here before has arrived (or C{timeout}
        seconds have passed).
        """
        self.draining = True
        self._available.discard(self.app.server_id)
        self._availability_changed()
        calls = [link.call(wire.DRAIN, b"", "drain") for link in self.links.values() if link.up]
        if calls:
            await wait_at_most(DeferredList(calls, consumeErrors=True), timeout, self.reactor)

    @property
    def idle(self) -> bool:
        """
        Whether no call from a peer is being served and no call of this
        server awaits its result (pings aside).
        """
        return not self.node_server.in_flight and not any(link.busy for link in self.links.values())

    async def drain(self, timeout: float = 2.0) -> None:
        """
        Wait until the calls from peers being served have answers and the
        calls already sent have results (or C{timeout} passes), so that
        work started by closing clients reaches other servers.
        """
        deadline = self.reactor.seconds() + timeout
        while not self.idle and self.reactor.seconds() < deadline:
            await deferLater(self.reactor, 0.05, lambda: None)

    async def _run_remote(self, route: str, args: list[Any]) -> bytes:
        function = self.remotes.get(route)
        if function is None:
            raise RouteNotFound(f"no remote {route} on {self.app.server_id}")
        return serializer.dumps(await settle(function(*args)))
