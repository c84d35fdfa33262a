"""
Every limit of a frontend, crossed over real loopback sockets: each test
configures a small limit, crosses it with one client, checks the documented
outcome, and checks that another client connected all along still gets answers.
"""

from __future__ import annotations

from typing import Any, Callable

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import TestCase

from gamenet import Handler, handler
from gamenet.client import Client, ClientError
from gamenet.protocol import message, package, serializer
from gamenet.testing import client_port, cluster_config, frontend, start_server

WAIT = 5.0  # the longest any single wait in these tests may take


class Game(Handler):
    def echo(self, msg, session):
        return msg

    def whoami(self, msg, session):
        return {"transport": session.transport}

    def flood(self, msg, session):
        """
        Push C{per_step} messages of C{size} bytes on each reactor turn, C{steps}
        times, until the session stops taking them.
        """
        chunk = "x" * msg["size"]

        def step(left):
            for _ in range(msg["per_step"]):
                if not session.send("onFlood", chunk):
                    return
            if left:
                reactor.callLater(0, step, left - 1)

        reactor.callLater(0, step, msg["steps"])
        return {}


def handshake_bytes() -> bytes:
    return package.encode(package.HANDSHAKE, serializer.dumps({"sys": {"type": "raw", "version": "0"}}))


class _Watched:
    """
    What the raw clients share: every byte received, and waiting on a condition.
    """

    def _start(self) -> None:
        self.inbox = b""
        self.lost: Deferred[Any] = Deferred()
        self._waiters: list[Deferred[None]] = []

    def _changed(self) -> None:
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)

    def _received(self, data: bytes) -> None:
        self.inbox += data
        self._changed()

    def _gone(self, value: Any) -> None:
        if not self.lost.called:
            self.lost.callback(value)
        self._changed()

    @property
    def is_lost(self) -> bool:
        return self.lost.called

    def packages(self) -> list[tuple[int, bytes]]:
        """
        Every package received so far.
        """
        return package.PackageDecoder().feed(self.inbox)

    def kicks(self) -> list[str]:
        """
        The reasons of the kick packages received.
        """
        return [serializer.loads(body)["reason"] for t, body in self.packages() if t == package.KICK]

    async def until(self, predicate: Callable[[], bool], timeout: float = WAIT) -> None:
        """
        Wait until C{predicate()} holds, checked on each arrival and on close.

        @raise AssertionError: it did not within C{timeout} seconds.
        """
        deadline = reactor.seconds() + timeout
        while not predicate():
            remaining = deadline - reactor.seconds()
            if remaining <= 0:
                raise AssertionError(f"condition not met within {timeout} s; received {self.inbox[:200]!r}")
            d: Deferred[None] = Deferred()
            self._waiters.append(d)
            d.addTimeout(remaining, reactor)
            d.addErrback(lambda f: None)
            await d

    async def open(self, ack: bool = True) -> dict[str, Any]:
        """
        Send a handshake, wait for the answer, and ack it when C{ack}.
        """
        self.send(handshake_bytes())
        await self.until(lambda: any(t == package.HANDSHAKE for t, _ in self.packages()))
        answer = serializer.loads(next(body for t, body in self.packages() if t == package.HANDSHAKE))
        if ack:
            self.send(package.HANDSHAKE_ACK_PACKAGE)
        return answer


class RawTCP(_Watched, Protocol):
    """
    A TCP client that sends bytes as told and records what comes back.
    """

    def __init__(self) -> None:
        self._start()

    def dataReceived(self, data: bytes) -> None:
        self._received(data)

    def connectionLost(self, reason: Any = None) -> None:
        self._gone(None)

    def send(self, data: bytes) -> None:
        self.transport.write(data)

    def pause(self) -> None:
        """
        Stop reading, like a client whose game loop hangs.
        """
        self.transport.pauseProducing()

    def abort(self) -> None:
        self.transport.abortConnection()


