"""
The chat demo's small-room path, counted rather than timed: what the servers
do per chat message, in Python function calls, on a busy machine where
wall-clock figures move with the load.

    python bench/chatpath.py [--rooms 10] [--users 10] [--messages 1000] [--json FILE]
    python bench/chatpath.py --sockets [--strace FILE]
    valgrind --tool=callgrind --instr-atstart=no python bench/chatpath.py [--sockets] --callgrind

It runs the chat example (C{examples/chat}) as the pinus comparison's
C{chat-10x10} path does (one connector, C{connector-1}, and one chat
server, C{chat-1}; JSON bodies, no route dictionary, no protobuf) inside
this process, in a L{MemoryCluster}: node links over Perspective Broker and
client connections (raw TCP) pumped in memory, time from one clock, so that
every run does exactly the same work. C{--rooms} x C{--users} clients enter
their rooms through C{connector.entryHandler.enter}; then, in turn, user
after user, each C{chat.chatHandler.send}s C{{"content", "target": "*"}},
and the cluster is flushed after each message, as the demo's load (5
messages a second per user) reaches the servers one message at a time.
Time does not pass, so the test clients send no heartbeats (their timers
would make the memory clock's sorting most of the instructions). A
message is one client request forwarded by the connector to the chat server,
the handler, the answer back, and a push of C{onChat} to every member of the
room (the sender included) through the connector.

With C{--sockets} the two servers listen on free loopback ports in this
process, under Twisted's default reactor (epoll on Linux), and the clients
speak WebSocket; each message waits for its answer and its pushes before
the next is sent. With C{--strace FILE} as well, C{strace -c} counts the
system calls of the whole process (its clients' included) over the
measured messages.

Counted over the C{--messages} messages, after C{--warmup} of them (every
push and answer is checked), with C{sys.setprofile}: the Python function
calls and the calls of built-in functions made by the servers (everything
but the test clients, which are the code under C{gamenet.client}, and the
in-memory pumps and clock; on sockets the reactor's handling of the
clients' sockets is counted too, the same before and after a change of the
servers), per message, and the top functions by calls.
With C{--callgrind}, under valgrind's callgrind started with
C{--instr-atstart=no}, it turns instrumentation on for the measured
messages only (C{callgrind_control -i on}), and callgrind's total is the
instructions of the whole process (clients and pumps included) over them.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from twisted.internet.defer import Deferred  # noqa: E402
from twisted.internet.task import deferLater  # noqa: E402
from twisted.python.failure import Failure  # noqa: E402

from gamenet.client import Client  # noqa: E402
from gamenet.plugins import discover  # noqa: E402
from gamenet.testing import (  # noqa: E402
    MemoryCluster, backend, client_port, cluster_config, free_ports, frontend, start_server,
)

from _common import callgrind_instrumentation  # noqa: E402

PLUGINS = ["examples.chat.plugins"]

# Where the code of the harness lives (its own calls are not counted);
# what the test clients call is not counted, nor what the memory clock's
# sorting of its delayed calls and the cluster's scans of them call (a real
# reactor keeps a heap instead).
_HARNESS = (os.sep + "iosim.py", os.sep + "testing.py", os.sep + "testing" + os.sep)
_CLIENT = os.sep + "gamenet" + os.sep + "client"  # client.py, or the package client/
_SORT = "_sortCalls"


def _harness(filename: str) -> bool:
    return any(part in filename for part in _HARNESS)


def chat_cluster(sockets: bool) -> Any:
    """
    C{connector-1} and C{chat-1} with the chat example's plugins, every limit
    at its default but the per-client message rate (raised, as in every
    benchmark here); on free loopback ports when C{sockets}.
    """
    client_port, connector_port, chat_port = free_ports(3) if sockets else (3050, 0, 0)
    return cluster_config(
        frontend("connector-1", "connector", client_port, connector_port, transport="websocket",
                 messages_per_second=1_000_000),
        backend("chat-1", "chat", chat_port),
        extra_routes=["onChat", "onAdd", "onLeave"],
    )


class Memory:
    """
    The cluster in a L{MemoryCluster}: every step is flushed through.
    """

    def __init__(self) -> None:
        self.cluster = MemoryCluster(chat_cluster(False), discover(PLUGINS))
        self.cluster.start()

    async def client(self) -> Any:
        return self.cluster.client("connector-1", heartbeat=False)

    async def request(self, client: Any, route: str, msg: Any, pushes: int = 0) -> Any:
        d = client.request(route, msg)
        self.cluster.flush()
        return await d

    async def stop(self) -> None:
        self.cluster.stop()


class Sockets:
    """
    The servers started on loopback sockets in this process, WebSocket
    clients connected to C{connector-1}; each step waits for its answer and
    for the pushes it causes.
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.config = chat_cluster(True)
        self.apps: list[Any] = []
        self.arrived = 0
        self.waiting: tuple[int, Deferred[None]] | None = None

    async def start(self) -> None:
        registrations = discover(PLUGINS)
        for server_id in ("chat-1", "connector-1"):
            self.apps.append(await start_server(self.config, server_id, registrations, reactor=self.reactor))
        for _ in range(600):  # the node links come up within a few reactor turns; 60 s at most
            if all(link.up for app in self.apps for link in app.node.links.values()):
                return
            await deferLater(self.reactor, 0.1, lambda: None)
        raise RuntimeError("the node links did not come up")

    async def client(self) -> Any:
        client = await Client.connect(self.reactor, "127.0.0.1", client_port(self.apps[1]), "websocket",
                                      heartbeat=False)
        client.on("onChat", self._arrived)
        return client

    def _arrived(self, msg: Any) -> None:
        self.arrived += 1
        if self.waiting is not None and self.arrived >= self.waiting[0]:
            d, self.waiting = self.waiting[1], None
            # Once every listener of this push has it (drive's own counts it after this one).
            self.reactor.callLater(0, d.callback, None)

    async def request(self, client: Any, route: str, msg: Any, pushes: int = 0) -> Any:
        d: Deferred[None] = Deferred()
        self.waiting = (self.arrived + pushes, d)
        answer = await client.request(route, msg)
        if pushes:
            await d
        self.waiting = None
        return answer

    async def stop(self) -> None:
        for app in reversed(self.apps):
            await app.stopService()


