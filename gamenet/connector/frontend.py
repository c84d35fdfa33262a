"""
What the connections of one frontend share: options, codec tables, limits and liveness.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, Callable

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger

from ..config import FrontendOptions
from ..hooks import DROP, HookRegistry
from ..protocol import message, package, serializer
from ..protocol.handshake import HandshakeResponder
from ..protocol.protobuf import Protos, load_dir
from ..protocol.routes import RouteDictionary

from .blocklist import Blocklist
from .connection import State

if TYPE_CHECKING:
    from ..dispatch import Dispatcher
    from ..session import SessionService
    from .connection import Connection

log = Logger()

TICK = 1.0  # seconds between liveness sweeps; also the rate limit's window
ANSWER_GRACE = 5.0  # seconds a drained frontend waits for the answers to requests in flight before it kicks


def wait_at_most(d: Deferred[Any], timeout: float, clock: IReactorTime) -> Deferred[None]:
    """
    A Deferred firing with C{None} when C{d} fires (whatever its result) or
    C{timeout} seconds have passed, whichever comes first; C{d} is not cancelled.
    """
    done: Deferred[None] = Deferred()

    def fire(_: Any = None) -> None:
        if timer.active():
            timer.cancel()
        if not done.called:
            done.callback(None)

    timer = clock.callLater(max(0.0, timeout), fire)
    d.addBoth(fire)
    return done


class Frontend:
    """
    The shared state of one frontend server's client connections.

    @ivar tick: a counter advanced every L{TICK} seconds; connections note the
        tick of their last package, so that the hot path reads no clock.
    @ivar connections: every open connection, handshake done or not.
    @ivar pending: sockets whose transport is not known yet (the hybrid
        connector is still reading their first bytes).
    @ivar blocklist: the client addresses refused at connect (see L{set_blocked}).
    @ivar draining: whether the frontend is draining (see L{drain}): it
        admits no connection, and L{stop} answers requests in flight before
        it kicks.
    @ivar metrics: counters: C{connections}, C{connections_refused}, C{connections_blocked},
        C{rate_limited}, C{slow_consumers}, C{protocol_errors},
        C{handshake_timeouts}, C{heartbeat_timeouts}, C{handshakes_refused},
        C{requests}, C{error_responses}, C{responses_dropped}.
    @ivar kicks: kicks by reason, as C{KICK_REASONS} in L{gamenet.connector.connection} names them.
    @ivar protos: the protobuf schemas of C{options.protos_dir}, or C{None}
        when every body is JSON.
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
        self.protos: Protos | None = load_dir(options.protos_dir) if options.protos_dir else None
        self._push_codecs = self.protos.server if self.protos is not None else {}
        self.responder = HandshakeResponder(options.heartbeat, dictionary if options.use_dict else None, self.protos)
        self.code_to_route = dictionary.code_to_route if options.use_dict else {}
        self._route_to_code = dictionary.route_to_code if options.use_dict else {}
        self.tick = 0
        self.connections: set[Connection] = set()
        self.pending: dict[Any, int] = {}
        self.metrics: Counter[str] = Counter()
        self.kicks: Counter[str] = Counter()
        self.blocklist = Blocklist()
        self.draining = False
        self._emptied: list[Deferred[None]] = []
        self._sweeper = LoopingCall(self._sweep)
        self._sweeper.clock = clock
        sessions.encode_push = self._shared_push

    def start(self) -> None:
        """
        Start the liveness sweeps.
        """
        self._sweeper.start(TICK, now=False)

    def drain(self, timeout: float) -> Deferred[None]:
        """
        Admit no more connections, and keep serving the connected ones.

        @return: a Deferred firing once every connection has closed, or
            C{timeout} seconds have passed.
        """
        self.draining = True
        if not self.connections:
            return succeed(None)
        emptied: Deferred[None] = Deferred()
        self._emptied.append(emptied)
        return wait_at_most(emptied, timeout, self.clock)

    def stop(self, reason: str = "server shutting down") -> Deferred[Any]:
        """
        Stop the sweeps and kick every connection; after a L{drain}, each
        connection once its requests in flight are answered (or
        L{ANSWER_GRACE} has passed).

        @return: a Deferred firing when every connection has closed.
        """
        if self._sweeper.running:
            self._sweeper.stop()
        if self.sessions.resumer is not None:
            self.sessions.resumer.stop(reason)
        for socket in list(self.pending):
            socket.transport.abortConnection()
        if not self.connections:
            return succeed(None)
        if self.draining:
            return Deferred.fromCoroutine(self._kick_answered(reason))
        return DeferredList([connection.kick(reason) for connection in list(self.connections)])

    async def _kick_answered(self, reason: str) -> None:
        deadline = self.clock.seconds() + ANSWER_GRACE
        while True:
            waiting = False
            for connection in list(self.connections):
                if connection.closing:
                    continue
                if connection.in_flight > 0 and self.clock.seconds() < deadline:
                    waiting = True
                else:
                    connection.kick(reason)
            if not waiting:
                break
            await deferLater(self.clock, 0.05, lambda: None)
        await DeferredList([connection.kick(reason) for connection in list(self.connections)])

    def set_blocked(self, networks: list[str]) -> None:
        """
        Refuse connections from these addresses and networks from now on,
        and kick the connected clients they hold C{"address blocked"}.

        @raise ValueError: an entry is not an address or a network; the
            block list is unchanged.
        """
        self.blocklist = blocklist = Blocklist(networks)
        log.info("{server_id} blocks {count} address(es) and network(s)", server_id=self.server_id,
                 count=len(blocklist))
        for connection in list(self.connections):
            if blocklist.blocks(connection.link.peer[0]):
                log.info("{server_id} kicks blocked client {peer}", server_id=self.server_id,
                         peer=connection.link.peer)
                connection.kick("address blocked")

    def admit(self, address: Any = None) -> bool:
        """
        Whether to accept a connection from C{address} (an C{IAddress}):
        not from a blocked address, not while draining, and under
        C{max_connections}; counts a refusal.
        """
        host = getattr(address, "host", None)
        if host and self.blocklist.blocks(host):
            self.metrics["connections_blocked"] += 1
            log.info("{server_id} refused a connection from blocked address {host}", server_id=self.server_id,
                     host=host)
            return False
        if self.draining:
            return False
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
        if not self.connections and self._emptied:
            emptied, self._emptied = self._emptied, []
            for d in emptied:
                d.callback(None)

    def push_package(self, route: str, msg: Any) -> bytes:
        """
        Encode a push as a package, its route compressed when in the dictionary,
        its body protobuf when the route has a server schema (C{msg} as JSON
        bytes is read first).

        @raise ValueError: C{msg} does not fit the route's schema, or is not JSON-able.
        """
        codec = self._push_codecs.get(route)
        if codec is not None:
            body = codec.dumps(serializer.loads(msg) if isinstance(msg, bytes) else msg)
        else:
            body = msg if isinstance(msg, bytes) else serializer.dumps(msg)
        return package.encode(package.DATA, message.encode_push(route, body, self._route_to_code.get(route)))

    def session_push(self, session: Any, route: str, msg: Any) -> bytes | None:
        """
        A push to one session as a package, through the route's C{send}
        hooks; C{None} when a hook dropped it.

        @raise ValueError: as L{push_package}.
        """
        for hook in self.hooks.for_route(route).send:
            msg = hook(session, route, msg)
            if msg is DROP:
                return None
        return self.push_package(route, msg)

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