class RawWebSocket(_Watched, WebSocketClientProtocol):
    """
    An Autobahn client that sends binary messages as told and records what
    comes back and the close code.
    """

    def __init__(self) -> None:
        super().__init__()
        self._start()
        self.opened: Deferred[None] = Deferred()
        self.close_code: int | None = None

    def onOpen(self) -> None:
        self.opened.callback(None)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self._received(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.close_code = code
        self._gone(code)

    def send(self, data: bytes, fragment_size: int | None = None) -> None:
        self.sendMessage(data, isBinary=True, fragmentSize=fragment_size)

    def pause(self) -> None:
        self.transport.pauseProducing()

    def abort(self) -> None:
        self.transport.abortConnection()


class LimitsBase:
    """
    A frontend with small limits and a client, C{self.other}, that must keep
    working while another client crosses a limit.

    @cvar server_transport: the frontend's C{transport} option.
    @cvar client_transport: what the clients speak, C{"websocket"} or C{"tcp"}.
    """

    server_transport = "hybrid"
    client_transport = "websocket"
    timeout = 15

    async def serve(self, **options: Any) -> None:
        """
        Start a frontend with C{options} and connect C{self.other}.
        """
        cluster = cluster_config(
            frontend("connector-1", "connector", transport=self.server_transport, **options),
            extra_routes=["onFlood"],
        )

        def configure(app):
            app.on("close_session", lambda session, reason: self._closed_sessions(session, reason))

        self.closes: list[tuple[int, str]] = []
        self._close_waiters: list[Deferred[None]] = []
        self.app = await start_server(cluster, "connector-1", [handler(Game, "connector")], configure=configure)
        self.addCleanup(self.app.stopService)
        self.port = client_port(self.app)
        self.metrics = self.app.frontend.metrics
        self.other = await self.client()
        await self.assertServing()

    def _closed_sessions(self, session: Any, reason: str) -> None:
        self.closes.append((session.id, reason))
        waiters, self._close_waiters = self._close_waiters, []
        for d in waiters:
            d.callback(None)

    async def session_closed(self, reason: str) -> None:
        """
        Wait until a session closes on the server with a reason containing C{reason}.
        """
        deadline = reactor.seconds() + WAIT
        while not any(reason in r for _, r in self.closes):
            remaining = deadline - reactor.seconds()
            if remaining <= 0:
                raise AssertionError(f"no session closed with {reason!r}; closes: {self.closes}")
            d: Deferred[None] = Deferred()
            self._close_waiters.append(d)
            d.addTimeout(remaining, reactor)
            d.addErrback(lambda f: None)
            await d

    async def client(self, **options: Any) -> Client:
        """
        A connected L{Client}, closed at cleanup.
        """
        client = await Client.connect(reactor, "127.0.0.1", self.port, self.client_transport, timeout=WAIT, **options)
        self.addCleanup(client.close)
        return client

    async def raw(self, transport: str | None = None, **options: Any) -> Any:
        """
        A raw client of C{transport} (the class's client transport by
        default), aborted at cleanup.
        """
        transport = transport or self.client_transport
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port, WAIT)
        if transport == "tcp":
            raw = await connectProtocol(endpoint, RawTCP())
        else:
            factory = WebSocketClientFactory(f"ws://127.0.0.1:{self.port}/")
            factory.protocol = RawWebSocket
            factory.setProtocolOptions(autoPingInterval=0, **options)
            raw = await endpoint.connect(factory)
            await raw.opened

        async def cleanup():
            if not raw.is_lost:
                raw.abort()
                await raw.lost

        self.addCleanup(cleanup)
        return raw

    async def assertServing(self) -> None:
        """
        C{self.other} is still connected and answered.
        """
        answer = await self.other.request("connector.game.whoami", {})
        self.assertTrue(answer["transport"].startswith(self.client_transport), answer)
        self.assertEqual(await self.other.request("connector.game.echo", {"still": "here"}), {"still": "here"})
        self.assertFalse(self.other.closed.called)

    async def flooded_until_slow(self, size: int, per_step: int) -> None:
        """
        A raw client asks C{connector.game.flood} for pushes of C{size}
        bytes, C{per_step} a step, and reads none: its session is closed as
        a slow consumer, counted, and C{self.other} is served all along.
        """
        offender = await self.raw()
        await offender.open()
        flood = serializer.dumps({"size": size, "per_step": per_step, "steps": 2000})
        offender.send(package.encode(package.DATA, message.encode(message.REQUEST, 1, "connector.game.flood", flood)))
        offender.pause()
        await self.session_closed("slow consumer")
        self.assertEqual(self.metrics["slow_consumers"], 1)
        await self.assertServing()

    async def closed(self, client: Client) -> str:
        """
        Wait for C{client} to be closed, at most L{WAIT} seconds; its close reason.
        """
        d = Deferred()
        client.closed.addCallback(lambda reason: d.callback(reason) or reason)
        d.addTimeout(WAIT, reactor)
        return await d

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """
        Poll C{predicate} every 10 ms until it holds, at most L{WAIT} seconds.
        """
        deadline = reactor.seconds() + WAIT
        while not predicate():
            self.assertLess(reactor.seconds(), deadline, "timed out")
            d: Deferred[None] = Deferred()
            reactor.callLater(0.01, d.callback, None)
            await d


