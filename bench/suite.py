"""
The benchmark suite: every script of bench/ in one run, and issues 6 and 17's targets checked against their figures.

    .venv/bin/python bench/suite.py [--out DIR] [--quick] [--only NAME,...] [--py-spy DIR] [--profile DIR]

Runs, one after the other (each starts and stops its own servers, on free
loopback ports, and runs the load robot against them):

- C{echo.py --rounds 3}: frontend-local echo over WebSocket and over TCP
  against the bare Autobahn and bare Twisted echo servers;
- C{echo.py --metrics --rounds 3} (C{metrics}): the same echo with metrics on
  against metrics off;
- C{echo.py --protobuf --rounds 3} (C{protobuf}): the same echo with
  protobuf bodies against JSON;
- C{forward.py --rounds 3}: forwarded echo against frontend-local echo;
- C{channel.py}: channel pushes to rooms of 10, 100 and 1,000 members over two connectors;
- C{idle.py}: 1,000 and 10,000 idle WebSocket connections held with
  heartbeats every 30 s (gamenet's default), and 10,000 with heartbeats
  every 10 s (C{idle-10s});
- C{storage.py}: Redis session storage against memory storage;
- C{versus.py --rounds 3} (C{pinus}): gamenet against pinus (bench/pinus/,
  installed with C{npm ci} when missing; skipped, saying why, without node
  and npm) on four paths: frontend-local echo, forwarded echo and the chat
  demo with 10 rooms of 10 and with 2 rooms of 200;
- C{reuseport.py --rounds 3}: one frontend process against two sharing one
  client port (C{reuse_port}).

Each script's output goes to the terminal and to C{DIR/NAME.txt}, its JSON
to C{DIR/NAME.json} (C{DIR} defaults to C{bench-results} in the current
directory). At the end it prints the targets, each with its figure and met
or missed. C{--quick} runs short, small versions of each (one round, 3 s
windows, 1,000 idle connections): to check that the suite works, not for
figures. C{--py-spy DIR} samples the servers of the echo and forwarding
benchmarks with py-spy and prints where their CPU went; C{--profile DIR}
runs the echo benchmark's gamenet server under cProfile and saves the
profile in DIR (neither run's figures are to be quoted).

Exit status: 0 when every script succeeded (the targets are benchmarks: a
missed one is reported, not a failure), else 1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent

# Each benchmark of the suite: the script it runs and the script's options.
FULL = {
    "echo": ("echo", ["--rounds", "3"]),
    "metrics": ("echo", ["--metrics", "--rounds", "3"]),
    "protobuf": ("echo", ["--protobuf", "--rounds", "3"]),
    "forward": ("forward", ["--rounds", "3"]),
    "channel": ("channel", []),
    "idle": ("idle", []),
    "idle-10s": ("idle", ["--connections", "10000", "--heartbeat", "10"]),
    "storage": ("storage", []),
    "pinus": ("versus", ["--rounds", "3"]),
    "reuseport": ("reuseport", ["--rounds", "3"]),
}
QUICK = {
    "echo": ("echo", ["--rounds", "1", "--seconds", "3", "--clients", "20"]),
    "metrics": ("echo", ["--metrics", "--rounds", "1", "--seconds", "3", "--clients", "20"]),
    "protobuf": ("echo", ["--protobuf", "--rounds", "1", "--seconds", "3", "--clients", "20"]),
    "forward": ("forward", ["--rounds", "1", "--seconds", "3", "--clients", "20"]),
    "channel": ("channel", ["--rooms", "10,100", "--seconds", "3"]),
    "idle": ("idle", ["--connections", "1000", "--seconds", "5"]),
    "idle-10s": ("idle", ["--connections", "1000", "--heartbeat", "10", "--seconds", "5"]),
    "storage": ("storage", ["--sessions", "100", "--writes", "20"]),
    "pinus": ("versus", ["--quick"]),
    "reuseport": ("reuseport", ["--rounds", "1", "--seconds", "3", "--clients", "20", "--steps", "500"]),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="where the outputs go")
    parser.add_argument("--quick", action="store_true", help="short, small runs: checks the suite, not figures")
    parser.add_argument("--only", help=f"comma-separated subset of {', '.join(FULL)}")
    parser.add_argument("--py-spy", type=Path, metavar="DIR", help="py-spy the echo and forwarding servers")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="cProfile the echo benchmark's gamenet server")
    options = parser.parse_args()
    plan = QUICK if options.quick else FULL
    names = list(plan) if options.only is None else options.only.split(",")
    unknown = set(names) - set(plan)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    options.out.mkdir(parents=True, exist_ok=True)
    failed = []
    started = time.monotonic()
    for name in names:
        script, args = plan[name]
        argv = [sys.executable, str(HERE / f"{script}.py"), *args, "--json", str(options.out / f"{name}.json")]
        if options.py_spy and name in ("echo", "forward"):
            argv += ["--py-spy", str(options.py_spy / name)]
        if options.profile and name == "echo":
            options.profile.mkdir(parents=True, exist_ok=True)
            argv += ["--profile", str(options.profile / "echo-gamenet.prof")]
        print(f"\n=== {name}: {' '.join(['.venv/bin/python', f'bench/{script}.py', *args])}", flush=True)
        code = tee(argv, options.out / f"{name}.txt")
        if code:
            failed.append(f"{name} (exit status {code})")
    print(f"\n=== targets (suite took {time.monotonic() - started:.0f} s; outputs in {options.out})")
    for line in targets(options.out, names):
        print(line)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


def tee(argv: list[str], path: Path) -> int:
    """
    Run C{argv}, its stdout to the terminal and to C{path}, its stderr (progress lines) to the terminal.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(path, "w") as f, subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env) as process:
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            f.write(line)
    return process.returncode


