"""
The TCP echo path, counted rather than timed: what a server does per echo
request over raw TCP, gamenet's connector against the bare Twisted echo of
C{bench/echo.py}, on a busy machine where wall-clock figures move with the
load.

    python bench/echopath.py [--server gamenet|bare] [--per-read 10] [--reads 2000]
    valgrind --tool=callgrind --instr-atstart=no python bench/echopath.py --server S --callgrind

The server runs in this process under an epoll reactor of its own that is
never started: the driver calls its C{doPoll} itself, so every read, write
and registration of the server's socket is Twisted's own path, without
timers or other connections. gamenet is C{connector-1} of a L{MemoryCluster}
with the chat example's plugins (raw TCP, the route dictionary on, heartbeat
30, C{messages_per_second} 1000000, every other limit at its default, metrics
off), as C{bench/echo.py} runs it; its L{TCPFactory} listens on a loopback
port of that reactor. The bare server is C{bench/bare_echo.py}'s TCP factory.

One client, a plain blocking socket, does the handshake, and then, C{--reads}
times (after C{--warmup} of them), sends C{--per-read} requests of
C{{"text": "hello, world", "n": 42}} on C{connector.echoHandler.echo} (by
route code, ids counting up from 1 as a Pomelo client's do) in one write, and
polls the reactor until their answers are all back. The requests are made
before the measured reads and the answers are compared with the expected
bytes after them, so that the client's own work per read is a C{send} and a
few C{recv}s, the same for both servers.

It prints the process CPU time per request (a look only: it moves with the
machine's load). With C{--callgrind}, under valgrind's callgrind started with
C{--instr-atstart=no}, it turns instrumentation on for the measured reads
only (C{callgrind_control -i on}); callgrind's total divided by the requests
is the figure to compare (user-space instructions: the system calls' kernel
time is not in it).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from twisted.internet.epollreactor import EPollReactor  # noqa: E402

from gamenet.connector.tcp import TCPFactory  # noqa: E402
from gamenet.plugins import discover  # noqa: E402
from gamenet.protocol import message, package, serializer  # noqa: E402
from gamenet.testing import MemoryCluster, cluster_config, frontend  # noqa: E402

from _common import callgrind_instrumentation  # noqa: E402

ROUTE = "connector.echoHandler.echo"
BODY = serializer.dumps({"text": "hello, world", "n": 42})
HANDSHAKE = package.encode(package.HANDSHAKE, serializer.dumps({"sys": {"type": "python", "version": "0.1"}}))


def gamenet_factory() -> tuple[Any, Any]:
    """
    The connector's client factory, and the cluster to stop at the end.
    """
    cluster = MemoryCluster(
        cluster_config(frontend("connector-1", "connector", transport="tcp", heartbeat=30,
                                messages_per_second=1_000_000)),
        discover(["examples.chat.plugins"]))
    cluster.start()
    return TCPFactory(cluster.apps["connector-1"].frontend), cluster


def bare_factory() -> tuple[Any, Any]:
    """
    The bare Twisted echo's factory (bench/bare_echo.py), and nothing to stop.
    """
    import bare_echo

    return bare_echo.tcp_factory(), None


class Driver:
    """
    One client socket against a server listening on C{reactor}, which this
    drives by hand.
    """

    def __init__(self, reactor: EPollReactor, factory: Any) -> None:
        self.reactor = reactor
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.client = socket.create_connection(("127.0.0.1", port.getHost().port))
        self.client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client.setblocking(False)
        self.buffer = bytearray(1 << 20)
        self.received = bytearray()

    def exchange(self, data: bytes, expected: int) -> None:
        """
        Send C{data}, and poll the server until C{expected} bytes have come back.
        """
        self.client.send(data)
        got = 0
        view = memoryview(self.buffer)
        while got < expected:
            self.reactor.doPoll(5.0)
            while True:
                try:
                    n = self.client.recv_into(view)
                except BlockingIOError:
                    break
                if not n:
                    raise RuntimeError("the server closed the connection")
                self.received += view[:n]
                got += n

    def handshake(self) -> int:
        """
        Handshake and ack; @return: the echo route's code.
        """
        self.client.send(HANDSHAKE)
        answer = self._package()
        self.client.send(package.HANDSHAKE_ACK_PACKAGE)
        self._package()  # the first heartbeat
        self.received.clear()
        return int(json.loads(answer)["sys"]["dict"][ROUTE])

    def _package(self) -> bytes:
        while True:
            packages = package.PackageDecoder().feed(bytes(self.received))
            if packages:
                self.received = self.received[4 + len(packages[0][1]):]
                return packages[0][1]
            self.exchange(b"", 1)


def batches(code: int, per_read: int, reads: int, first_id: int = 1) -> tuple[list[bytes], list[int], bytes]:
    """
    The requests of C{reads} reads, C{per_read} each, the size of each
    read's answers, and all the answers.
    """
    sent, sizes, answers = [], [], []
    id = first_id
    for _ in range(reads):
        requests, replies = [], []
        for _ in range(per_read):
            requests.append(package.encode(package.DATA, message.encode(message.REQUEST, id, ROUTE, BODY, code)))
            replies.append(package.encode(package.DATA, message.encode_response(id, BODY)))
            id += 1
        sent.append(b"".join(requests))
        sizes.append(sum(map(len, replies)))
        answers.extend(replies)
    return sent, sizes, b"".join(answers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", choices=("gamenet", "bare"), default="gamenet")
    parser.add_argument("--per-read", type=int, default=10, help="requests the client writes at once")
    parser.add_argument("--reads", type=int, default=2000, help="measured reads")
    parser.add_argument("--warmup", type=int, default=200, help="reads before the measured ones")
    parser.add_argument("--callgrind", action="store_true",
                        help="under callgrind (--instr-atstart=no): instrument the measured reads only")
    args = parser.parse_args(argv)
    reactor = EPollReactor()
    factory, cluster = gamenet_factory() if args.server == "gamenet" else bare_factory()
    driver = Driver(reactor, factory)
    code = driver.handshake()
    warm, warm_sizes, warm_answers = batches(code, args.per_read, args.warmup)
    sent, sizes, answers = batches(code, args.per_read, args.reads, args.per_read * args.warmup + 1)
    for data, size in zip(warm, warm_sizes):
        driver.exchange(data, size)
    if driver.received != warm_answers:
        raise SystemExit("echopath.py: wrong answers in the warm-up")
    driver.received.clear()
    if args.callgrind:
        callgrind_instrumentation(True)
    start = time.process_time()
    for data, size in zip(sent, sizes):
        driver.exchange(data, size)
    cpu = time.process_time() - start
    if args.callgrind:
        callgrind_instrumentation(False)
    if driver.received != answers:
        raise SystemExit("echopath.py: wrong answers")
    requests = args.reads * args.per_read
    print(f"{args.server}: {requests} requests in {args.reads} reads of {args.per_read}, every answer checked; "
          f"process CPU {cpu / requests * 1e6:.2f} us per request"
          + ("; see callgrind's total instructions" if args.callgrind else ""))
    if cluster is not None:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
