"""
TLS on client ports: a self-signed certificate made at test time, frontends of
each transport with C{tls_cert}/C{tls_key}, and L{gamenet.client.Client} with
C{tls=True}, over real loopback sockets.
"""

from __future__ import annotations

import datetime
import ipaddress
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import TestCase

from gamenet import Handler, handler
from gamenet.client import Client, ClientError
from gamenet.connector.tls import certificate_problem, server_context
from gamenet.testing import client_port, cluster_config, frontend, start_server

WAIT = 5.0


class Game(Handler):
    def echo(self, msg, session):
        return msg

    def whoami(self, msg, session):
        return {"transport": session.transport}

    def pushme(self, msg, session):
        session.send("onPush", msg)
        return {}

    def kickme(self, msg, session):
        reactor.callLater(0, session.kick, "bye")
        return {}


def write_certificate(cert_path: str, key_path: str, common_name: str = "localhost") -> None:
    """
    Write a self-signed certificate for C{localhost} and C{127.0.0.1}, and its key, as PEM.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    with open(cert_path, "wb") as f:
        f.write(certificate.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ))


class Silent(Protocol):
    """
    A TCP client that sends nothing and notes what it receives and when it is closed.
    """

    def __init__(self) -> None:
        self.received = b""
        self.lost: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:
        self.lost.callback(None)


class TLSMixin:
    """
    A frontend of C{server_transport} with TLS, and helpers to reach it.

    @cvar client_transports: the client transports its port accepts.
    """

    server_transport = "hybrid"
    client_transports = ("websocket", "tcp")
    silent_closed_within = 3.0
    timeout = 15

    async def serve(self, **options: Any) -> None:
        self.cert, self.key = self.mktemp(), self.mktemp()
        write_certificate(self.cert, self.key)
        cluster = cluster_config(
            frontend("connector-1", "connector", transport=self.server_transport, tls_cert=self.cert,
                     tls_key=self.key, **options),
            extra_routes=["onPush"],
        )
        self.app = await start_server(cluster, "connector-1", [handler(Game, "connector")])
        self.addCleanup(self.app.stopService)
        self.port = client_port(self.app)

    async def client(self, transport: str, **options: Any) -> Client:
        client = await Client.connect(reactor, "127.0.0.1", self.port, transport, tls=True, timeout=WAIT, **options)
        self.addCleanup(client.close)
        return client

    async def test_encrypted(self):
        """
        Each transport the port serves works over TLS, and the session's
        C{transport} says so with C{"+tls"}.
        """
        await self.serve()
        for transport in self.client_transports:
            client = await self.client(transport)
            answer = await client.request("connector.game.whoami", {})
            self.assertEqual(answer, {"transport": f"{transport}+tls"})
            self.assertTrue(answer["transport"].endswith("+tls"))
            big = {"é": "x" * 60000}
            self.assertEqual(await client.request("connector.game.echo", big), big)
        self.assertEqual(
            sorted(session.transport for session in self.app.sessions),
            sorted(f"{transport}+tls" for transport in self.client_transports),
        )

    async def test_pushAndKick(self):
        """
        Pushes and a kick with its reason reach a TLS client, and the kicked
        connection closes at once, not when the 2-second grace runs out.
        """
        await self.serve()
        for transport in self.client_transports:
            client = await self.client(transport)
            pushes = []
            client.on("onPush", pushes.append)
            await client.request("connector.game.pushme", {"n": 1})
            self.assertEqual(pushes, [{"n": 1}])
            await client.request("connector.game.kickme", {})
            started = reactor.seconds()
            d = Deferred()
            client.closed.addCallback(lambda reason: d.callback(reason) or reason)
            d.addTimeout(WAIT, reactor)
            self.assertEqual(await d, "bye")
            self.assertLess(reactor.seconds() - started, 1.5, "closed only by the 2-second grace abort")

    async def test_plaintextRefused(self):
        """
        A client that does not speak TLS gets no handshake answer; TLS clients
        keep working.
        """
        await self.serve(handshake_timeout=1)
        other = await self.client(self.client_transports[0])
        plain = Client.connect(reactor, "127.0.0.1", self.port, self.client_transports[-1], timeout=WAIT)
        await self.assertFailure(plain, ClientError)
        self.assertEqual(await other.request("connector.game.echo", 1), 1)

    async def test_maxConnections(self):
        """
        A TLS connection over C{max_connections} is closed at once and counted;
        the admitted client keeps working.
        """
        await self.serve(max_connections=1)
        other = await self.client(self.client_transports[0])
        refused = Client.connect(reactor, "127.0.0.1", self.port, self.client_transports[-1], tls=True, timeout=WAIT)
        await self.assertFailure(refused, ClientError)
        self.assertEqual(self.app.frontend.metrics["connections_refused"], 1)
        self.assertEqual(await other.request("connector.game.echo", 1), 1)

    async def test_silentSocket(self):
        """
        A socket that never starts the TLS handshake is closed after the
        handshake timeout; TLS clients keep working.
        """
        await self.serve(handshake_timeout=1)
        other = await self.client(self.client_transports[0])
        silent = await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.port, WAIT), Silent())
        silent.lost.addTimeout(self.silent_closed_within, reactor)
        await silent.lost
        self.assertEqual(silent.received, b"")
        self.assertEqual(await other.request("connector.game.echo", 1), 1)


class HybridTLSTests(TLSMixin, TestCase):
    server_transport = "hybrid"
    client_transports = ("websocket", "tcp")


class WebSocketTLSTests(TLSMixin, TestCase):
    server_transport = "websocket"
    client_transports = ("websocket",)


class TCPTLSTests(TLSMixin, TestCase):
    server_transport = "tcp"
    client_transports = ("tcp",)
    # The TCP connector kicks a silent socket; the kick waits behind a TLS
    # handshake that never comes, so the 2-second close grace aborts it.
    silent_closed_within = 5.0


class ServerContextTests(TestCase):
    """
    L{server_context} reads the PEM files named in the cluster file.
    """

    def test_mismatch(self):
        """
        A key that does not belong to the certificate is a C{ValueError} naming both files.
        """
        cert, key, other_cert, other_key = (self.mktemp() for _ in range(4))
        write_certificate(cert, key)
        write_certificate(other_cert, other_key)
        error = self.assertRaises(ValueError, server_context, cert, other_key)
        self.assertIn(cert, str(error))
        self.assertIn(other_key, str(error))

    def test_missing(self):
        """
        A file that cannot be read is an C{OSError}.
        """
        self.assertRaises(OSError, server_context, self.mktemp(), self.mktemp())

    def test_problem(self):
        """
        L{certificate_problem} names the key of the file that cannot be read,
        or the certificate's key when the two do not match.
        """
        cert, key, other_cert, other_key = (self.mktemp() for _ in range(4))
        write_certificate(cert, key)
        write_certificate(other_cert, other_key)
        missing = self.mktemp()
        for cert_path, key_path, expected in (
            (missing, key, f"[server:gate-1] tls_cert: cannot read {missing}: No such file or directory; "
                           "expected a readable PEM file"),
            (cert, missing, f"[server:gate-1] tls_key: cannot read {missing}: No such file or directory; "
                            "expected a readable PEM file"),
            (cert, other_key, f"[server:gate-1] tls_cert: {cert} and {other_key} do not hold a usable "),
        ):
            error = self.assertRaises((OSError, ValueError), server_context, cert_path, key_path)
            self.assertTrue(certificate_problem(error, "[server:gate-1]", "tls_cert", "tls_key", key_path)
                            .startswith(expected))
