"""
Guards on the two places where gamenet's WebSocket link goes past Autobahn's
public API for speed (see doc/benchmarks.md).
"""

from __future__ import annotations

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.trial.unittest import SynchronousTestCase

from gamenet.connector.websocket import WebSocketLink, binary_frame


class FrameTests(SynchronousTestCase):
    """
    L{binary_frame} writes what Autobahn would.
    """

    def test_sameBytesAsAutobahn(self):
        """
        At every length boundary, the frame equals Autobahn's own prepared
        binary message.
        """
        factory = WebSocketServerFactory()
        for size in (0, 1, 125, 126, 127, 65535, 65536, 70000):
            data = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
            self.assertEqual(binary_frame(data), factory.prepareMessage(data, isBinary=True).payloadHybi, size)


class InternalsTests(SynchronousTestCase):
    """
    The Autobahn attributes L{WebSocketLink.onMessageEnd} relies on exist in
    the installed Autobahn (a release that renames them fails here, not in
    production).
    """

    def test_messageAttributes(self):
        """
        Autobahn's own C{onMessageEnd} still reads C{message_data} and C{failedByMe}.
        """
        import inspect

        source = inspect.getsource(WebSocketServerProtocol.onMessageEnd)
        self.assertIn("self.message_data", source)
        self.assertIn("self.failedByMe", source)
        self.assertIsNot(WebSocketLink.onMessageEnd, WebSocketServerProtocol.onMessageEnd)
