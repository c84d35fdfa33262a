"""
The baseline of bench/echo.py: a minimal server the same Pomelo client can
drive, written the ordinary way against Twisted (and, for WebSocket, Autobahn's
onMessage and sendMessage), to measure what the platform costs per request.

    python bench/bare_echo.py --port PORT [--transport websocket|tcp] [--heartbeat SECONDS]

It imports nothing of gamenet and keeps no state but the TCP read buffer.
Exactly what it does with each Pomelo package a client sends:

- handshake (type 1): answers one canned handshake package, L{handshake_answer}
  (code 200, heartbeat C{--heartbeat} (30), and a route dictionary holding only
  C{connector.echoHandler.echo} as code 1), whatever the request said, so
  that the client sends the same compressed route as it does to gamenet;
- handshake ack (type 2): answers a heartbeat, the first one, as Pomelo
  servers do (a client starts its heartbeats from it);
- heartbeat (type 3): answers a heartbeat;
- data (type 4) holding a request: answers a response with the same id and
  body, byte for byte: the flag byte becomes 0x04 (response), the route (a
  2-byte code, or a length byte and the route) is cut out, and the package
  length is rewritten. Nothing is decoded: no JSON, no route lookup;
- anything else (notify, kick): ignored.

There are no limits, timeouts, sessions, heartbeat checks or error answers.

Over WebSocket (Autobahn, with the protocol options gamenet's connector sets)
each binary message is taken as whole packages, and the answers to one message
go out as one message. Over TCP the stream is cut into packages, a partial
package waiting for more bytes, and the answers to one read go out in one write.
"""

from __future__ import annotations

import argparse

HANDSHAKE = 1
HANDSHAKE_ACK = 2
HEARTBEAT = 3
DATA = 4

HEARTBEAT_PACKAGE = b"\x03\x00\x00\x00"


def handshake_answer(heartbeat: float) -> bytes:
    """
    The handshake package answered to every client.
    """
    body = (b'{"code":200,"sys":{"serializer":"json","heartbeat":%g,"useDict":true,'
            b'"dict":{"connector.echoHandler.echo":1}}}' % heartbeat)
    return bytes((HANDSHAKE,)) + len(body).to_bytes(3, "big") + body


HANDSHAKE_ANSWER = handshake_answer(30)


def answer(data: bytes) -> tuple[bytes, bytes]:
    """
    Answer the whole packages at the start of C{data}.

    @return: the answers, and the bytes of a package not complete yet.
    """
    answers = []
    offset = 0
    end = len(data)
    while end - offset >= 4:
        start = offset + 4
        size = (data[offset + 1] << 16) | (data[offset + 2] << 8) | data[offset + 3]
        if end - start < size:
            break
        kind = data[offset]
        offset = start + size
        if kind == DATA and size and not data[start] & 0x0E:
            # A request: flag, id (base-128, high bit on all but its last byte), route, body.
            id_end = start + 2
            while data[id_end - 1] & 0x80:
                id_end += 1
            body = id_end + 2 if data[start] & 0x01 else id_end + 1 + data[id_end]
            length = id_end - start + offset - body
            answers.append(bytes((DATA, length >> 16, (length >> 8) & 0xFF, length & 0xFF, 0x04)))
            answers.append(data[start + 1 : id_end])
            answers.append(data[body:offset])
        elif kind == HANDSHAKE:
            answers.append(HANDSHAKE_ANSWER)
        elif kind == HEARTBEAT or kind == HANDSHAKE_ACK:
            answers.append(HEARTBEAT_PACKAGE)
    return b"".join(answers), data[offset:]


def websocket_factory() -> object:
    from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol

    class Echo(WebSocketServerProtocol):
        def onMessage(self, payload: bytes, isBinary: bool) -> None:
            answers, _ = answer(payload)
            if answers:
                self.sendMessage(answers, isBinary=True)

    factory = WebSocketServerFactory()
    factory.protocol = Echo
    factory.noisy = False
    # The options gamenet.connector.websocket.WebSocketFactory sets, with its default limits.
    factory.setProtocolOptions(
        maxMessagePayloadSize=256 * 1024,
        maxFramePayloadSize=256 * 1024,
        openHandshakeTimeout=10,
        closeHandshakeTimeout=1,
        autoPingInterval=0,
        failByDrop=False,
        tcpNoDelay=True,
    )
    return factory


def tcp_factory() -> object:
    from twisted.internet.protocol import Factory, Protocol

    class Echo(Protocol):
        pending = b""

        def dataReceived(self, data: bytes) -> None:
            answers, self.pending = answer(self.pending + data if self.pending else data)
            if answers:
                self.transport.write(answers)

    factory = Factory.forProtocol(Echo)
    factory.noisy = False
    return factory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--transport", choices=("websocket", "tcp"), default="websocket")
    parser.add_argument("--heartbeat", type=float, default=30.0, help="the heartbeat interval the handshake gives")
    options = parser.parse_args()
    global HANDSHAKE_ANSWER
    HANDSHAKE_ANSWER = handshake_answer(options.heartbeat)

    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor

    factory = websocket_factory() if options.transport == "websocket" else tcp_factory()
    port = reactor.listenTCP(options.port, factory, backlog=511, interface=options.host)
    print(f"bare {options.transport} echo listening on {options.host}:{port.getHost().port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
