"""
Guards on the places where gamenet's WebSocket link goes past Autobahn's
public API for speed (see doc/benchmarks.md), and the gathering of the
frames written during one read.
"""

from __future__ import annotations

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from gamenet.config import FrontendOptions
from gamenet.connector import Frontend, State
from gamenet.connector.websocket import WebSocketFactory, WebSocketLink, binary_frame
from gamenet.dispatch import Dispatcher
from gamenet.hooks import HookRegistry
from gamenet.protocol import message, package, serializer
from gamenet.protocol.routes import RouteDictionary
from gamenet.session import SessionService

from .test_connection import EventTransport, data, handshake_package


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

    def test_readAndWritePaths(self):
        """
        Autobahn's C{dataReceived} hands the bytes to C{_dataReceived}, which
        L{WebSocketLink} calls directly (from C{_frames}); Autobahn writes to the
        transport only in C{sendData} and in C{_send} (its queue, fed by
        C{sendData}), and closes it only in C{_closeConnection}: the methods
        L{WebSocketLink} flushes its gathered frames in.
        """
        import inspect
        import re

        from autobahn.websocket import protocol

        self.assertIn("self._dataReceived(data)", inspect.getsource(WebSocketServerProtocol.dataReceived))
        writers = {name for name, member in inspect.getmembers(protocol.WebSocketProtocol, inspect.isfunction)
                   if "self.transport.write" in inspect.getsource(member)}
        self.assertEqual(writers, {"sendData", "_send"})
        closers = {name for name, member in inspect.getmembers(WebSocketServerProtocol, inspect.isfunction)
                   if re.search(r"self\.transport\.(loseConnection|abortConnection)", inspect.getsource(member))}
        self.assertEqual(closers, {"_closeConnection"})


def client_frame(payload: bytes, opcode: int = 0x2, key: bytes = b"\x00\x00\x00\x00", fin: bool = True) -> bytes:
    """
    One frame as a client sends it: masked (by default with a zero key,
    which leaves the payload as it is), final unless C{fin} is false.
    """
    size = len(payload)
    first = (0x80 if fin else 0) | opcode
    head = bytes((first, 0x80 | size)) if size < 126 else bytes((first, 0x80 | 126)) + size.to_bytes(2, "big")
    return head + key + bytes(byte ^ key[i % 4] for i, byte in enumerate(payload))


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """
    The unmasked frames the server wrote, as C{(opcode, payload)}.
    """
    frames = []
    while data:
        opcode, size, offset = data[0] & 0x0F, data[1] & 0x7F, 2
        if size == 126:
            size, offset = int.from_bytes(data[2:4], "big"), 4
        frames.append((opcode, data[offset:offset + size]))
        data = data[offset + size:]
    return frames


UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def opened_link(options: FrontendOptions) -> tuple[WebSocketLink, EventTransport]:
    """
    A link to a frontend answering C{connector.game.echo}, past the
    WebSocket upgrade and the Pomelo handshake, and its transport (events
    cleared).
    """
    hooks = HookRegistry()
    dispatcher = Dispatcher("connector-1", hooks)
    dispatcher.add("connector.game.echo", lambda msg, session: msg)
    sessions = SessionService("connector-1")
    frontend = Frontend("connector-1", options, RouteDictionary.build(dispatcher.handlers, []),
                        dispatcher, sessions, hooks, Clock())
    factory = WebSocketFactory(frontend)
    # No Autobahn timers on the global reactor in a synchronous test.
    factory.setProtocolOptions(openHandshakeTimeout=0, closeHandshakeTimeout=0)
    transport = EventTransport()
    link = factory.buildProtocol(None)
    link.makeConnection(transport)
    link.dataReceived(UPGRADE)
    link.dataReceived(client_frame(handshake_package()))
    link.dataReceived(client_frame(package.HANDSHAKE_ACK_PACKAGE))
    del transport.events[:]
    return link, transport


