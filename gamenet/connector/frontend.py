"""
What the connections of one frontend share: options, codec tables, limits and liveness.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, Callable

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ..config import FrontendOptions
from ..hooks import HookRegistry
from ..protocol import message, package, serializer
from ..protocol.handshake import HandshakeResponder
from ..protocol.routes import RouteDictionary

from .connection import State

if TYPE_CHECKING:
    from ..dispatch import Dispatcher
    from ..session import SessionService
    from .connection import Connection

log = Logger()

TICK = 1.0  # seconds between liveness sweeps; also the rate limit's window


class Frontend:
    """
    The shared state of one frontend server's client connections.

    @ivar tick: a counter advanced every L{TICK} seconds; connections note the
        tick of their last package, so that the hot path reads no clock.
    @ivar connections: every open connection, handshake done or not.
    @ivar pending: sockets whose transport is not known yet (the hybrid
        connector is still reading their first bytes).
    @ivar metrics: counters: C{connections}, C{connections_refused},
        C{rate_limited}, C{slow_consumers}, C{protocol_errors},
        C{handshake_timeouts}, C{heartbeat_timeouts}, C{handshakes_refused},
        C{requests}, C{error_responses}, C{responses_dropped}.
    """

    def __init__(
        self,
        server_id: str,
        options: FrontendOptions,
        dictionary: RouteDictionary,
        dispatcher: Dispatcher,
        sessions: SessionService,
        hooks: HookRegistry,
        clock: IReactorTime,
    ) -> None:
        self.server_id = server_id
        self.options = options
        self.dispatcher = dispatcher
        self.sessions = sessions
        self.hooks = hooks
        self.clock = clock
        self.handshake_validators: list[Callable[..., Any]] = []
        self.responder = HandshakeResponder(options.heartbeat, dictionary if options.use_dict else None)
        self.code_to_route = dictionary.code_to_route if options.use_dict else {}
        self._route_to_code = dictionary.route_to_code if options.use_dict else {}
        self.tick = 0
        self.connections: set[Connection] = set()
        self.pending: dict[Any, int] = {}
        self.metrics: Counter[str] = Counter()
        self._sweeper = LoopingCall(self._sweep)
        self._sweeper.clock = clock
        sessions.encode_push = self._shared_push

    def start(self) -> None:
        """
        Start the liveness sweeps.
        """
        self._sweeper.start(TICK, now=False)

    def stop(self, reason: str = "server shutting down") -> Deferred[Any]:
        """
        Stop the sweeps and kick every connection.

        @return: a Deferred firing when every connection has closed.
        """
        if self._sweeper.running:
            self._sweeper.stop()
        for socket in list(self.pending):
            socket.transport.abortConnection()
        if not self.connections:
            return succeed(None)
        return DeferredList([connection.kick(reason) for connection in list(self.connections)])

    def admit(self) -> bool:
        """
        Whether one more connection fits under C{max_connections}; counts a refusal.
        """
        if len(self.connections) + len(self.pending) < self.options.max_connections:
            return True
        self.metrics["connections_refused"] += 1
        log.warn("{server_id} refused a connection: {limit} connections open", server_id=self.server_id,
                 limit=self.options.max_connections)
        return False

    def opened(self, connection: Connection) -> None:
        """
        A connection started.
        """
        self.connections.add(connection)
        self.metrics["connections"] += 1

    def closed(self, connection: Connection) -> None:
        """
        A connection ended.
        """
        self.connections.discard(connection)

    def push_package(self, route: str, msg: Any) -> bytes:
        """
        Encode a push as a package, its route compressed when in the dictionary.
        """
        body = msg if isinstance(msg, bytes) else serializer.dumps(msg)
        return package.encode(package.DATA, message.encode_push(route, body, self._route_to_code.get(route)))

    def _shared_push(self, route: str, msg: Any) -> bytes | None:
        if self.hooks.for_route(route).send:
            return None
        return self.push_package(route, msg)

    def _sweep(self) -> None:
        self.tick = tick = self.tick + 1
        options = self.options
        handshake_ticks = options.handshake_timeout / TICK
        idle_ticks = 2 * options.heartbeat / TICK
        for socket, opened in list(self.pending.items()):
            if tick - opened > handshake_ticks:
                self.metrics["handshake_timeouts"] += 1
                del self.pending[socket]
                socket.transport.abortConnection()
        # Every connection, every tick: the cheap test of the tick first, as
        # nearly every connection is within its time.
        working = State.WORKING
        for connection in list(self.connections):
            if connection.state < working:
                if tick - connection.opened_tick > handshake_ticks and not connection.closing:
                    self.metrics["handshake_timeouts"] += 1
                    connection.kick("handshake timeout")
            elif idle_ticks and tick - connection.last_tick > idle_ticks and not connection.closing:
                self.metrics["heartbeat_timeouts"] += 1
                connection.kick("heartbeat timeout")
