"""
The robot's parent process: starts the workers, gathers their JSON lines,
shows progress, measures the given server processes and its own workers from
/proc over the measured window (after the warm-up), and stops everything by
the deadline.
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
from typing import Any, Callable, TextIO

from . import procstat
from .stats import Stats, Tick

READY = 60.0  # seconds the workers are given to start (import, load the scenario) before the run is abandoned
STARTUP = 0.2  # seconds between sending the workers the run's times and the load's start
GRACE = 3.0  # seconds after the drain after which a worker ends itself, whatever happens
SATURATED = 0.9  # a worker using this share of one core or more: the robot may be the bottleneck


@dataclass
class Run:
    """
    What a run measured, for the reports.
    """

    args: Namespace
    stats: Stats
    ticks: dict[int, Tick]  # by second from the load's start (the warm-up included)
    measured: float  # seconds the window lasted (C{--seconds} unless the workers ended early)
    server_cpu: dict[int, float]  # seconds of CPU by pid over the window
    server_peak_rss_kib: dict[int, int]
    server_rss_kib: dict[int, tuple[int, int]]  # by pid: resident memory before the load, and at the window's end
    worker_cpu: list[float]  # seconds of CPU of each worker over the window
    warnings: list[str] = field(default_factory=list)


class WorkerError(Exception):
    """
    A worker process did not start; the message says which and why.
    """


def _cpu(pids: list[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        try:
            out[pid] = procstat.run_seconds(pid)
        except OSError:
            pass
    return out


def _rss(pids: list[int]) -> dict[int, int]:
    out = {}
    for pid in pids:
        try:
            out[pid] = procstat.rss_kib(pid)
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


def run(args: Namespace, progress: TextIO | None = sys.stderr, on_window: Callable[[], None] | None = None) -> Run:
    """
    Run the load described by C{args} (see L{gamenet.robot.options}) and gather what it measured.

    @param progress: where the progress line goes.
    @param on_window: called when the measured window opens (e.g. to start a profiler).
    @raise WorkerError: a worker process did not start.
    """
    for pid in args.pid:
        if not procstat.alive(pid):
            raise ValueError(f"no process {pid} to measure")
    shares = [args.clients // args.workers + (1 if i < args.clients % args.workers else 0)
              for i in range(args.workers)]
    common = {
        "host": args.host, "port": args.port, "transport": args.transport, "tls": args.tls, "path": args.path,
        "allow_remote": args.allow_remote, "timeout": args.timeout, "route": args.route, "body": args.body,
        "inflight": args.inflight, "echo": args.echo, "idle": args.idle, "scenario": args.scenario and (
            str(Path(args.scenario).resolve()) if args.scenario.endswith(".py") else args.scenario),
        "params": args.params, "drain": args.drain,
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
        _wait_ready(workers, lines)
        rss_before = _rss(args.pid)
        start = time.monotonic() + STARTUP
        window = start + args.warmup
        end = window + args.seconds
        hard_end = end + args.drain + GRACE
        times = json.dumps({"start": start, "window": window, "end": end, "hard_end": hard_end}) + "\n"
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write(times)
            worker.stdin.flush()
        return _gather(args, workers, lines, start, window, end, hard_end, rss_before, progress, on_window)
    finally:
        for worker in workers:
            if worker.stdin is not None:
                worker.stdin.close()
        for worker in workers:
            try:
                worker.wait(GRACE + 1.0)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()


def _wait_ready(workers: list[subprocess.Popen[str]], lines: queue.Queue[tuple[int, Any]]) -> None:
    """
    Wait until every worker has said it is ready.

    @raise WorkerError: one ended or stayed silent for L{READY} seconds.
    """
    ready: set[int] = set()
    deadline = time.monotonic() + READY
    while len(ready) < len(workers):
        try:
            n, message = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise WorkerError(f"{len(workers) - len(ready)} robot worker(s) not ready after {READY:g} s") from None
        if message is None:
            raise WorkerError(f"robot worker {n} ended before it was ready (exit status {workers[n].wait()})")
        if message.get("ready"):
            ready.add(n)


def _rate(ticks: dict[int, Tick], second: int) -> float:
    """
    Requests completed in second C{second} of the load (0 before it has any).
    """
    tick = ticks.get(second)
    return float(tick.completed) if tick is not None else 0.0


def _gather(args: Namespace, workers: list[subprocess.Popen[str]], lines: queue.Queue[tuple[int, Any]],
            start: float, window: float, end: float, hard_end: float, rss_before: dict[int, int],
            progress: TextIO | None, on_window: Callable[[], None] | None) -> Run:
    pids = list(args.pid)
    worker_pids = [w.pid for w in workers]
    # CPU of the servers and of the workers at the window's start and end, and resident memory at its end.
    opened: tuple[dict[int, float], dict[int, float]] | None = None
    closed: tuple[dict[int, float], dict[int, float], dict[int, int]] | None = None
    stats = Stats()
    ticks: dict[int, Tick] = {}
    reported: set[int] = set()
    ended: set[int] = set()
    completed = errors = 0
    last_shown = 0.0
    while len(ended) < len(workers) and time.monotonic() < hard_end + 1.0:
        now = time.monotonic()
        if opened is None and now >= window:
            opened = _cpu(pids), _cpu(worker_pids)
            if on_window is not None:
                on_window()
        if closed is None and now >= end:
            closed = _cpu(pids), _cpu(worker_pids), _rss(pids)
        boundary = window if opened is None else end if closed is None else now + 0.25
        try:
            n, message = lines.get(timeout=min(0.25, max(0.001, boundary - now)))
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
                break
        now = time.monotonic()
        if progress is not None and now - last_shown >= 1.0:
            last_shown = now
            total = args.warmup + args.seconds
            phase = "  warm-up" if now < window else ""
            progress.write(f"\r{min(max(0.0, now - start), total):5.1f}/{total:g} s{phase}  "
                           f"{_rate(ticks, int(now - start) - 1):9.1f} req/s  {completed} done  {errors} errors   ")
            progress.flush()
    if progress is not None:
        progress.write("\n")
        progress.flush()
    if closed is None:  # the workers ended before the deadline
        closed = _cpu(pids), _cpu(worker_pids), _rss(pids)
    if opened is None:  # ... or even before the window opened
        opened = closed[0], closed[1]
    (server0, workers0), (server1, workers1, rss_end) = opened, closed
    measured = max(0.0, min(time.monotonic(), end) - window)
    peaks = {}
    for pid in pids:
        try:
            peaks[pid] = procstat.peak_rss_kib(pid)
        except (OSError, ValueError):
            pass
    worker_cpu = [max(0.0, workers1.get(pid, 0.0) - workers0.get(pid, 0.0)) for pid in worker_pids]
    rss = {pid: (rss_before[pid], rss_end[pid]) for pid in rss_before if pid in rss_end}
    result = Run(args, stats, ticks, measured,
                 {pid: server1[pid] - server0[pid] for pid in server0 if pid in server1}, peaks, rss, worker_cpu)
    missing = len(workers) - len(reported)
    if missing:
        stats.errors["worker_failed"] = missing
        result.warnings.append(f"{missing} worker(s) did not report: their clients are not counted")
    busiest = max(worker_cpu, default=0.0) / measured if measured > 0 else 0.0
    if busiest >= SATURATED:
        result.warnings.append(
            f"the robot may be the bottleneck: its busiest worker used {busiest:.0%} of a core "
            f"(use more --workers, or fewer clients)")
    return result
