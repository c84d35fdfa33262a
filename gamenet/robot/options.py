"""
The command line of C{gamenet bench}, its bounds, and the target check.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
from typing import Any, Sequence
from urllib.parse import urlsplit

MAX_CLIENTS = 20000
MAX_SECONDS = 3600.0
MAX_WORKERS = 64


class UsageError(Exception):
    """
    The options ask for something the robot refuses; the message says why.
    """


def is_loopback(host: str) -> bool:
    """
    Whether C{host} is a loopback address or C{localhost}, without any name lookup.
    """
    if host.lower() in ("localhost", "localhost.", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_target(host: str, allow_remote: bool) -> None:
    """
    @raise UsageError: C{host} is not loopback and remote targets are not allowed.
    """
    if not allow_remote and not is_loopback(host):
        raise UsageError(f"refusing to load {host!r}: not a loopback address "
                         f"(pass --allow-remote to load a server on another machine)")


SCHEMES = {"ws": ("websocket", False), "wss": ("websocket", True), "tcp": ("tcp", False), "tls": ("tcp", True)}


def apply_url(args: argparse.Namespace) -> None:
    """
    Set C{host}, C{port}, C{transport}, C{tls} and C{path} from C{args.url}
    (C{ws://}, C{wss://}, C{tcp://} or C{tls://} with a host and a port).

    @raise UsageError: an unknown scheme, or no port.
    """
    url = urlsplit(args.url)
    if url.scheme not in SCHEMES:
        raise UsageError(f"{args.url!r}: the scheme must be one of {', '.join(s + '://' for s in SCHEMES)}")
    try:
        port = url.port
    except ValueError:
        port = None
    if not url.hostname or port is None:
        raise UsageError(f"{args.url!r}: give a host and a port, as in ws://127.0.0.1:3010")
    if url.scheme in ("tcp", "tls") and url.path not in ("", "/"):
        raise UsageError(f"{args.url!r}: a TCP target has no path")
    args.host, args.port = url.hostname, port
    args.transport, args.tls = SCHEMES[url.scheme]
    args.path = (url.path or "/") + (f"?{url.query}" if url.query else "")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gamenet bench",
        description="Load a Pomelo server with simulated clients and report server CPU per request, "
                    "throughput, latency, pushes and errors.",
    )
    target = p.add_argument_group("target")
    target.add_argument("url", nargs="?", help="the target as a URL: ws://HOST:PORT[/PATH], wss://..., "
                        "tcp://HOST:PORT or tls://HOST:PORT (instead of --host, --port, --transport, --tls)")
    target.add_argument("--host", default="127.0.0.1", help="server host (loopback only unless --allow-remote)")
    target.add_argument("--port", type=int, help="server client port (or the gate's)")
    target.add_argument("--transport", choices=("websocket", "tcp"), default="websocket")
    target.add_argument("--tls", action="store_true", help="wrap connections in TLS (certificates not verified)")
    target.add_argument("--path", default="/", help="the WebSocket request path (default /)")
    target.add_argument("--allow-remote", action="store_true", help="allow a target that is not loopback")
    load = p.add_argument_group("load")
    load.add_argument("--clients", "-c", type=int, default=10, help="simulated clients (default 10)")
    load.add_argument("--workers", "-w", type=int, default=2, help="worker processes (default 2)")
    load.add_argument("--seconds", "-d", type=float, default=10.0,
                      help="length of the measured window (default 10)")
    load.add_argument("--warmup", type=float, default=0.0,
                      help="seconds of load before the measured window: connections and errors are counted, "
                           "answers and server CPU are not (default 0)")
    load.add_argument("--route", help="route scenario: the route to request")
    load.add_argument("--body", default="{}", help="route scenario: the JSON body (default {})")
    load.add_argument("--inflight", "-k", type=int, default=1, help="route scenario: requests in flight per client")
    load.add_argument("--echo", action="store_true",
                      help="route scenario: every answer must equal the body (else counted as wrong_answer)")
    load.add_argument("--idle", action="store_true",
                      help="idle scenario: connect, keep heartbeats, send nothing until the end")
    load.add_argument("--scenario", help="scenario module: a file path or a dotted module name with run(ctx)")
    load.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                      help="a parameter for the scenario module (ctx.params); repeatable")
    load.add_argument("--timeout", type=float, default=10.0, help="seconds before a request or connect times out")
    load.add_argument("--drain", type=float, default=2.0,
                      help="seconds to wait for answers still in flight after the deadline (default 2)")
    out = p.add_argument_group("measure and report")
    out.add_argument("--pid", type=int, action="append", default=[], help="a server process id to measure "
                     "(CPU, peak memory); repeatable")
    out.add_argument("--json", metavar="FILE", help="write the JSON report to FILE ('-' for stdout)")
    out.add_argument("--png", metavar="FILE", help="plot latency and throughput over time to FILE (needs matplotlib)")
    out.add_argument("--quiet", "-q", action="store_true", help="no progress line")
    return p


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """
    Parse and check the command line.

    @raise UsageError: out of bounds, or a remote target without C{--allow-remote}.
    """
    args = parser().parse_args(argv)
    if args.url is not None:
        apply_url(args)
    elif args.port is None:
        raise UsageError("give the target: a URL such as ws://127.0.0.1:3010, or --port")
    check_target(args.host, args.allow_remote)
    if sum((args.route is not None, args.scenario is not None, args.idle)) != 1:
        raise UsageError("give exactly one of --route, --scenario and --idle")
    if args.echo and args.route is None:
        raise UsageError("--echo goes with --route")
    if not 1 <= args.clients <= MAX_CLIENTS:
        raise UsageError(f"--clients must be between 1 and {MAX_CLIENTS}")
    if not 1 <= args.workers <= MAX_WORKERS:
        raise UsageError(f"--workers must be between 1 and {MAX_WORKERS}")
    if not 0 < args.seconds <= MAX_SECONDS:
        raise UsageError(f"--seconds must be more than 0 and at most {MAX_SECONDS:g}")
    if not 0 <= args.warmup <= MAX_SECONDS:
        raise UsageError(f"--warmup must be between 0 and {MAX_SECONDS:g}")
    if not 1 <= args.inflight <= 1000:
        raise UsageError("--inflight must be between 1 and 1000")
    if not 0 < args.timeout <= 600 or not 0 <= args.drain <= 60:
        raise UsageError("--timeout must be in (0, 600] and --drain in [0, 60]")
    try:
        args.body = json.loads(args.body)
    except ValueError as e:
        raise UsageError(f"--body is not JSON: {e}") from None
    params: dict[str, Any] = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--param {item!r} is not KEY=VALUE")
        params[key] = value
    args.params = params
    args.workers = min(args.workers, args.clients)
    if args.png:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UsageError("--png needs matplotlib: pip install 'gamenet[bench]'") from None
    return args
