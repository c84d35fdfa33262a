"""
Node links over mutual TLS (C{node_tls_cert}/C{node_tls_key}), on real loopback sockets.
"""

from __future__ import annotations

import os
import time

import attrs
from twisted.internet import reactor, ssl
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from gamenet import Handler, handler
from gamenet.client import Client
from gamenet.testing import backend, client_port, cluster_config, free_ports, frontend, start_server

from .test_tls import write_certificate

WAIT = 30.0  # the longest a test waits for links, handshakes and closes


class Where(Handler):
    def where(self, msg, session):
        return self.app.server_id


class NodeTLSTests(TestCase):
    """
    With a cluster certificate, servers link over TLS and nodes without it get nothing.
    """

    async def setUp(self):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        self.cert, self.key = os.path.join(directory, "node.pem"), os.path.join(directory, "node.key")
        write_certificate(self.cert, self.key, "gamenet-cluster")
        connector_node, area_node = free_ports(2)
        cluster = attrs.evolve(
            cluster_config(frontend("connector-1", "connector", node_port=connector_node),
                           backend("area-1", "area", area_node)),
            node_tls_cert=self.cert, node_tls_key=self.key,
        )
        self.area_node = area_node
        self.apps = [await start_server(cluster, sid, [handler(Where, "area")]) for sid in ("area-1", "connector-1")]
        for app in self.apps:
            self.addCleanup(app.stopService)
        await self.wait(lambda: all(link.up for app in self.apps for link in app.node.links.values()),
                        "every node link up")

    async def wait(self, condition, what):
        """
        Poll C{condition()} until it is true; fail after L{WAIT} seconds.
        """
        deadline = time.monotonic() + WAIT
        while not condition():
            if time.monotonic() > deadline:
                self.fail(f"timed out after {WAIT:g}s waiting for {what}")
            await deferLater(reactor, 0.02, lambda: None)

    async def test_forwardedOverTLS(self):
        """
        Requests are forwarded over the TLS node link and answered.
        """
        self.assertTrue(all(link.up for app in self.apps for link in app.node.links.values()))
        client = await Client.connect(reactor, "127.0.0.1", client_port(self.apps[1]))
        self.addCleanup(client.close)
        self.assertEqual(await client.request("area.where.where"), "area-1")

    async def test_noDelay(self):
        """
        Node links have Nagle's algorithm off at both ends, under TLS too.
        """
        def tcp(transport):
            while not hasattr(transport, "getTcpNoDelay"):
                transport = transport.transport
            return transport

        for app in self.apps:
            for link in app.node.links.values():
                self.assertTrue(tcp(link._broker.transport).getTcpNoDelay())
            for avatar in app.node.node_server.peers:
                self.assertTrue(tcp(avatar.mind.broker.transport).getTcpNoDelay())

    async def test_plainRefused(self):
        """
        A node connecting without TLS gets no PB answer: the connection is closed.
        """
        closed = []

        class Plain(Protocol):
            def connectionMade(self):
                self.transport.write(b"\x00" * 16)

            def connectionLost(self, reason):
                closed.append(True)

        protocol = await TCP4ClientEndpoint(reactor, "127.0.0.1", self.area_node).connect(Factory.forProtocol(Plain))
        await self.wait(lambda: closed, "the connection to be closed")
        self.assertEqual(closed, [True])
        protocol.transport.loseConnection()

    async def test_otherCertificateRefused(self):
        """
        A node presenting another certificate fails the TLS handshake.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        cert, key = os.path.join(directory, "other.pem"), os.path.join(directory, "other.key")
        write_certificate(cert, key, "intruder")
        with open(cert, "rb") as f, open(key, "rb") as g:
            other = ssl.PrivateCertificate.loadPEM(f.read() + b"\n" + g.read())
        options = ssl.CertificateOptions(privateKey=other.privateKey.original, certificate=other.original,
                                         verify=False)
        lost = []

        class Probe(Protocol):
            def connectionLost(self, reason):
                lost.append(reason)

        endpoint = wrapClientTLS(options, TCP4ClientEndpoint(reactor, "127.0.0.1", self.area_node))
        protocol = await endpoint.connect(Factory.forProtocol(Probe))
        protocol.transport.write(b"hello")
        await self.wait(lambda: lost, "the handshake to fail")
        self.assertEqual(len(lost), 1)
