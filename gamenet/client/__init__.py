"""
A Twisted client of the Pomelo protocol, over WebSocket or TCP, with or without TLS.

Used by gamenet's tests, its benchmarks and load robot, and by anyone who wants
to script a server that speaks the Pomelo protocol::

    client = await Client.connect(reactor, "127.0.0.1", 3050, transport="websocket")
    answer = await client.request("connector.entryHandler.enter", {"username": "bob", "rid": "r1"})
    client.on("onChat", lambda msg: print(msg))

The connection is in C{_client}, the TCP and WebSocket links it runs over
in C{_links}.
"""

from ._client import POMELO_HANDSHAKE, RESUME_ATTEMPTS, Client, ClientError, ErrorResponse
from ._links import _TCPClientLink  # noqa: F401 (for tests that connect a client in memory)
from ._links import masked_frame, unmasked_frames

__all__ = [
    "POMELO_HANDSHAKE",
    "RESUME_ATTEMPTS",
    "Client",
    "ClientError",
    "ErrorResponse",
    "masked_frame",
    "unmasked_frames",
]
