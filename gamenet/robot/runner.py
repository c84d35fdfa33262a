"""
The robot's parent process: starts the workers, gathers their JSON lines,
shows progress, measures the given server processes and its own workers from
/proc, and stops everything by the deadline.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from argparse import Namespace
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from . import procstat
from .stats import Stats, Tick

STARTUP = 1.0  # seconds given to the workers to start before the load starts
GRACE = 3.0  # seconds after the drain after which a worker ends itself, whatever happens
SATURATED = 0.9  # a worker using this share of one core or more: the robot may be the bottleneck


@dataclass
class Run:
    """
    What a run measured, for the reports.
    """

    args: Namespace
    stats: Stats
    ticks: dict[int, Tick]
    elapsed: float  # seconds from the load's start to the last worker's report
    server_cpu: dict[int, float]  # seconds of CPU by pid over the run
    server_peak_rss_kib: dict[int, int]
    worker_cpu: list[float]  # seconds of CPU of each worker over the run
    warnings: list[str] = field(default_factory=list)


def _cpu(pids: list[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        try:
            out[pid] = procstat.cpu_seconds(pid)
        except (OSError, ValueError):
            pass
    return out


def _reader(worker: int, stream: TextIO, lines: queue.Queue[tuple[int, Any]]) -> None:
    for line in stream:
        try:
            lines.put((worker, json.loads(line)))
        except ValueError:
            pass
    lines.put((worker, None))


def _worker_env() -> dict[str, str]:
    # The workers import gamenet from where this process did (a source tree or an install).
    root = str(Path(__file__).resolve().parent.parent.parent)
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))}


def run(args: Namespace, progress: TextIO | None = sys.stderr) -> Run:
    """
    Run the load described by C{args} (see L{gamenet.robot.options}) and gather what it measured.
    """
    for pid in args.pid:
        if not procstat.alive(pid):
            raise ValueError(f"no process {pid} to measure")
    start = time.monotonic() + STARTUP
    end = start + args.seconds
    hard_end = end + args.drain + GRACE
    shares = [args.clients // args.workers + (1 if i < args.clients % args.workers else 0)
              for i in range(args.workers)]
    common = {
        "host": args.host, "port": args.port, "transport": args.transport, "tls": args.tls,
        "allow_remote": args.allow_remote, "timeout": args.timeout, "route": args.route, "body": args.body,
        "inflight": args.inflight, "scenario": args.scenario and (
            str(Path(args.scenario).resolve()) if args.scenario.endswith(".py") else args.scenario),
        "params": args.params, "start": start, "end": end, "drain": args.drain, "hard_end": hard_end,
    }
    lines: queue.Queue[tuple[int, Any]] = queue.Queue()
    workers: list[subprocess.Popen[str]] = []
    first = 0
    try:
        for n, share in enumerate(shares):
            spec = {**common, "first_index": first, "clients": share}
            first += share
            worker = subprocess.Popen([sys.executable, "-m", "gamenet.robot.worker", json.dumps(spec)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_worker_env())
            workers.append(worker)
            threading.Thread(target=_reader, args=(n, worker.stdout, lines), daemon=True).start()
        return _gather(args, workers, lines, start, end, hard_end, progress)
    finally:
        for worker in workers:
            if worker.stdin is not None:
                worker.stdin.close()
        for worker in workers:
            try:
                worker.wait(max(0.1, hard_end + 1.0 - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()


def _gather(args: Namespace, workers: list[subprocess.Popen[str]], lines: queue.Queue[tuple[int, Any]],
            start: float, end: float, hard_end: float, progress: TextIO | None) -> Run:
    pids = list(args.pid)
    worker_pids = [w.pid for w in workers]
    time.sleep(max(0.0, start - time.monotonic()))
    server0 = _cpu(pids)
    workers0 = _cpu(worker_pids)
    stats = Stats()
    ticks: dict[int, Tick] = {}
    reported: set[int] = set()
    ended: set[int] = set()
    completed = errors = 0
    workers_last = dict(workers0)
    last_shown = 0.0
    while len(ended) < len(workers) and time.monotonic() < hard_end + 1.0:
        try:
            n, message = lines.get(timeout=0.25)
        except queue.Empty:
            n, message = -1, None
        if n >= 0 and message is None:
            ended.add(n)
        elif message is not None and "tick" in message:
            tick = Tick.from_json(message["tick"])
            ticks.setdefault(tick.second, Tick(tick.second)).merge(tick)
            completed += tick.completed
            errors += tick.errors
        elif message is not None and "final" in message:
            stats.merge(Stats.from_json(message["final"]))
            reported.add(n)
            if len(reported) == len(workers):
                workers_last = _cpu(worker_pids)
                break
        now = time.monotonic()
        if progress is not None and now - last_shown >= 1.0:
            last_shown = now
            elapsed = max(0.0, now - start)
            rate = completed / elapsed if elapsed > 0 else 0.0
            progress.write(f"\r{min(elapsed, args.seconds):5.1f}/{args.seconds:g} s  {rate:9.1f} req/s  "
                           f"{completed} done  {errors} errors   ")
            progress.flush()
    elapsed = time.monotonic() - start
    if len(reported) < len(workers):
        workers_last = _cpu(worker_pids)
    server1 = _cpu(pids)
    if progress is not None:
        progress.write("\n")
        progress.flush()
    peaks = {}
    for pid in pids:
        try:
            peaks[pid] = procstat.peak_rss_kib(pid)
        except (OSError, ValueError):
            pass
    worker_cpu = [workers_last.get(pid, 0.0) - workers0.get(pid, 0.0) for pid in worker_pids]
    result = Run(args, stats, ticks, elapsed, {pid: server1[pid] - server0[pid] for pid in server0 if pid in server1},
                 peaks, worker_cpu)
    missing = len(workers) - len(reported)
    if missing:
        stats.errors["worker_failed"] = missing
        result.warnings.append(f"{missing} worker(s) did not report: their clients are not counted")
    busiest = max(worker_cpu, default=0.0) / elapsed if elapsed > 0 else 0.0
    if busiest >= SATURATED:
        result.warnings.append(
            f"the robot may be the bottleneck: its busiest worker used {busiest:.0%} of a core "
            f"(use more --workers, or fewer clients)")
    return result
