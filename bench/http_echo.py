"""
HTTP benchmark: gamenet's HTTP front against a bare twisted.web resource.

    .venv/bin/python bench/http_echo.py [--connections 20] [--seconds 5] [--rounds 1] [--json FILE]

Starts two servers on free loopback ports, each in its own process:

- bare: this script with C{--bare PORT}, a twisted.web L{Site} whose one
  resource answers a C{POST}'s body as it came (C{application/json});
- gamenet: C{twistd -n gamenet} running a backend of type C{web} with an
  C{http_port}, whose C{POST /echo} (bench/plugins/web.py) decodes the JSON
  body and answers it encoded again, found among 18 other patterns (a REST
  object on C{/api/<name>} and C{/api/<name>/:id} for nine names), through
  gamenet's limits, hooks lookup, routing and error handling.

Then, from this process, C{--connections} keep-alive connections each keep
one C{POST /echo} of C{{"text": "hello, world", "n": 42}} in flight, 1 s of
warm-up and C{--seconds} measured, every answer checked; C{--rounds} times,
alternating which server goes first. For each it prints completed requests
per second, the server's CPU time per request (from /proc, over the measured
window), its CPU use (100% is one core) and latency percentiles; then the
gamenet/bare ratio of CPU per request (the median over the rounds).

Exit status: 0; 1 when a request got a wrong answer; 2 when a server did not start.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from _common import REPO, Server, ServerError, columns, free_port, machine, running, summary, workdir

BODY = json.dumps({"text": "hello, world", "n": 42}).encode()
REQUEST = (b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n" % len(BODY)) + BODY


def bare(port: int) -> None:
    """
    Serve the bare echo on C{port} until stopped.
    """
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    class Echo(Resource):
        isLeaf = True

        def render_POST(self, request: Any) -> bytes:
            request.setHeader(b"content-type", b"application/json")
            return request.content.read()

    site = Site(Echo())
    site.log = lambda request: None  # type: ignore[method-assign]
    reactor.listenTCP(port, site, interface="127.0.0.1")  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


def gamenet_config(path: Path, http_port: int) -> None:
    path.write_text(
        "[cluster]\nname = bench\nsecret = bench\nenv = bench\n"
        f"plugin_path = {REPO} {REPO / 'bench'}\nplugins = plugins\n\n"
        f"[server:web-1]\ntype = web\nhost = 127.0.0.1\nnode_port = {free_port()}\nhttp_port = {http_port}\n"
    )


async def connection(port: int, measure_from: float, until: float, latencies: list[float], wrong: list[bytes]) -> int:
    """
    One keep-alive connection sending L{REQUEST} until C{until}; the answers
    after C{measure_from} it counts and times.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    done = 0
    try:
        while (sent := time.monotonic()) < until:
            writer.write(REQUEST)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            body = await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200") or json.loads(body) != json.loads(BODY):
                wrong.append(head + body)
            if sent >= measure_from:
                latencies.append(time.monotonic() - sent)
                done += 1
    finally:
        writer.close()
    return done


async def load(server: Server, connections: int, seconds: float) -> dict[str, Any]:
    """
    Measure one server: L{connection} C{connections} times at once.
    """
    # Imported here: gamenet installs a reactor, which the bare server (this script) does itself.
    from gamenet.robot.procstat import run_seconds

    start = time.monotonic()
    measure_from, until = start + 1.0, start + 1.0 + seconds
    latencies: list[float] = []
    wrong: list[bytes] = []
    tasks = [asyncio.ensure_future(connection(server.port, measure_from, until, latencies, wrong))
             for _ in range(connections)]
    await asyncio.sleep(max(0.0, measure_from - time.monotonic()))
    cpu_before = run_seconds(server.pid)
    done = sum(await asyncio.gather(*tasks))
    cpu = run_seconds(server.pid) - cpu_before
    latencies.sort()
    return {
        "server": server.name, "requests": done, "rps": done / seconds, "cpu_us": cpu / done * 1e6 if done else None,
        "cpu_percent": cpu / seconds * 100, "p50_ms": latencies[len(latencies) // 2] * 1000 if latencies else None,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000 if latencies else None, "wrong": len(wrong),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", type=Path, metavar="FILE")
    parser.add_argument("--bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        bare(args.bare)
        return 0
    work = workdir()
    config = work / "http.ini"
    http_port, bare_port = free_port(), free_port()
    gamenet_config(config, http_port)
    twistd = str(Path(sys.executable).with_name("twistd"))
    servers = [
        Server("bare twisted.web", [sys.executable, str(Path(__file__).resolve()), "--bare", str(bare_port)],
               bare_port, work),
        Server("gamenet", [twistd, "--nodaemon", "--pidfile=", "--reactor=epoll", "gamenet", "--config", str(config),
                           "--server", "web-1"], http_port, work),
    ]
    rows: list[dict[str, Any]] = []
    try:
        with running(work, servers):
            for n in range(args.rounds):
                for server in servers if n % 2 == 0 else list(reversed(servers)):
                    rows.append(asyncio.run(load(server, args.connections, args.seconds)))
                    server.check()
    except ServerError as e:
        print(e, file=sys.stderr)
        return 2
    print(machine())
    print(f"{args.connections} keep-alive connections, one request in flight each, {args.seconds:g} s measured\n")
    print(columns([("server", "req/s", "CPU us/req", "CPU %", "p50 ms", "p99 ms", "wrong")] + [
        (r["server"], f"{r['rps']:.0f}", f"{r['cpu_us']:.0f}", f"{r['cpu_percent']:.0f}", f"{r['p50_ms']:.2f}",
         f"{r['p99_ms']:.2f}", str(r["wrong"])) for r in rows], 1))
    by = {name: [r for r in rows if r["server"] == name] for name in ("bare twisted.web", "gamenet")}
    ratios = [g["cpu_us"] / b["cpu_us"] for b, g in zip(by["bare twisted.web"], by["gamenet"])]
    print(f"\ngamenet/bare CPU per request: {summary(ratios)}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "cpu_ratio": statistics.median(ratios)}, indent=2))
    return 1 if any(r["wrong"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
