"""
Tests for L{gamenet.cluster.records}, the pure codec of the record a server
keeps in Redis for its peers.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from gamenet.cluster.records import decode_server, encode_server
from gamenet.config import FrontendOptions, ServerConfig


class RecordTests(SynchronousTestCase):
    """
    The record a server keeps in Redis.
    """

    def test_roundTrip(self) -> None:
        """
        A backend's and a frontend's records carry what peers need; a
        frontend's C{client_host} is kept, its other options are not.
        """
        area = ServerConfig("area-1", "area", "10.0.0.2", 4001)
        self.assertEqual(encode_server(area), {"id": "area-1", "type": "area", "host": "10.0.0.2",
                                               "node_port": 4001, "frontend": False, "client_port": 0,
                                               "metadata": {}})
        self.assertEqual(decode_server(encode_server(area)), area)
        connector = ServerConfig("c-1", "connector", "10.0.0.3", 4002, True, 3010,
                                 FrontendOptions(client_host="game.example.com", heartbeat=5))
        record = encode_server(connector)
        self.assertEqual(record["client_host"], "game.example.com")
        decoded = decode_server(record)
        self.assertEqual((decoded.client_host, decoded.client_port, decoded.frontend),
                         ("game.example.com", 3010, True))
        plain = decode_server({**record, "client_host": ""})
        self.assertEqual(plain, ServerConfig("c-1", "connector", "10.0.0.3", 4002, True, 3010))

    def test_malformed(self) -> None:
        """
        Malformed records are refused with L{ValueError}.
        """
        good = encode_server(ServerConfig("area-1", "area", "10.0.0.2", 4001))
        for bad in ([], {**good, "id": ""}, {**good, "node_port": "4001"}, {**good, "node_port": 70000},
                    {**good, "frontend": "yes"}, {**good, "type": None}, {k: v for k, v in good.items() if k != "host"}):
            self.assertRaises(ValueError, decode_server, bad)
