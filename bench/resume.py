"""
Resume benchmark (doc/sessions.md): what holding a push for a suspended
session costs against writing it to a live connection, and what a resume
costs against a new login, in one process, the chat example in a
L{MemoryCluster} (links and clients in memory: no sockets, no kernel).

    .venv/bin/python bench/resume.py [--pushes 100000] [--held 0,100,1000] [--rounds 20]

1. C{--pushes} pushes (C{onChat}, a 40-byte body) to one bound session,
   C{session.send} on its connector: live, then suspended (its connection
   reset; C{resume_buffer} large enough to hold them all).
2. A user on connector-1 drops; C{--held} pushes are sent to its room;
   it resumes on connector-2 and gets them: the time from its handshake to
   the last held push read, against a new client that connects and enters
   the room; each the median of C{--rounds}.

Prints the command, a table, and the ratios. Exit status 0; 1 when a
resumed client did not get every held push in order.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # this work tree's gamenet, not an installed copy

from gamenet.client import Client
from gamenet.plugins import discover
from gamenet.testing import MemoryCluster, backend, cluster_config, frontend

BODY = {"msg": "x" * 20, "from": "bob", "target": "*"}


def cluster(buffer: int) -> MemoryCluster:
    config = cluster_config(
        frontend("connector-1", "connector", 3050, resume_buffer=buffer, messages_per_second=1000000),
        frontend("connector-2", "connector", 3051, resume_buffer=buffer, messages_per_second=1000000),
        backend("chat-1", "chat"), extra_routes=["onChat", "onAdd", "onLeave"])
    memory = MemoryCluster(config, discover(["examples.chat.plugins"]))
    memory.start()
    return memory


def connect(memory: MemoryCluster, server_id: str, pushes: list[Any], **options: Any) -> tuple[Client, Any]:
    client = memory.client(server_id, pushes.append, refused=True, **options)
    pump, = (pump for pump in memory._pumps if getattr(pump.client, "client", None) is client)
    return client, pump


def enter(memory: MemoryCluster, client: Client, name: str) -> None:
    client.request("connector.entryHandler.enter", {"username": name, "rid": "lobby"})
    memory.flush()


def push_costs(count: int) -> dict[str, float]:
    memory = cluster(buffer=count * 100)
    client, pump = connect(memory, "connector-1", [], resume=True)
    enter(memory, client, "alice")
    session, = memory.apps["connector-1"].sessions.get_by_uid("alice*lobby")
    costs = {}
    for state in ("live", "suspended"):
        if state == "suspended":
            memory.drop(client)
        start = time.perf_counter()
        for _ in range(count):
            session.send("onChat", BODY)
        costs[state] = (time.perf_counter() - start) / count
        pump.serverIO.stream = []  # written bytes, never read
    memory.stop()
    return costs


def resume_costs(held: int, rounds: int) -> tuple[float, float, bool]:
    memory = cluster(buffer=held * 100 + 1024)
    bob, _ = connect(memory, "connector-2", [])
    enter(memory, bob, "bob")
    resumes, logins, whole = [], [], True
    for n in range(rounds):
        client, _ = connect(memory, "connector-1", [], resume=True)
        enter(memory, client, f"user{n}")
        token = client.resume_token
        memory.drop(client)
        for i in range(held):
            bob.request("chat.chatHandler.send", {"content": str(i), "target": "*"})
        memory.flush()
        pushes: list[Any] = []
        start = time.perf_counter()
        connect(memory, "connector-2", pushes, user={"resume": token})
        resumes.append(time.perf_counter() - start)
        whole = whole and [body["msg"] for route, body in pushes if route == "onChat"] == [str(i) for i in range(held)]
        start = time.perf_counter()
        fresh, _ = connect(memory, "connector-2", [])
        enter(memory, fresh, f"new{n}")
        logins.append(time.perf_counter() - start)
    memory.stop()
    return statistics.median(resumes), statistics.median(logins), whole


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pushes", type=int, default=100000)
    parser.add_argument("--held", default="0,100,1000")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    print("command: python " + shlex.join(["bench/resume.py", *sys.argv[1:]]))
    print(f"python {platform.python_version()}, in one process, links and clients in memory")
    costs = push_costs(args.pushes)
    print(f"\n{'push to one session':<24}{'us/push':>10}")
    for state, cost in costs.items():
        print(f"{state:<24}{cost * 1e6:>10.2f}")
    print(f"held / live: {costs['suspended'] / costs['live']:.2f}x")
    print(f"\n{'held pushes':<14}{'resume ms':>10}{'login ms':>10}{'resume/login':>14}")
    whole = True
    for held in (int(n) for n in args.held.split(",")):
        resume, login, ok = resume_costs(held, args.rounds)
        whole = whole and ok
        print(f"{held:<14}{resume * 1e3:>10.2f}{login * 1e3:>10.2f}{resume / login:>13.2f}x"
              + ("" if ok else "  (pushes missing!)"))
    return 0 if whole else 1


if __name__ == "__main__":
    sys.exit(main())
