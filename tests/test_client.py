"""
L{gamenet.client}'s own WebSocket framing: the frames it writes are what
RFC 6455 asks of a client, the frames it reads itself are exactly the
server's whole binary frames (everything else is left to Autobahn), and the
Autobahn internals its link relies on are still there. (Every test that
connects a client over WebSocket runs them against gamenet's server.)
"""

from __future__ import annotations

import os

from autobahn.twisted.websocket import WebSocketClientProtocol
from autobahn.websocket.protocol import WebSocketProtocol
from twisted.trial.unittest import SynchronousTestCase

from gamenet.client import masked_frame, unmasked_frames
from gamenet.connector.websocket import binary_frame


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

    def test_reads_whole_binary_frames(self):
        """
        Whole binary frames of each length encoding are read, in order.
        """
        payloads = [b"", b"a" * 5, b"b" * 125, b"c" * 126, b"d" * 65535, b"e" * 65536]
        data = b"".join(binary_frame(p) for p in payloads)
        self.assertEqual(unmasked_frames(data), (payloads, len(data)))

    def test_stops_at_anything_else(self):
        """
        A partial frame, a ping, a close, a text frame, a fragment, a masked
        frame or one with RSV bits set stops the reading there: that and what
        follows are Autobahn's.
        """
        first = binary_frame(b"first")
        for partial in (binary_frame(b"partial")[:-1], binary_frame(b"x" * 200)[:3], b"\x82"):
            self.assertEqual(unmasked_frames(first + partial), ([b"first"], len(first)), partial)
        for other in (b"\x89\x00", b"\x88\x02\x03\xe8", b"\x81\x01a", b"\x02\x01a", masked_frame(b"m", b"abcd"),
                      b"\xc2\x01a"):
            data = first + other + binary_frame(b"after")
            self.assertEqual(unmasked_frames(data), ([b"first"], len(first)), other)

    def test_autobahn_internals(self):
        """
        The client link calls Autobahn's C{_dataReceived}, reads its parser's
        state (C{data}, C{current_frame}, C{inside_message}), and replaces
        C{onMessageEnd}, which reads C{message_data} and C{failedByMe}.
        """
        import inspect

        self.assertTrue(callable(getattr(WebSocketClientProtocol, "_dataReceived", None)))
        parser = inspect.getsource(WebSocketProtocol.processData)
        for name in ("self.data", "self.current_frame", "self.inside_message"):
            self.assertIn(name, parser)
        source = inspect.getsource(WebSocketProtocol.onMessageEnd)
        self.assertIn("self.message_data", source)
        self.assertIn("self.failedByMe", source)


class CloseTests(SynchronousTestCase):
    """
    L{Client.close} returns a Deferred of its own.
    """

    def test_timeoutLeavesClosedAlone(self):
        """
        Cancelling what C{close()} returned (as a timeout does) does not
        cancel C{closed}, which fires when the connection is gone; closing
        again does not close the transport twice and fires with the reason.
        """
        from twisted.internet.defer import CancelledError
        from twisted.internet.task import Clock

        from gamenet.client import Client

        client = Client(Clock())
        client._ready.addErrback(lambda failure: None)  # the handshake never came
        lost = []
        client._connected(lambda data: None, lambda: lost.append(True))
        closing = client.close()
        self.assertEqual(lost, [True])
        closing.cancel()
        self.failureResultOf(closing, CancelledError)
        self.assertNoResult(client.closed)
        client._lost("gone")
        self.assertEqual(self.successResultOf(client.close()), "gone")
        self.assertEqual(lost, [True])
        self.assertEqual(self.successResultOf(client.closed), "gone")