class Counter:
    """
    A C{sys.setprofile} hook counting the servers' calls: a frame of the test
    clients (or of the memory clock's sorting) marks everything under it as
    theirs, the harness's own frames are left out.
    """

    def __init__(self) -> None:
        self.python = 0
        self.builtin = 0
        self.by_function: collections.Counter[str] = collections.Counter()
        self._client: dict[int, bool] = {}
        self._stack: list[bool] = []

    def __call__(self, frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            filename = frame.f_code.co_filename
            name = frame.f_code.co_name
            inside = ((self._stack[-1] if self._stack else False) or _CLIENT in filename or name == _SORT
                      or (name == "<genexpr>" and _harness(filename)))
            self._stack.append(inside)
            if not inside and not _harness(filename):
                self.python += 1
                code = frame.f_code
                self.by_function[f"{Path(filename).name}:{code.co_firstlineno}({code.co_name})"] += 1
        elif event == "return":
            if self._stack:
                self._stack.pop()
        elif event == "c_call":
            if not (self._stack and self._stack[-1]):
                self.builtin += 1


async def drive(args: argparse.Namespace, cluster: Any, counter: Counter) -> int:
    """
    Enter every user, send the warm-up and the counted messages; 0 when
    every answer and push came as expected.
    """
    clients, pushes = [], []
    for i in range(args.rooms * args.users):
        client = await cluster.client()
        seen: list[Any] = []
        client.on("onChat", seen.append)
        answer = await cluster.request(client, "connector.entryHandler.enter",
                                       {"username": f"user{i}", "rid": f"room{i % args.rooms}"})
        if "users" not in answer:
            print(f"user{i} did not enter: {answer}", file=sys.stderr)
            return 1
        clients.append(client)
        pushes.append(seen)

    async def send(count: int, offset: int) -> list[Any]:
        answers = []
        for n in range(offset, offset + count):
            answers.append(await cluster.request(clients[n % len(clients)], "chat.chatHandler.send",
                                                 {"content": f"hello {n}", "target": "*"}, args.users))
        return answers

    await send(args.warmup, 0)
    for seen in pushes:
        seen.clear()
    stop = measuring(args, counter)
    answers = await send(args.messages, args.warmup)
    stop()
    delivered = sum(len(seen) for seen in pushes)
    expected = args.messages * args.users
    for client in clients:
        client.close()
    await cluster.stop()
    if answers != [{}] * args.messages or delivered != expected:
        print(f"wrong: {sum(a == {} for a in answers)} of {args.messages} answered, "
              f"{delivered} of {expected} pushes delivered", file=sys.stderr)
        return 1
    return 0


def measuring(args: argparse.Namespace, counter: Counter) -> Callable[[], None]:
    """
    Start counting: calls, or callgrind's instrumentation, and the system
    calls with C{--strace}; the function that stops it.
    """
    pid = str(os.getpid())
    tracer = None
    if args.strace is not None:
        tracer = subprocess.Popen(["strace", "-c", "-f", "-o", str(args.strace), "-p", pid],
                                  stderr=subprocess.PIPE, text=True)
        assert tracer.stderr is not None
        tracer.stderr.readline()  # "strace: Process N attached": counting from here
    if args.callgrind:
        callgrind_instrumentation(True)
    else:
        sys.setprofile(counter)

    def stop() -> None:
        sys.setprofile(None)
        if args.callgrind:
            callgrind_instrumentation(False)
        if tracer is not None:
            tracer.send_signal(signal.SIGINT)
            tracer.wait(60)

    return stop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--users", type=int, default=10, help="users per room")
    parser.add_argument("--messages", type=int, default=1000, help="messages counted")
    parser.add_argument("--warmup", type=int, default=200, help="messages sent before counting")
    parser.add_argument("--sockets", action="store_true",
                        help="servers on loopback sockets and WebSocket clients, under the default reactor")
    parser.add_argument("--strace", type=Path, help="with --sockets: strace's count of system calls, to this file")
    parser.add_argument("--top", type=int, default=25, help="functions listed by calls")
    parser.add_argument("--callgrind", action="store_true",
                        help="under callgrind (--instr-atstart=no): instrument the measured messages only")
    parser.add_argument("--json", type=Path, help="write the counts here as JSON")
    args = parser.parse_args(argv)

    counter = Counter()
    if args.sockets:
        from twisted.internet import reactor  # Twisted's default: epoll on Linux

        async def run() -> int:
            cluster = Sockets(reactor)
            await cluster.start()
            return await drive(args, cluster, counter)

        status: list[Any] = []
        Deferred.fromCoroutine(run()).addBoth(status.append).addBoth(lambda _: reactor.stop())
        reactor.run()
    else:
        status = []
        Deferred.fromCoroutine(drive(args, Memory(), counter)).addBoth(status.append)
    if not status or isinstance(status[0], Failure):
        if status:
            status[0].printTraceback()
        return 2
    if status[0]:
        return int(status[0])
    per = args.messages
    if args.callgrind:
        print(f"{per} messages, {per * args.users} pushes: see callgrind's total instructions")
        return 0
    mode = "loopback sockets, WebSocket clients" if args.sockets else "in memory, TCP clients"
    print(f"chat path ({mode}): {args.rooms} rooms x {args.users} users, {per} messages "
          f"(1 request, 1 answer, {args.users} pushes each)")
    print(f"servers' Python calls per message:   {counter.python / per:8.1f}")
    print(f"servers' built-in calls per message: {counter.builtin / per:8.1f}")
    if args.strace is not None:
        print(f"system calls (whole process, clients included): see {args.strace}")
    print(f"\ntop {args.top} functions by calls per message:")
    for name, calls in counter.by_function.most_common(args.top):
        print(f"{calls / per:8.2f}  {name}")
    if args.json is not None:
        args.json.write_text(json.dumps({
            "rooms": args.rooms, "users": args.users, "messages": per, "sockets": args.sockets,
            "python_calls_per_message": counter.python / per,
            "builtin_calls_per_message": counter.builtin / per,
            "by_function": {name: calls / per for name, calls in counter.by_function.most_common()},
        }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
