"""
Session storage benchmark: settings writes per second through
L{gamenet.storage.redis.RedisStorage} against L{gamenet.storage.MemoryStorage}.

    .venv/bin/python bench/storage.py [--sessions 1000] [--writes 100]
        [--inflight 100] [--seconds 10] [--keys 8]

Starts a private C{redis-server} on a free loopback port (nothing kept on
disk; stopped at the end), then, for each storage in turn, in one process
and on the real reactor: C{--sessions} sessions of C{--keys} settings each,
C{--writes} writes per session (one setting changed before each), with
C{--inflight} writes outstanding at any time, as the frontend's settings
keeper issues them (each one C{storage(session)}, bounded by the storage
timeout for Redis). A storage stops at C{--seconds} if it has not finished.
Then every session's record is read back and compared with its last
settings.

Prints the command, a table of writes per second for each storage, and the
ratio memory/redis. Exit status: 0; 1 when a write failed or a record read
back is wrong; 2 when redis-server did not start.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # this work tree's gamenet, not an installed copy

import attrs
from twisted.internet import task
from twisted.internet.defer import Deferred, gatherResults

from gamenet.storage import MemoryStorage
from gamenet.storage.redis import RedisStorage
from gamenet.testing import RedisServer, cluster_config


def sessions(count: int, keys: int) -> list[Any]:
    return [
        SimpleNamespace(uid=f"user-{i}", settings={f"key{k}": f"value {k} of user {i}" for k in range(keys)})
        for i in range(count)
    ]


async def drive(storage: Any, players: list[Any], writes: int, inflight: int, seconds: float) -> dict[str, Any]:
    """
    Write every session's settings C{writes} times, C{inflight} at a time,
    for at most C{seconds}.
    """
    jobs = ((session, n) for n in range(writes) for session in players)
    counts = {"done": 0, "errors": 0}
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        for session, n in jobs:
            if time.perf_counter() > deadline:
                return
            session.settings["n"] = n
            try:
                await storage.storage(session)
            except Exception as e:
                counts["errors"] += 1
                if counts["errors"] == 1:
                    print(f"first failed write: {e!r}", file=sys.stderr)
            else:
                counts["done"] += 1

    started = time.perf_counter()
    await gatherResults([Deferred.fromCoroutine(worker()) for _ in range(inflight)])
    elapsed = time.perf_counter() - started
    wrong = 0
    for session in players:
        if await storage.query(session.uid) != session.settings:
            wrong += 1
    return {**counts, "seconds": elapsed, "rate": counts["done"] / elapsed, "wrong": wrong}


async def run(reactor: Any, options: argparse.Namespace, redis: RedisServer) -> int:
    cluster = attrs.evolve(cluster_config(), storage="redis", redis_port=redis.port, storage_ttl=600.0,
                           storage_timeout=5.0)
    redis_storage = RedisStorage.for_cluster(cluster, reactor)
    await redis_storage.query("warm-up")  # connect before the clock starts
    backends = {"memory": MemoryStorage(600.0, reactor), "redis": redis_storage}
    results = {}
    try:
        for name, storage in backends.items():
            players = sessions(options.sessions, options.keys)
            results[name] = await drive(storage, players, options.writes, options.inflight, options.seconds)
    finally:
        await redis_storage.close()

    total = options.sessions * options.writes
    print(f"{'storage':<8} {'writes':>9} {'of':>9} {'errors':>6} {'wrong':>6} {'seconds':>8} {'writes/s':>10}")
    for name, r in results.items():
        print(f"{name:<8} {r['done']:>9} {total:>9} {r['errors']:>6} {r['wrong']:>6} {r['seconds']:>8.2f} "
              f"{r['rate']:>10,.0f}")
    ratio = results["memory"]["rate"] / results["redis"]["rate"]
    print(f"\nmemory / redis: {ratio:.1f}x")
    if options.json:
        options.json.write_text(json.dumps({"rows": results, "memory_over_redis": ratio}, indent=2))
    failed = any(r["errors"] or r["wrong"] for r in results.values())
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=1000, help="sessions written (default 1000)")
    parser.add_argument("--writes", type=int, default=100, help="writes per session (default 100)")
    parser.add_argument("--inflight", type=int, default=100, help="writes outstanding at once (default 100)")
    parser.add_argument("--seconds", type=float, default=10.0, help="at most this long per storage (default 10)")
    parser.add_argument("--keys", type=int, default=8, help="settings per session (default 8)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the rows and the ratio as JSON to FILE")
    options = parser.parse_args()

    print("command:", " ".join(shlex.quote(arg) for arg in ["python", "bench/storage.py", *sys.argv[1:]]))
    redis = RedisServer()
    try:
        version = subprocess.run([redis.executable, "--version"], capture_output=True, text=True, check=False).stdout.split()
        redis.start()
    except RuntimeError as e:
        print(f"storage.py: {e}", file=sys.stderr)
        return 2
    try:
        import txredisapi

        hiredis = "with hiredis" if txredisapi.RedisProtocol is getattr(txredisapi, "HiredisProtocol", None) else ""
        print(f"python {platform.python_version()}, {' '.join(version[:3])} on port {redis.port}, "
              f"txredisapi {getattr(txredisapi, '__version__', '?')} {hiredis}".rstrip())
        print(f"load: {options.sessions} sessions x {options.writes} writes, {options.keys} settings each, "
              f"{options.inflight} in flight, at most {options.seconds:g}s per storage\n")
        status = []
        task.react(lambda reactor: Deferred.fromCoroutine(_status(status, run(reactor, options, redis))))
    except SystemExit:
        pass
    finally:
        redis.stop()
    return status[0] if status else 1


async def _status(status: list[int], coroutine: Any) -> None:
    status.append(await coroutine)


if __name__ == "__main__":
    sys.exit(main())
