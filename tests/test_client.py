"""
L{gamenet.client}'s own WebSocket framing: the frames it writes are what
RFC 6455 asks of a client, and the Autobahn internals its link relies on
are still there. (Every test that connects a client over WebSocket runs
them against gamenet's server.)
"""

from __future__ import annotations

import os

from autobahn.twisted.websocket import WebSocketClientProtocol
from autobahn.websocket.protocol import WebSocketProtocol
from twisted.trial.unittest import SynchronousTestCase

from gamenet.client import masked_frame


def unmask(frame: bytes) -> tuple[int, int, bytes]:
    """
    The first byte, the length field and the unmasked payload of one masked frame.
    """
    length = frame[1] & 0x7F
    offset = 2
    if length == 126:
        length, offset = int.from_bytes(frame[2:4], "big"), 4
    elif length == 127:
        length, offset = int.from_bytes(frame[2:10], "big"), 10
    mask, payload = frame[offset:offset + 4], frame[offset + 4:]
    return frame[0], length, bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class MaskedFrameTests(SynchronousTestCase):
    """
    L{masked_frame}.
    """

    def test_lengths(self):
        """
        A final binary frame with the mask bit set, each length encoding
        (7-bit, 16-bit, 64-bit), and the payload masked with the key.
        """
        for size in (0, 1, 4, 5, 125, 126, 65535, 65536):
            data = os.urandom(size)
            frame = masked_frame(data, b"\x01\x02\x03\x04")
            self.assertEqual(frame[0], 0x82)
            self.assertTrue(frame[1] & 0x80)
            self.assertEqual(unmask(frame), (0x82, size, data))

    def test_known_bytes(self):
        """
        RFC 6455's own example of a masked frame, as binary: "Hello" with key 37 fa 21 3d.
        """
        self.assertEqual(masked_frame(b"Hello", bytes.fromhex("37fa213d")),
                         bytes.fromhex("8285" "37fa213d" "7f9f4d5158"))

    def test_autobahn_internals(self):
        """
        The client link calls Autobahn's C{_dataReceived} and replaces
        C{onMessageEnd}, which reads C{message_data} and C{failedByMe}.
        """
        import inspect

        self.assertTrue(callable(getattr(WebSocketClientProtocol, "_dataReceived", None)))
        source = inspect.getsource(WebSocketProtocol.onMessageEnd)
        self.assertIn("self.message_data", source)
        self.assertIn("self.failedByMe", source)
