"""
L{gamenet.http} on real ports, with treq: the registration modes and hooks
over a socket, TLS, and each limit crossed while other clients keep working.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import attrs
import treq
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool
from twisted.web.resource import Resource

from gamenet import Refused
from gamenet.config import HttpOptions
from gamenet.connector.listener import ListenError
from gamenet.http import Controller, HttpService
from gamenet.testing import backend, cluster_config, free_ports, start_server

from .test_tls import write_certificate

WAIT = 30


class Raw(Protocol):
    """
    A TCP client that keeps what it receives and says when it is closed.
    """

    def __init__(self) -> None:
        self.received = b""
        self.closed: Deferred[bytes] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any) -> None:
        self.closed.callback(self.received)


class Hello(Controller):
    def hi(self, request):
        return {"hi": request.get("name")}


class HttpServerTestCase(TestCase):
    """
    A backend serving HTTP on a real port, with a few routes.
    """

    timeout = 60
    options: dict[str, Any] = {}

    async def setUp(self) -> None:
        (self.http_port,) = free_ports(1)
        server = attrs.evolve(backend("web-1", "web"), http=HttpOptions(port=self.http_port, **self.options))
        self.app = await start_server(cluster_config(server), "web-1", configure=self.routes)
        self.addCleanup(self.app.stopService)
        self.pool = HTTPConnectionPool(reactor, False)
        self.addCleanup(self.pool.closeCachedConnections)
        self.url = f"http://127.0.0.1:{self.http_port}"

    def routes(self, app: Any) -> None:
        def token(request):
            if request.header("x-token") != "t":
                raise Refused("no token")

        app.http.bind_handler("/echo/:word", lambda r: {"word": r.params["word"], "json": r.json})
        app.http.bind_controller("/hello", Hello)
        app.http.bind_hook("POST:/echo/*any", "BeforeServe", token)

    async def get(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        response = await treq.get(self.url + path, pool=self.pool, timeout=WAIT, **kwargs)
        return response.code, await response.json()

    async def raw(self) -> Raw:
        protocol = Raw()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.http_port), protocol)
        self.addCleanup(lambda: protocol.transport.loseConnection())
        return protocol

    async def still_serving(self) -> None:
        self.assertEqual(await self.get("/echo/ok"), (200, {"word": "ok", "json": None}))


class RealPortTests(HttpServerTestCase):
    """
    The same server over a socket.
    """

    async def test_serve(self) -> None:
        """
        A function, a controller and a hook, through a real client.
        """
        self.assertEqual(await self.get("/hello/hi?name=ann"), (200, {"hi": "ann"}))
        response = await treq.post(self.url + "/echo/x", json={"a": 1}, pool=self.pool, timeout=WAIT)
        self.assertEqual((response.code, await response.json()), (403, {"code": 403, "message": "no token"}))
        response = await treq.post(self.url + "/echo/x", json={"a": 1}, headers={"X-Token": "t"}, pool=self.pool,
                                   timeout=WAIT)
        self.assertEqual((response.code, await response.json()), (200, {"word": "x", "json": {"a": 1}}))

    async def test_everyMode(self) -> None:
        """
        Over a socket too: an object (a subset, and renamed), a REST object, a
        REST controller, each pattern form, a priority rule, a domain, and
        the four hook events.
        """
        http, seen = self.app.http, []

        class Shop:
            def show_list(self, request):
                return "list"

            def hidden(self, request):
                return "hidden"

        class Rest:
            def get(self, request):
                return "get"

            def put(self, request):
                return request.json

        class Counter(Controller):
            def post(self, request):
                return self.request is request

        http.bind_object_method("/shop", Shop(), "show_list")
        http.bind_object("/renamed", Shop(), name_func=str.upper)
        http.bind_object_rest("/rest/{id}", Rest())
        http.bind_controller_rest("/counter", Counter)
        http.bind_handler("/files/*path", lambda r: r.params)
        http.bind_handler("/p/:a", lambda r: "fuzzy")
        http.bind_handler("/p/show", lambda r: "static")
        http.domain("a.example").bind_handler("/where", lambda r: "a")
        http.bind_handler("/where", lambda r: "anywhere")
        for event in ("BeforeServe", "AfterServe", "BeforeOutput", "AfterOutput"):
            http.bind_hook("/rest/*any", event, lambda r, e=event: seen.append(e))
        http.bind_hook("GET:/rest/{id}", "BeforeOutput", lambda r: setattr(r, "response", [r.response]))
        self.assertEqual(await self.get("/shop/show-list"), (200, "list"))
        self.assertEqual((await self.get("/shop/hidden"))[0], 404)
        self.assertEqual(await self.get("/renamed/HIDDEN"), (200, "hidden"))
        self.assertEqual(await self.get("/rest/1"), (200, ["get"]))
        self.assertEqual(seen, ["BeforeServe", "AfterServe", "BeforeOutput", "AfterOutput"])
        response = await treq.put(self.url + "/rest/1", json=[2], pool=self.pool, timeout=WAIT)
        self.assertEqual((response.code, await response.json()), (200, [2]))
        response = await treq.delete(self.url + "/rest/1", pool=self.pool, timeout=WAIT)
        self.assertEqual((response.code, response.headers.getRawHeaders(b"allow")), (405, [b"GET, HEAD, PUT"]))
        response = await treq.post(self.url + "/counter", pool=self.pool, timeout=WAIT)
        self.assertEqual((response.code, await response.json()), (200, True))
        self.assertEqual(await self.get("/files/a/b"), (200, {"path": "a/b"}))
        self.assertEqual(await self.get("/p/show"), (200, "static"))
        self.assertEqual(await self.get("/p/y"), (200, "fuzzy"))
        self.assertEqual(await self.get("/where", headers={"Host": "a.example"}), (200, "a"))
        self.assertEqual(await self.get("/where"), (200, "anywhere"))

    async def test_defaultLimits(self) -> None:
        """
        With no limit configured, the defaults are on: a body declared over
        1 MiB is 413, headers over 16 KiB are 431.
        """
        client = await self.raw()
        client.transport.write(b"POST /echo/x HTTP/1.1\r\nHost: a\r\nContent-Length: 1048577\r\n\r\n")
        self.assertIn(b'"the body exceeds 1048576 bytes"', await client.closed)
        response = await treq.get(self.url + "/echo/x", headers={"X-Big": "y" * 17000}, pool=self.pool, timeout=WAIT)
        self.assertEqual(response.code, 431)
        self.assertIn("headers exceed 16384 bytes", (await response.json())["message"])
        await self.still_serving()

    async def test_stopped(self) -> None:
        """
        Once the server has stopped, its HTTP port is closed.
        """
        await self.app.stopService()
        with self.assertRaises(Exception):
            await self.get("/echo/x")


class TlsTests(HttpServerTestCase):
    """
    C{http_tls_cert}: HTTPS only.
    """

    async def setUp(self) -> None:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        self.cert, key = os.path.join(directory, "http.pem"), os.path.join(directory, "http.key")
        write_certificate(self.cert, key)
        self.options = {"tls_cert": self.cert, "tls_key": key}
        await super().setUp()

    async def test_https(self) -> None:
        """
        A client trusting the certificate is served over TLS.
        """
        with open(self.cert, "rb") as f:
            trust = Certificate.loadPEM(f.read())

        class Trust(BrowserLikePolicyForHTTPS):
            def creatorForNetloc(self, hostname, port):
                return optionsForClientTLS("localhost", trustRoot=trust)

        http = HTTPClient(Agent(reactor, contextFactory=Trust(), pool=self.pool))
        response = await http.get(f"https://127.0.0.1:{self.http_port}/hello/hi?name=tls", timeout=WAIT)
        self.assertEqual((response.code, await response.json()), (200, {"hi": "tls"}))


class ServiceTests(SynchronousTestCase):
    """
    L{HttpService}'s start fails with one line when it cannot serve.
    """

    def service(self, **options: Any) -> HttpService:
        server = attrs.evolve(backend("web-1", "web"), http=HttpOptions(**options))
        return HttpService(server, Resource(), reactor)

    def test_portInUse(self) -> None:
        """
        A port in use is named, with its address.
        """
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            port = s.getsockname()[1]
            with self.assertRaises(ListenError) as caught:
                self.service(port=port).privilegedStartService()
        self.assertRegex(str(caught.exception), rf"^\[server:web-1\] http_port: cannot serve HTTP on 127\.0\.0\.1:{port}: .+$")

    def test_badCertificate(self) -> None:
        """
        A certificate that cannot be read is named.
        """
        with self.assertRaises(ListenError) as caught:
            self.service(port=free_ports(1)[0], tls_cert="/nonexistent/c.pem", tls_key="/nonexistent/c.key")\
                .privilegedStartService()
        self.assertIn("[server:web-1] http_tls_cert: cannot read /nonexistent/c.pem: ", str(caught.exception))
        self.assertNotIn("\n", str(caught.exception))


class BodyLimitTests(HttpServerTestCase):
    options = {"max_body_size": 100}

    async def test_body(self) -> None:
        """
        A body over C{max_body_size} is answered 413 and the connection
        closed, whether its length is declared or chunked; one at the limit passes.
        """
        client = await self.raw()
        client.transport.write(b"POST /echo/x HTTP/1.1\r\nHost: a\r\nX-Token: t\r\nContent-Length: 101\r\n\r\n")
        answer = await client.closed
        self.assertTrue(answer.startswith(b"HTTP/1.1 413 "), answer)
        self.assertIn(b'"the body exceeds 100 bytes"', answer)
        await self.still_serving()
        chunked = await self.raw()
        chunked.transport.write(b"POST /echo/x HTTP/1.1\r\nHost: a\r\nX-Token: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(5):
            chunked.transport.write(b"20\r\n" + b" " * 32 + b"\r\n")
        self.assertTrue((await chunked.closed).startswith(b"HTTP/1.1 413 "))
        response = await treq.post(self.url + "/echo/x", data=b'"' + b"x" * 98 + b'"', headers={"X-Token": "t"},
                                   pool=self.pool, timeout=WAIT)
        self.assertEqual((response.code, await response.json()), (200, {"word": "x", "json": "x" * 98}))


class HeaderLimitTests(HttpServerTestCase):
    options = {"max_header_size": 1000}

    async def test_headers(self) -> None:
        """
        Headers over C{max_header_size} together, or in one line, are answered 431.
        """
        for headers in ({"X-Big": "y" * 1200}, {f"X-{n}": "y" * 50 for n in range(30)}):
            response = await treq.get(self.url + "/echo/x", headers=headers, pool=self.pool, timeout=WAIT)
            self.assertEqual(response.code, 431)
            self.assertIn("headers exceed 1000 bytes", (await response.json())["message"])
            await self.still_serving()


class TimeoutLimitTests(HttpServerTestCase):
    options = {"request_timeout": 1.0}

    async def test_slowClient(self) -> None:
        """
        A client that sends its request slowly (a byte now and then, so it
        is never idle) is answered 408 and dropped once C{request_timeout}
        has passed since it began; others are served meanwhile.
        """
        started = reactor.seconds()
        slow = await self.raw()
        request = b"GET /echo/slow HTTP/1.1\r\nHost: a\r\n"

        calls = []

        def drip(n: int = 0) -> None:
            if not slow.closed.called and n < len(request):
                slow.transport.write(request[n:n + 1])
                calls.append(reactor.callLater(0.1, drip, n + 1))

        self.addCleanup(lambda: [call.cancel() for call in calls if call.active()])
        drip()
        await self.still_serving()
        answer = await slow.closed
        self.assertTrue(answer.startswith(b"HTTP/1.1 408 "), answer)
        self.assertGreaterEqual(reactor.seconds() - started, 0.9)
        await self.still_serving()

    async def test_slowHandler(self) -> None:
        """
        C{request_timeout} bounds the request's arrival, not the handler: one
        answering later than that (a slow remote call) is still answered.
        """
        def later(request):
            d = Deferred()
            reactor.callLater(1.5, d.callback, {"late": True})
            return d

        self.app.http.bind_handler("/late", later)
        self.assertEqual(await self.get("/late"), (200, {"late": True}))

    async def test_idle(self) -> None:
        """
        A connection that sends nothing is closed after C{request_timeout}.
        """
        idle = await self.raw()
        self.assertEqual(await idle.closed, b"")


class ConnectionLimitTests(HttpServerTestCase):
    options = {"max_connections": 2}

    async def test_connections(self) -> None:
        """
        Beyond C{max_connections} open at once, a connection is answered 503
        and closed; the open ones keep working, and once one closes a new
        one is served.
        """
        first, second = await self.raw(), await self.raw()
        third = await self.raw()
        answer = await third.closed
        self.assertTrue(answer.startswith(b"HTTP/1.1 503 "), answer)
        self.assertIn(b"too many connections (at most 2)", answer)
        second.transport.write(b"GET /echo/two HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        self.assertIn(b'"word": "two"', await second.closed)
        await self.still_serving()
        first.transport.loseConnection()
        await first.closed
        await self.still_serving()
