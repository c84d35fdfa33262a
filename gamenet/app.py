"""
The Application: one server of the cluster, its settings, components and services.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, Callable, Iterable

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger

from ._pomelo import RESERVED, PomeloApplication
from ._settle import settle
from .channel import MOVE_ROUTE, ChannelService
from .channel_routing import FORGET_ROUTE
from .cluster import BackendSessionService, ClusterNode
from .cluster.recovery import Recovery
from .cluster.registry import ServerCalls, ServerRegistry
from .cluster.routing import router, warn_unknown_types
from .component import CONFIGURE, HANDLER, HTTP, REMOTE, SESSION_LEARNER, STORAGE, Bound
from .config import ClusterConfig, ServerConfig
from .connector import Frontend
from .connector.wiring import attach as attach_frontend
from .cron import attach as attach_crons
from .dispatch import Dispatcher
from .global_channel import GlobalChannelService
from .hooks import HookCalls, HookRegistry
from .http import attach as attach_http
from .interfaces import IRegistration, ISessionLearner
from .metrics import attach as attach_metrics
from .protocol.routes import RouteDictionary
from .session import SessionService
from .session.unique import attach as attach_unique
from .transaction import attach as attach_transactions

log = Logger()


def _matches(value: str, pattern: str | None) -> bool:
    return pattern is None or pattern in ("all", "*") or value in pattern.split("|")


class Application(PomeloApplication, ServerCalls, HookCalls, MultiService):
    """
    One gamenet server (Pomelo's C{app}, in Python names; the calls that are
    only Pomelo's other names for what it has are in L{PomeloApplication},
    those on the servers it knows in L{ServerCalls}, those adding filters and
    hooks in L{HookCalls}).

    @ivar cluster: the whole cluster file.
    @ivar registry: the servers this server knows now (see L{servers}).
    @ivar env: the environment name (C{--env}, else C{[cluster] env}).
    @ivar sessions: the L{SessionService} (frontends only, else C{None}).
    @ivar frontend: the client connections' shared state (frontends only).
    @ivar unique_sessions: with C{unique_session = cluster}, what keeps one
        session per uid across the frontends of its type (see
        L{gamenet.session.unique}); else C{None}.
    @ivar dispatcher: serves this server's routes.
    @ivar dictionary: the cluster's route dictionary.
    @ivar hooks: filters and hooks (see L{gamenet.hooks}).
    @ivar components: every component made for this server.
    @ivar node: this server's L{ClusterNode}: node port, links, forwarding.
    @ivar channels: this server's L{ChannelService}.
    @ivar metrics: what this server counts, and its C{/metrics} (see L{gamenet.metrics}).
    @ivar http: its HTTP routes, served on its C{http_port} (see L{gamenet.http}).
    @ivar crons: its scheduled jobs (see L{gamenet.cron}).
    @ivar transactions: its transactions and their log (see L{gamenet.transaction}).
    """

    def __init__(
        self,
        cluster: ClusterConfig,
        server_id: str,
        registrations: Iterable[IRegistration] = (),
        env: str | None = None,
        reactor: Any = None,
        node_connect: Callable[[ServerConfig], Callable[[Any], Deferred[Any]]] | None = None,
        use_master: bool = False,
    ) -> None:
        """
        @param registrations: the components, usually found as plugins.
        @param env: overrides the cluster file's environment.
        @param node_connect: how node links connect, given the peer's
            configuration (tests link servers in memory); TCP by default.
        @param use_master: log in to the cluster's master for membership.
        """
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor  # type: ignore[no-redef]
        self.reactor = reactor
        self.cluster = cluster
        self.server = cluster.server(server_id)
        self.registry = ServerRegistry(cluster.servers)
        self.setName(server_id)
        self.env = env or cluster.env
        self.hooks = HookRegistry()
        self.dispatcher = Dispatcher(server_id, self.hooks, reactor)
        self.components: list[Bound] = []
        self._registrations = list(registrations)
        self._settings: dict[str, Any] = {}
        self._listeners: dict[str, list[Callable[..., Any]]] = {}
        self._lifecycle: dict[str, list[Callable[[Application], Any]]] = {
            "before_startup": [], "after_startup": [], "before_shutdown": [],
        }
        self.routers: dict[str, Callable[..., Any]] = {}
        self.dictionary = RouteDictionary.empty()
        self.sessions: SessionService | None = None
        self.frontend: Frontend | None = None
        self._handshake_validators: list[Callable[..., Any]] = []
        self._prepared = False
        if self.server.frontend:
            options = self.server.options
            assert options is not None
            self.sessions = SessionService(server_id, options.single_session, self.emit)
        self.channels = ChannelService(self)
        self.node = ClusterNode(self, node_connect, use_master)
        self.node.remotes[MOVE_ROUTE] = self.channels.move_member
        self.node.remotes[FORGET_ROUTE] = self.channels.forget
        self.node.setServiceParent(self)
        self.unique_sessions = attach_unique(self)
        self.metrics = attach_metrics(self)
        self.http = attach_http(self)
        self.crons = attach_crons(self)
        self.transactions = attach_transactions(self)
        if self.server.frontend:
            self.dispatcher.fallback = self.node.forwarder

    def __repr__(self) -> str:
        return f"<Application {self.server_id} ({self.server_type})>"

    # Queries

    @property
    def server_id(self) -> str:
        """
        This server's id.
        """
        return self.server.id

    @property
    def server_type(self) -> str:
        """
        This server's type.
        """
        return self.server.type

    @property
    def current_server(self) -> ServerConfig:
        """
        This server's configuration.
        """
        return self.server

    @property
    def rpc(self) -> Any:
        """
        Remote calls: C{app.rpc.<serverType>.<remoteName>.<method>(route_param, *args)}
        (see L{gamenet.cluster.rpc}).
        """
        return self.node.rpc

    @property
    def backend_sessions(self) -> BackendSessionService:
        """
        Acts on sessions held by frontends (see L{gamenet.cluster.backend}).
        """
        return self.node.backend_sessions

    @property
    def recovery(self) -> Recovery:
        """
        State rebuilt from the frontends' live sessions: C{declare} a
        backend's groups, C{get} one (see L{gamenet.cluster.recovery}).
        """
        return self.node.recovery

    @cached_property
    def global_channels(self) -> GlobalChannelService:
        """
        Channels whose members are kept in the cluster's Redis, so that any
        server can push to them (see L{gamenet.global_channel}); made on first
        use, with its own Redis connection pool closed when the server stops.
        """
        return GlobalChannelService(self)

    # Settings

    def set(self, key: str, value: Any) -> Application:
        """
        Store a setting; returns the app, so calls chain.
        """
        self._settings[key] = value
        return self

    def get(self, key: str, default: Any = None) -> Any:
        """
        A setting, else one of Pomelo's reserved keys (C{serverId},
        C{sessionService}... see L{gamenet._pomelo.RESERVED}), else C{default}.
        """
        if key in self._settings:
            return self._settings[key]
        reserved = RESERVED.get(key)
        return reserved(self) if reserved is not None else default

    def enable(self, key: str) -> Application:
        """
        Set a flag.
        """
        return self.set(key, True)

    def disable(self, key: str) -> Application:
        """
        Clear a flag.
        """
        return self.set(key, False)

    def enabled(self, key: str) -> bool:
        """
        Whether a setting is true (Pomelo's C{!!app.get(key)}): set with a
        true value, or a reserved key that has one.
        """
        return bool(self.get(key))

    def disabled(self, key: str) -> bool:
        """
        Whether a flag is not set.
        """
        return not self.enabled(key)

    def configure(self, *args: Any) -> Application:
        """
        Call C{fn(app)} now when this server's environment and type match,
        as Pomelo's C{configure(fn)}, C{configure(env, fn)} and
        C{configure(env, server_type, fn)}; either may be C{None}, C{"all"}
        or C{"*"}, or name several as C{"production|development"}.

        @raise TypeError: not one to three arguments ending with a function.
        """
        if not 1 <= len(args) <= 3 or not callable(args[-1]):
            raise TypeError("configure takes ([env, [server_type,]] fn), fn last")
        *match, fn = args
        env, server_type = (*match, None, None)[:2]
        if _matches(self.env, env) and _matches(self.server_type, server_type or None):
            fn(self)
        return self

    # Components

    def register(self, *registrations: IRegistration) -> Application:
        """
        Add components from Python, besides those found as plugins.

        @raise RuntimeError: the server has started.
        """
        if self._prepared:
            raise RuntimeError("components are registered before the server starts")
        self._registrations.extend(registrations)
        return self

    def _handler_routes(self) -> list[str]:
        return [
            f"{r.server_type}.{r.name}.{method}"
            for r in self._registrations
            if r.kind == HANDLER
            for method in r.method_names()
        ]

    def _make_components(self) -> None:
        for registration in self._registrations:
            if registration.kind == CONFIGURE:
                self.configure(registration.env, registration.server_type, registration.target)
        for registration in self._registrations:
            if registration.kind in (CONFIGURE, STORAGE) or registration.server_type not in (self.server_type, None):
                continue
            bound = self.http.add(registration) if registration.kind == HTTP else registration.bind(self)
            self.components.append(bound)
            if registration.kind == HANDLER:
                for method, function in bound.methods.items():
                    self.dispatcher.add(f"{self.server_type}.{registration.name}.{method}", function)
            elif registration.kind == REMOTE:
                for method, function in bound.methods.items():
                    self.node.remotes[f"{self.server_type}.{registration.name}.{method}"] = function
            elif registration.kind == SESSION_LEARNER and self.sessions is not None:
                if not ISessionLearner.providedBy(bound.instance):
                    raise TypeError(f"{bound.instance!r} does not provide ISessionLearner")
                self.sessions.learners.append(bound.instance)

    async def _lifecycle_all(self, method: str) -> None:
        for bound in self.components:
            function = getattr(bound.instance, method, None)
            if function is not None:
                await settle(function())

    def handshake(self, validator: Callable[..., Any]) -> Application:
        """
        Check each client handshake: C{validator(request)} gets the
        L{gamenet.protocol.handshake.HandshakeRequest}, raises a
        L{gamenet.errors.GamenetError} to refuse it with that code, or returns
        a value sent to the client as C{user} (or a Deferred of one).
        """
        self._handshake_validators.append(validator)
        return self

    def route(self, server_type: str, fn: Callable[..., Any]) -> Application:
        """
        Set the function that picks the server of C{server_type} for a call:
        C{fn(route_param, servers)}, C{fn(session, route, body, servers_by_id)}
        or an L{IRouter} (see L{gamenet.cluster.routing.router}).

        @raise TypeError: C{fn} has neither shape.
        """
        self.routers[server_type] = router(fn)
        return self

    # Lifecycle and events

    def before_startup(self, fn: Callable[[Application], Any]) -> Application:
        """
        Call C{fn(app)} when the server starts, before its components' C{init}.
        """
        self._lifecycle["before_startup"].append(fn)
        return self

    def after_startup(self, fn: Callable[[Application], Any]) -> Application:
        """
        Call C{fn(app)} once the server is serving.
        """
        self._lifecycle["after_startup"].append(fn)
        return self

    def before_shutdown(self, fn: Callable[[Application], Any]) -> Application:
        """
        Call C{fn(app)} when the server begins to stop, clients still connected.
        """
        self._lifecycle["before_shutdown"].append(fn)
        return self

    def on(self, event: str, fn: Callable[..., Any]) -> Application:
        """
        Listen to an application event: C{start_server}, C{stop_server},
        C{bind_session}, C{unbind_session}, C{close_session},
        C{resume_session} (with the session, and the frontend id and session
        id it had before it was handed over here), C{add_servers}
        (with a list of server configurations), C{remove_servers} (with a
        list of ids), or any a game emits.
        """
        self._listeners.setdefault(event, []).append(fn)
        return self

    def emit(self, event: str, *args: Any) -> None:
        """
        Call every listener of C{event}; a listener that raises is logged.
        """
        for fn in self._listeners.get(event, ()):
            try:
                fn(*args)
            except Exception:
                log.failure("listener of {event} failed on {server_id}", event=event, server_id=self.server_id)

    async def _run_lifecycle(self, stage: str) -> None:
        for fn in self._lifecycle[stage]:
            await settle(fn(self))

    # Service

    def _prepare(self) -> None:
        if self._prepared:
            return
        self._prepared = True
        self.dictionary = RouteDictionary.build(self._handler_routes(), self.cluster.extra_routes)
        self.dispatcher.known_routes = self.dictionary.route_to_code
        self._make_components()
        warn_unknown_types(self.cluster, self.routers)
        if self.sessions is not None:
            self.frontend = attach_frontend(self, self._registrations, self._handshake_validators)

    def privilegedStartService(self) -> None:
        self._prepare()
        super().privilegedStartService()

    def startService(self) -> Deferred[None]:  # type: ignore[override]
        """
        Make the components, run their lifecycle, then serve.

        @return: a Deferred firing when the server is serving.
        """
        self._prepare()
        return Deferred.fromCoroutine(self._start())

    async def _start(self) -> None:
        await self._run_lifecycle("before_startup")
        await self._lifecycle_all("init")
        await self._lifecycle_all("after_init")
        super().startService()
        await self._run_lifecycle("after_startup")
        self.emit("start_server", self.server_id)
        log.info("{server_id} ({server_type}) started", server_id=self.server_id, server_type=self.server_type)

    def stopService(self) -> Deferred[None]:  # type: ignore[override]
        """
        Stop in order: the drain (see L{_drain}), shutdown hooks, components'
        C{before_shutdown}, clients kicked and ports closed, components' C{shutdown}.
        """
        return Deferred.fromCoroutine(self._stop())

    async def _drain(self, timeout: float) -> None:
        """
        Leave routing on every other server, then: a frontend stops accepting
        connections and serves its clients until they have all left or
        C{timeout} has passed; a backend finishes the calls it serves and
        its own calls, within the same C{timeout}.
        """
        log.info("{server_id} draining (at most {timeout:g}s)", server_id=self.server_id, timeout=timeout)
        deadline = self.reactor.seconds() + timeout
        listener = self.namedServices.get("clients")
        accepting = listener.stop_accepting() if listener is not None else None
        await self.node.leave(timeout)
        if accepting is not None:
            await accepting
        remaining = max(0.0, deadline - self.reactor.seconds())
        if self.frontend is not None:
            await self.frontend.drain(remaining)
        else:
            await self.node.drain(remaining)

    async def _stop(self) -> None:
        if self.running and self.cluster.drain_timeout:
            await self._drain(self.cluster.drain_timeout)
        try:
            await self._run_lifecycle("before_shutdown")
            await self._lifecycle_all("before_shutdown")
        except Exception:
            log.failure("before_shutdown failed on {server_id}", server_id=self.server_id)
        if self.running:
            # In order: web and client ports (clients are kicked, their close
            # callbacks run), then the node once the calls they made are answered.
            Service.stopService(self)
            for child in reversed(list(self)):
                if child is self.node:
                    await self.node.drain()
                await maybeDeferred(child.stopService)
        try:
            await self._lifecycle_all("shutdown")
        except Exception:
            log.failure("shutdown failed on {server_id}", server_id=self.server_id)
        self.emit("stop_server", self.server_id)
        log.info("{server_id} stopped", server_id=self.server_id)