def _load(out: Path, name: str) -> Any:
    try:
        return json.loads((out / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def targets(out: Path, names: list[str]) -> list[str]:
    """
    One line per target (issues 6 and 17) whose benchmark ran: the figure, the aim, met or missed.
    """
    checks: dict[str, Callable[[Any], list[str]]] = {
        "echo": _echo, "metrics": _metrics, "protobuf": _protobuf, "forward": _forward, "channel": _channel, "idle": _idle, "idle-10s": _idle,
        "pinus": _versus,
    }
    lines = []
    for name in names:
        if name not in checks:
            continue
        document = _load(out, name)
        lines += checks[name](document) if document is not None else [f"{name}: no results"]
    return lines


def _echo(document: dict[str, Any]) -> list[str]:
    lines = []
    for transport, t in document["transports"].items():
        aims = t["aims"]
        lines.append(f"echo {transport}: CPU per request {t['cpu_ratio']:.2f}x {t['baseline']} "
                     f"(aim <= {aims['cpu_ratio_at_most']}x): {_verdict(t['cpu_ratio'] <= aims['cpu_ratio_at_most'])}; "
                     f"rate {t['rate_ratio']:.2f}x (aim >= {aims['rate_ratio_at_least']}x): "
                     f"{_verdict(t['rate_ratio'] >= aims['rate_ratio_at_least'])}")
    return lines


def _metrics(document: dict[str, Any]) -> list[str]:
    lines = []
    for transport, t in document["transports"].items():
        aim = t["aims"]["cpu_ratio_at_most"]
        lines.append(f"metrics on/off, echo {transport}: CPU per request {t['cpu_ratio']:.2f}x "
                     f"(aim <= {aim}x): {_verdict(t['cpu_ratio'] <= aim)}")
    return lines


def _protobuf(document: dict[str, Any]) -> list[str]:
    return [f"protobuf/JSON bodies, echo {transport}: CPU per request {t['cpu_ratio']:.2f}x, rate "
            f"{t['rate_ratio']:.2f}x (measured, no aim)" for transport, t in document["transports"].items()]


def _forward(document: dict[str, Any]) -> list[str]:
    ratio = document["rate_ratio"]
    return [f"forwarded echo: rate {ratio:.2f}x the frontend-local rate (aim >= 0.5x): {_verdict(ratio >= 0.5)}"]


def _channel(document: dict[str, Any]) -> list[str]:
    target = document.get("target")
    if not target or target.get("last_p50_ms") is None:
        return ["channel push to 1,000 members: not measured in this run"]
    ms = target["last_p50_ms"]
    line = (f"channel push to {target['members']:,} members over two connectors: median send to last delivery "
            f"{ms:.1f} ms")
    return [line + (f" (aim < 20 ms at 1,000): {_verdict(ms < 20)}" if target["members"] == 1000 else "")]


def _versus(document: dict[str, Any]) -> list[str]:
    if "skipped" in document:
        return [f"gamenet against pinus: skipped ({document['skipped']})"]
    return [f"gamenet/pinus {name}: CPU per message {p['cpu_ratio']:.2f}x (aim <= {p['aim']}x): "
            f"{_verdict(p['met'])}; rate {p['rate_ratio']:.2f}x" for name, p in document["paths"].items()]


def _idle(document: dict[str, Any]) -> list[str]:
    lines = []
    for row in document["rows"]:
        if row["server"] != "gamenet":
            continue
        kib, cpu = row["kib_per_connection"], row["cpu_percent"]
        line = (f"idle {document['transport']} at {row['connections']:,} connections (heartbeat "
                f"{document['heartbeat']:g} s): {kib:.1f} KiB per connection, {cpu:.2f}% of a core")
        if row["connections"] == 10000:
            line += f" (aim < 30 KiB and < 5%): {_verdict(kib < 30 and cpu < 5)}"
        lines.append(line)
    return lines


if __name__ == "__main__":
    sys.exit(main())