class LimitsMixin(LimitsBase):
    """
    The limits every client meets, whatever its transport.
    """

    async def test_maxBodySize(self):
        """
        A package head declaring a body over C{max_body_size} is kicked with a
        reason naming the limit, then closed; a request within it is served.
        """
        await self.serve(max_body_size=100)
        self.assertEqual(await self.other.request("connector.game.echo", "x" * 60), "x" * 60)
        offender = await self.client()
        offender.send_raw(bytes((package.DATA, 0, 0x03, 0xE8)))
        self.assertEqual(await self.closed(offender), "data package of 1000 bytes exceeds the limit of 100")
        self.assertEqual(offender.kick_reason, "data package of 1000 bytes exceeds the limit of 100")
        self.assertEqual(self.metrics["protocol_errors"], 1)
        await self.assertServing()

    async def test_maxBodySizeRequest(self):
        """
        A request too large for C{max_body_size} fails on the client, which is kicked.
        """
        await self.serve(max_body_size=100)
        offender = await self.client()
        self.assertEqual(await offender.request("connector.game.echo", 1), 1)
        d = offender.request("connector.game.echo", "x" * 200)
        error = await self.assertFailure(d, ClientError)
        self.assertIn("exceeds the limit of 100", str(error))
        await self.session_closed("exceeds the limit of 100")
        await self.assertServing()

    async def test_messagesPerSecond(self):
        """
        More than C{messages_per_second} packages in one second are kicked
        C{"rate limit exceeded"} and counted in C{metrics["rate_limited"]}.
        """
        await self.serve(messages_per_second=5)
        offender = await self.client()
        for n in range(20):
            offender.notify("connector.game.echo", n)
        self.assertEqual(await self.closed(offender), "rate limit exceeded")
        self.assertEqual(self.metrics["rate_limited"], 1)
        await self.session_closed("rate limit exceeded")
        await self.assertServing()

    async def test_heartbeatTimeout(self):
        """
        A client silent for twice the heartbeat interval is kicked C{"heartbeat
        timeout"}, while a client that heartbeats (and gets its heartbeats echoed)
        stays.
        """
        await self.serve(heartbeat=1)
        self.assertEqual(self.other.handshake["sys"]["heartbeat"], 1)
        offender = await self.client(heartbeat=False)
        self.assertEqual(await self.closed(offender), "heartbeat timeout")
        self.assertEqual(self.metrics["heartbeat_timeouts"], 1)
        await self.assertServing()

    async def test_handshakeTimeout(self):
        """
        A client that gets the handshake answer but never acks is kicked
        C{"handshake timeout"}.
        """
        await self.serve(handshake_timeout=1)
        offender = await self.raw()
        answer = await offender.open(ack=False)
        self.assertEqual(answer["code"], 200)
        await offender.until(lambda: offender.is_lost)
        self.assertEqual(offender.kicks(), ["handshake timeout"])
        self.assertEqual(self.metrics["handshake_timeouts"], 1)
        await self.assertServing()

    async def test_silentSocket(self):
        """
        A socket that connects and sends nothing at all is closed within the
        handshake timeout.
        """
        await self.serve(handshake_timeout=1)
        offender = await self.raw("tcp")
        started = reactor.seconds()
        await offender.until(lambda: offender.is_lost)
        self.assertLess(reactor.seconds() - started, 3)
        await self.assertServing()

    async def test_maxConnections(self):
        """
        A connection over C{max_connections} is closed at once and counted in
        C{metrics["connections_refused"]}; once a client leaves, another gets in.
        """
        await self.serve(max_connections=2)
        second = await self.client()
        d = Client.connect(reactor, "127.0.0.1", self.port, self.client_transport, timeout=WAIT)
        await self.assertFailure(d, ClientError)
        self.assertEqual(self.metrics["connections_refused"], 1)
        await self.assertServing()
        await second.close()
        await self.session_closed("client closed")
        third = await self.client()
        self.assertEqual(await third.request("connector.game.echo", 3), 3)

    async def test_slowConsumer(self):
        """
        A client that stops reading while the server pushes to it is aborted
        once C{max_outbound_queue} bytes wait for it, closed with reason
        C{"slow consumer"} and counted in C{metrics["slow_consumers"]}.
        """
        await self.serve(max_outbound_queue=256 * 1024)
        received = []
        self.other.on("onFlood", received.append)
        await self.flooded_until_slow(16384, 4)
        self.assertEqual(received, [])

    async def test_fastConsumer(self):
        """
        A client that keeps reading gets a push stream larger than
        C{max_outbound_queue} whole.
        """
        await self.serve(max_outbound_queue=256 * 1024)
        received = []
        self.other.on("onFlood", received.append)
        await self.other.request("connector.game.flood", {"size": 16384, "per_step": 4, "steps": 15})
        await self.wait_for(lambda: len(received) == 64)
        self.assertEqual(self.metrics["slow_consumers"], 0)
        await self.assertServing()