class GatheredFramesTests(SynchronousTestCase):
    """
    L{WebSocketLink} writes the frames of one read in one transport write,
    each package write its own frame, and keeps Autobahn's own writes and
    closes after the frames written before them.
    """

    def setUp(self) -> None:
        self.link, self.transport = opened_link(FrontendOptions(messages_per_second=3))
        self.assertEqual(self.link.connection.state, State.WORKING)

    def request(self, id: int, body: object) -> bytes:
        return client_frame(data(message.REQUEST, id, "connector.game.echo", body))

    def test_framesOfOneRead(self):
        """
        The answers to the messages of one read are one frame each, in one write.
        """
        self.link.dataReceived(b"".join(self.request(n, n) for n in (1, 2, 3)))
        [(kind, written)] = self.transport.events
        frames = server_frames(written)
        self.assertEqual([opcode for opcode, _ in frames], [0x2] * 3)
        answers = [message.decode(package.PackageDecoder().feed(payload)[0][1], {}) for _, payload in frames]
        self.assertEqual([(m.id, m.body) for m in answers], [(1, b"1"), (2, b"2"), (3, b"3")])

    def test_pushOutsideRead(self):
        """
        A push made outside a read is written at once.
        """
        self.link.connection.session.send("onPush", 1)
        self.assertEqual([kind for kind, _ in self.transport.events], ["write"])

    def test_pongAfterAnswer(self):
        """
        A ping after a request in the same read is answered after the
        request: Autobahn's pong does not overtake the gathered frame.
        """
        self.link.dataReceived(self.request(1, "a") + client_frame(b"p", opcode=0x9))
        frames = [frame for kind, data in self.transport.events for frame in server_frames(data)]
        self.assertEqual([opcode for opcode, _ in frames], [0x2, 0xA])

    def test_kickInRead(self):
        """
        A kick during a read (here: the rate limit) writes the answers
        before it, then the kick, then the close frame.
        """
        self.link.dataReceived(b"".join(self.request(n, n) for n in range(1, 6)))
        frames = [frame for kind, data in self.transport.events if kind == "write" for frame in server_frames(data)]
        self.assertEqual([opcode for opcode, _ in frames], [0x2] * 4 + [0x8])
        kick = package.PackageDecoder().feed(frames[3][1])
        self.assertEqual(kick, [(package.KICK, serializer.dumps({"reason": "rate limit exceeded"}))])


class ClientFramesTests(SynchronousTestCase):
    """
    L{WebSocketLink} unmasks whole binary frames itself and leaves every
    other frame, and every part of a frame, to Autobahn: the messages are
    the same either way, and Autobahn's checks still apply.
    """

    KEY = b"\x37\xfa\x21\x3d"

    def setUp(self) -> None:
        self.link, self.transport = opened_link(FrontendOptions(messages_per_second=1000, max_ws_message_size=200))

    def request(self, id: int, body: object, **frame: object) -> bytes:
        return client_frame(data(message.REQUEST, id, "connector.game.echo", body), key=self.KEY, **frame)

    def answers(self) -> list[tuple[int, object]]:
        frames = [frame for kind, written in self.transport.events if kind == "write"
                  for frame in server_frames(written)]
        self.assertEqual({opcode for opcode, _ in frames}, {0x2})
        return [(m.id, serializer.loads(m.body)) for m in
                (message.decode(package.PackageDecoder().feed(payload)[0][1], {}) for _, payload in frames)]

    def test_maskedFrames(self):
        """
        Requests masked with a key, of sizes on both sides of the 126-byte
        boundary, in one read, are answered with their bodies.
        """
        bodies = ["", "x" * 100, "y" * 150]
        self.link.dataReceived(b"".join(self.request(n, body) for n, body in enumerate(bodies, 1)))
        self.assertEqual(self.answers(), list(enumerate(bodies, 1)))

    def test_splitAnywhere(self):
        """
        Two requests cut into two reads at every byte: each is answered once, in order.
        """
        stream = self.request(1, "a" * 130) + self.request(2, "b")
        for cut in range(1, len(stream)):
            del self.transport.events[:]
            self.link.dataReceived(stream[:cut])
            self.link.dataReceived(stream[cut:])
            self.assertEqual(self.answers(), [(1, "a" * 130), (2, "b")], cut)

    def test_fragmented(self):
        """
        A message in two frames (Autobahn's path), between whole frames, is answered.
        """
        payload = data(message.REQUEST, 2, "connector.game.echo", "frag")
        self.link.dataReceived(self.request(1, "one") + client_frame(payload[:5], key=self.KEY, fin=False)
                               + client_frame(payload[5:], opcode=0x0, key=self.KEY) + self.request(3, "three"))
        self.assertEqual(self.answers(), [(1, "one"), (2, "frag"), (3, "three")])

    def test_tooLarge(self):
        """
        A frame larger than C{max_ws_message_size} after an ordinary one:
        the first is answered, then Autobahn closes with 1009 (message too big).
        """
        self.link.dataReceived(self.request(1, "ok") + self.request(2, "z" * 300))
        frames = [frame for kind, written in self.transport.events if kind == "write"
                  for frame in server_frames(written)]
        self.assertEqual([opcode for opcode, _ in frames], [0x2, 0x8])
        self.assertEqual(int.from_bytes(frames[1][1][:2], "big"), 1009)

    def test_internals(self):
        """
        The Autobahn attributes L{WebSocketLink._frames} reads to know that
        Autobahn is between frames exist in the installed Autobahn.
        """
        import inspect

        source = inspect.getsource(WebSocketServerProtocol.processData)
        for name in ("self.current_frame is None", "self.data", "self.inside_message",
                     "self.requireMaskedClientFrames"):
            self.assertIn(name, source)
        self.assertIn("self.maxMessagePayloadSize", inspect.getsource(WebSocketServerProtocol.onFrameBegin)
                      + inspect.getsource(WebSocketServerProtocol._onMessageFrameBegin)
                      + inspect.getsource(WebSocketServerProtocol.onMessageFrameBegin))