class WebSocketLimitsMixin(LimitsBase):
    """
    Limits only WebSocket clients meet: message and frame size, and browser origins.
    """

    async def upgrade(self, origin: str | None) -> bytes:
        """
        Send a WebSocket upgrade request with C{origin}; the HTTP status line of the answer.
        """
        raw = await self.raw("tcp")
        headers = [
            "GET / HTTP/1.1", f"Host: 127.0.0.1:{self.port}", "Upgrade: websocket", "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13",
        ]
        if origin is not None:
            headers.append(f"Origin: {origin}")
        raw.send(("\r\n".join(headers) + "\r\n\r\n").encode("ascii"))
        await raw.until(lambda: b"\r\n" in raw.inbox)
        return raw.inbox.split(b"\r\n", 1)[0]

    async def test_originRefused(self):
        """
        A WebSocket upgrade whose C{Origin} matches none of C{allowed_origins}
        is answered HTTP 403 and counted.
        """
        await self.serve(allowed_origins=("https://*.example.com",))
        self.assertEqual(await self.upgrade("https://evil.test"), b"HTTP/1.1 403 origin not allowed")
        self.assertEqual(self.metrics["origins_refused"], 1)
        await self.assertServing()

    async def test_originAllowed(self):
        """
        An upgrade from a matching origin, or with no C{Origin} header (a native
        client), is accepted.
        """
        await self.serve(allowed_origins=("https://*.example.com", "http://localhost:*"))
        self.assertEqual(await self.upgrade("https://play.example.com"), b"HTTP/1.1 101 Switching Protocols")
        self.assertEqual(await self.upgrade("http://localhost:8080"), b"HTTP/1.1 101 Switching Protocols")
        self.assertEqual(await self.upgrade(None), b"HTTP/1.1 101 Switching Protocols")
        self.assertEqual(self.metrics["origins_refused"], 0)
        await self.assertServing()

    async def test_anyOrigin(self):
        """
        With the default C{allowed_origins = *}, any origin is accepted.
        """
        await self.serve()
        self.assertEqual(await self.upgrade("https://anything.test"), b"HTTP/1.1 101 Switching Protocols")
        await self.assertServing()

    async def test_frameTooLarge(self):
        """
        A WebSocket frame over C{max_ws_message_size} is closed by Autobahn with code 1009.
        """
        await self.serve(max_ws_message_size=1000)
        self.assertEqual(await self.other.request("connector.game.echo", "y" * 900), "y" * 900)
        offender = await self.raw()
        offender.send(b"\x04" + b"x" * 2000)
        await offender.until(lambda: offender.is_lost)
        self.assertEqual(offender.close_code, 1009)
        await self.assertServing()

    async def test_messageTooLarge(self):
        """
        A message over C{max_ws_message_size} is closed with code 1009 even when
        each of its frames is under the limit.
        """
        await self.serve(max_ws_message_size=1000)
        offender = await self.raw()
        offender.send(b"\x04" + b"x" * 2000, fragment_size=500)
        await offender.until(lambda: offender.is_lost)
        self.assertEqual(offender.close_code, 1009)
        await self.assertServing()

    async def test_handshakeTimeoutAfterUpgrade(self):
        """
        A WebSocket client that completes the upgrade but never sends a Pomelo
        handshake is kicked C{"handshake timeout"} and closed normally.
        """
        await self.serve(handshake_timeout=1)
        offender = await self.raw()
        await offender.until(lambda: offender.is_lost)
        self.assertEqual(offender.kicks(), ["handshake timeout"])
        self.assertEqual(offender.close_code, 1000)
        self.assertEqual(self.metrics["handshake_timeouts"], 1)
        await self.assertServing()


class WebSocketOnHybridTests(LimitsMixin, WebSocketLimitsMixin, TestCase):
    server_transport = "hybrid"
    client_transport = "websocket"


class TCPOnHybridTests(LimitsMixin, TestCase):
    server_transport = "hybrid"
    client_transport = "tcp"


class WebSocketTests(LimitsMixin, WebSocketLimitsMixin, TestCase):
    server_transport = "websocket"
    client_transport = "websocket"


class TCPTests(LimitsMixin, TestCase):
    server_transport = "tcp"
    client_transport = "tcp"


class HybridTests(TestCase):
    """
    Limits of the hybrid connector itself, before it knows the transport.
    """

    timeout = 15

    async def test_silentHybridSocket(self):
        """
        A socket on a hybrid port that sends nothing (so is neither WebSocket
        nor TCP yet) is aborted after the handshake timeout, counted in
        C{metrics["handshake_timeouts"]}, and no longer counts against C{max_connections}.
        """
        cluster = cluster_config(frontend("connector-1", "connector", handshake_timeout=1, max_connections=2))
        app = await start_server(cluster, "connector-1", [handler(Game, "connector")])
        self.addCleanup(app.stopService)
        port = client_port(app)
        other = await Client.connect(reactor, "127.0.0.1", port, "tcp", timeout=WAIT)
        self.addCleanup(other.close)
        silent = await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port, WAIT), RawTCP())
        self.assertEqual(len(app.frontend.pending), 1)
        refused = Client.connect(reactor, "127.0.0.1", port, "websocket", timeout=WAIT)
        await self.assertFailure(refused, ClientError)
        started = reactor.seconds()
        await silent.until(lambda: silent.is_lost)
        self.assertLess(reactor.seconds() - started, 3)
        self.assertEqual(silent.inbox, b"")
        self.assertEqual(app.frontend.metrics["handshake_timeouts"], 1)
        self.assertEqual(app.frontend.pending, {})
        self.assertEqual(await other.request("connector.game.echo", 1), 1)
        late = await Client.connect(reactor, "127.0.0.1", port, "websocket", timeout=WAIT)
        self.addCleanup(late.close)
        self.assertEqual(await late.request("connector.game.echo", 2), 2)
