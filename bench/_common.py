"""
What the bench scripts share: server processes (L{Server}; a generated
cluster file of one or several servers, each its own C{twistd} process), the
load robot run on them (L{robot}: C{gamenet bench}'s L{gamenet.robot.measure},
measuring the servers' CPU and memory from /proc), one request from a
throw-away client process (L{call}, run as C{python _common.py call SPEC}),
py-spy sampling and the report helpers.

Linux only: CPU and memory are read from /proc.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # gamenet from this work tree, as for the servers and workers below

# Servers and workers import gamenet from this work tree, not from an installed copy.
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))}


# Processes


def free_port() -> int:
    """
    A TCP port on 127.0.0.1 that was free a moment ago.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerError(Exception):
    """
    A server process did not start, or died.
    """


class Server:
    """
    A server subprocess listening on C{port}, its output in C{workdir/NAME.log}.

    Only the process started here is ever signalled.
    """

    def __init__(self, name: str, argv: Sequence[str], port: int, workdir: Path,
                 env: dict[str, str] = ENV) -> None:
        self.name = name
        self.argv = list(argv)
        self.port = port
        self.workdir = workdir
        self.env = env
        self.log_path = workdir / f"{name.replace(' ', '-')}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 30.0) -> None:
        """
        Start the process and wait until its port accepts connections.

        @raise ServerError: the process exited, or the port did not open in time.
        """
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.argv, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=self.env,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise ServerError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ServerError(f"{self.name} did not listen on port {self.port} in {timeout:g} s:\n"
                                  f"{self.log_tail()}")
            time.sleep(0.05)

    def check(self) -> None:
        """
        @raise ServerError: the process has exited.
        """
        if self.process is not None and self.process.poll() is not None:
            raise ServerError(f"{self.name} died with {self.process.returncode}:\n{self.log_tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        """
        SIGTERM, then SIGKILL if it has not exited within C{timeout} seconds.
        """
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@contextmanager
def running(work: Path, servers: Sequence[Server]) -> Iterator[None]:
    """
    Start C{servers} in order, run the block, and stop them all whatever
    happens. The directory C{work} (their files and logs) is then removed,
    unless a server failed: that L{ServerError} goes on, naming it.
    """
    failed = False
    try:
        for server in servers:
            server.start()
        yield
    except ServerError as e:
        failed = True
        raise ServerError(f"{e}\n(server logs in {work})") from None
    finally:
        for server in servers:
            server.stop()
        if not failed:
            shutil.rmtree(work, ignore_errors=True)


class PySpy:
    """
    py-spy sampling one process over a timed window, without pausing it,
    writing collapsed stacks (one line per stack and its sample count).
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, pid: int, seconds: float) -> None:
        self.process = subprocess.Popen(
            ["py-spy", "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))), "--rate", "250",
             "--nonblocking", "--format", "raw", "--output", str(self.out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def wait(self, timeout: float = 30.0) -> None:
        """
        Wait for the recording to be written; kill py-spy if it takes longer than C{timeout}.
        """
        if self.process is None:
            return
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# Where a sample's CPU time goes: the first of these found walking its stack
# from the innermost frame out names it.
_CATEGORIES = (
    ("bare_echo.py", "bare echo (bench/bare_echo.py)"),
    ("json/", "JSON (json module, via gamenet.protocol.serializer)"),
    ("gamenet/protocol/serializer.py", "JSON (json module, via gamenet.protocol.serializer)"),
    ("gamenet/protocol/", "gamenet codec (gamenet.protocol)"),
    ("gamenet/cluster/", "gamenet node links, forwarding, sys calls (gamenet.cluster)"),
    ("gamenet/channel.py", "gamenet channels (gamenet.channel)"),
    ("gamenet/", "gamenet connection, dispatch, handler"),
    ("examples/", "gamenet connection, dispatch, handler"),
    ("bench/plugins/", "gamenet connection, dispatch, handler"),
    ("autobahn/", "Autobahn (WebSocket framing)"),
    ("txaio/", "Autobahn (WebSocket framing)"),
    ("twisted/spread/", "Perspective Broker (twisted.spread: jelly, banana)"),
    ("twisted/", "Twisted (reactor, TCP)"),
)


def callgrind_instrumentation(on: bool) -> None:
    """
    Turn callgrind's instrumentation of this process on or off (a script run
    under C{valgrind --tool=callgrind --instr-atstart=no}, counting only what
    it measures).
    """
    subprocess.run(["callgrind_control", "-i", "on" if on else "off", str(os.getpid())], check=True,
                   capture_output=True)


def stack_shares(path: Path) -> list[tuple[str, float]]:
    """
    The share of py-spy samples (collapsed stacks) in each of L{_CATEGORIES}, largest first.
    """
    counts: dict[str, int] = {}
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            frames = stack.split(";")
            category = "other"
            for frame in reversed(frames):
                match = next((name for marker, name in _CATEGORIES if marker in frame), None)
                if match is not None:
                    category = match
                    break
            counts[category] = counts.get(category, 0) + int(count)
    total = sum(counts.values()) or 1
    return sorted(((name, n / total) for name, n in counts.items()), key=lambda item: -item[1])


def breakdown(title: str, spies: Sequence[tuple[PySpy, Server]], per_unit: dict[str, float | None],
              spec: str = ".1f") -> str:
    """
    Each sampled server's CPU per unit of work (C{per_unit}, by server name:
    per request, per push), split by where py-spy saw it spent (L{stack_shares}).
    """
    shares = {server.name: dict(stack_shares(spy.out)) for spy, server in spies if spy.out.exists()}
    categories = sorted({category for by in shares.values() for category in by},
                        key=lambda c: -max(by.get(c, 0.0) for by in shares.values()))
    per = {name: per_unit[name] or 0.0 for name in shares}
    rows: list[tuple[str, ...]] = [(title, *shares)]
    for category in categories:
        rows.append((category, *(format(by.get(category, 0.0) * per[name], spec) for name, by in shares.items())))
    rows.append(("total", *(format(per[name], spec) for name in shares)))
    return columns(rows, left=1)


def workdir() -> Path:
    """
    A fresh temporary directory for server files and logs.
    """
    return Path(tempfile.mkdtemp(prefix="gamenet-bench-"))


@dataclass
class ClusterServer:
    """
    One server of a generated cluster file: a frontend when it has a C{client_port};
    serving C{/metrics} when it has a C{metrics_port}.
    """

    id: str
    type: str
    node_port: int = field(default_factory=free_port)
    client_port: int = 0
    metrics_port: int = 0

    @property
    def frontend(self) -> bool:
        return bool(self.client_port)


BENCH_PLUGINS = ("examples.chat.plugins", "plugins")  # the chat example's, and bench/plugins
BENCH_PLUGIN_PATH = (REPO, REPO / "bench")


def write_cluster_file(path: Path, servers: Sequence[ClusterServer], transport: str,
                       plugins: Sequence[str] = BENCH_PLUGINS, plugin_path: Sequence[Path] = BENCH_PLUGIN_PATH,
                       **frontend: Any) -> None:
    """
    Write a cluster file of several servers on 127.0.0.1, without a master
    (each server is started on its own with C{--server}), with the plugin
    packages C{plugins} found on C{plugin_path} (by default the chat
    example's and bench/plugins, which is imported as the top-level package
    C{plugins}: twisted.plugin cannot search a package inside a namespace
    package such as C{bench}); the C{[frontend]} keys are C{transport},
    heartbeat 30, C{messages_per_second} 1000000 (so that the rate limit does
    not trip) and C{frontend}.
    """
    options = {"transport": transport, "heartbeat": 30, "messages_per_second": 1000000, **frontend}
    lines = [
        "[cluster]",
        "name = bench",
        "secret = bench",
        "env = bench",
        f"plugin_path = {' '.join(str(p) for p in plugin_path)}",
        f"plugins = {' '.join(plugins)}",
        "",
        "[frontend]",
        *(f"{key} = {value}" for key, value in options.items()),
        "",
    ]
    for server in servers:
        lines += [f"[server:{server.id}]", f"type = {server.type}", "host = 127.0.0.1",
                  f"node_port = {server.node_port}"]
        if server.frontend:
            lines += ["frontend = true", f"client_port = {server.client_port}"]
        if server.metrics_port:
            lines.append(f"metrics_port = {server.metrics_port}")
        lines.append("")
    path.write_text("\n".join(lines))


def twistd_server(work: Path, config: Path, server: ClusterServer, profile: Path | None = None,
                  **environment: str) -> Server:
    """
    C{twistd -n --pidfile= --reactor=epoll gamenet --config CONFIG --server ID}:
    one server of a cluster file in its own process, ready when its client
    port (a frontend) or its node port (a backend) accepts connections.

    @param profile: run it under cProfile, saving the statistics to this file
        when it stops (twistd's own profiler: not for figures to quote).
    @param environment: more environment variables for the process.
    """
    argv = [str(Path(sys.executable).with_name("twistd")), "--nodaemon", "--pidfile=", "--reactor=epoll"]
    if profile is not None:
        # twistd saves the statistics when the reactor stops, before it ends
        # itself with the signal that stopped it.
        argv += [f"--profile={profile}", "--profiler=cprofile", "--savestats"]
    argv += ["gamenet", "--config", str(config), "--server", server.id]
    return Server(server.id, argv, server.client_port or server.node_port, work, {**ENV, **environment})


def gamenet_server(work: Path, transport: str, profile: Path | None = None, metrics_port: int = 0,
                   name: str = "", tree: Path = REPO, **frontend: Any) -> Server:
    """
    C{twistd -n gamenet} running C{connector-1} of a generated cluster file
    (the chat example's plugins, so C{connector.echoHandler.echo}), under
    cProfile when C{profile} is given, with metrics on when C{metrics_port}
    is given (the server is then named C{gamenet+metrics}, unless C{name}
    is given); C{tree}: the work tree whose gamenet and example it runs
    (this one by default); C{frontend}: more C{[frontend]} keys.
    """
    name = name or ("gamenet+metrics" if metrics_port else "gamenet")
    server = ClusterServer("connector-1", "connector", client_port=free_port(), metrics_port=metrics_port)
    config = work / f"{name}.ini"
    write_cluster_file(config, [server], transport, ("examples.chat.plugins",), (tree,), **frontend)
    process = twistd_server(work, config, server, profile, **({} if tree == REPO else {"PYTHONPATH": str(tree)}))
    process.name = name
    process.log_path = work / f"{name}.log"
    return process




def call(port: int, route: str, body: Any = None, transport: str = "websocket", timeout: float = 20.0) -> Any:
    """
    One request from a fresh client process, repeated (a new connection each
    time) every 0.1 s until it is answered without an error or C{timeout}
    seconds pass: to wait until a cluster serves a route end to end, and to
    read a bench plugin's counters.

    @return: the answer's decoded body.
    @raise ServerError: no answer without an error in time.
    """
    spec = {"port": port, "route": route, "body": {} if body is None else body, "transport": transport,
            "timeout": timeout}
    try:
        done = subprocess.run([sys.executable, __file__, "call", json.dumps(spec)], capture_output=True, text=True,
                              env=ENV, timeout=timeout + 15.0)
    except subprocess.TimeoutExpired:
        raise ServerError(f"{route} on port {port}: the calling process did not finish") from None
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise ServerError(f"{route} on port {port}: the calling process failed:\n{done.stderr[-2000:]}") from None
    if "error" in result:
        raise ServerError(f"{route} on port {port}: no answer in {timeout:g} s; last error: {result['error']}")
    return result["answer"]


# Driving clients: the load robot


def robot(url: str, *options: Any, servers: Sequence[Server] = (), warmup: float = 1.0, seconds: float = 10.0,
          spies: Sequence[tuple[PySpy, Server]] = ()) -> dict[str, Any]:
    """
    Run the load robot (L{gamenet.robot.measure}, what C{gamenet bench} runs)
    against C{url} with C{gamenet bench} C{options}, measuring C{servers}
    (their CPU and memory, by pid, over the window after C{warmup}), its
    progress line on stderr; each py-spy of C{spies} samples its server over
    the window.

    @return: the robot's JSON report.
    @raise ServerError: a server died during the run.
    """
    from gamenet.robot import measure

    argv = [url, "--warmup", str(warmup), "--seconds", str(seconds), *map(str, options)]
    for server in servers:
        argv += ["--pid", str(server.pid)]

    def window() -> None:
        for spy, server in spies:
            spy.start(server.pid, seconds)

    try:
        report = measure(argv, progress=sys.stderr, on_window=window)
    finally:
        for spy, _ in spies:
            spy.wait()
    for server in servers:
        server.check()
    return report


def server_cpu(report: dict[str, Any], server: Server) -> float:
    """
    The CPU seconds C{server} used over the robot's window.
    """
    return float(report["server"]["cpu_seconds_by_pid"][str(server.pid)])


def _call(spec: dict[str, Any]) -> None:
    from twisted.internet import task
    from twisted.internet.defer import Deferred

    from gamenet.client import Client

    async def run(reactor: Any) -> None:
        deadline = time.monotonic() + spec["timeout"]
        error = "no attempt"
        while True:
            client = None
            try:
                client = await Client.connect(reactor, "127.0.0.1", spec["port"], spec["transport"], timeout=5.0)
                answer = await client.request(spec["route"], spec["body"])
            except Exception as e:
                error = f"{type(e).__name__}: {e}"
            else:
                print(json.dumps({"answer": answer}), flush=True)
                await client.close()
                return
            finally:
                if client is not None and not client.closed.called:
                    client.close()
            if time.monotonic() > deadline:
                print(json.dumps({"error": error}), flush=True)
                return
            await task.deferLater(reactor, 0.1, lambda: None)

    task.react(lambda reactor: Deferred.fromCoroutine(run(reactor)))


# Reports


def machine() -> str:
    """
    The CPU model and count, and the versions that matter, for a report's header.
    """
    from importlib.metadata import version
    import platform

    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{model}, {os.cpu_count()} cores; Python {platform.python_version()}, "
            f"Twisted {version('twisted')}, Autobahn {version('autobahn')}")


def columns(rows: list[tuple[str, ...]], left: int) -> str:
    """
    Rows as aligned columns under a rule: the first C{left} columns left-aligned, the rest right.
    """
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i < left else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def figure(value: float | None, spec: str = ".1f") -> str:
    """
    C{value} formatted with C{spec}, or C{nan} for a figure that could not be measured.
    """
    return "nan" if value is None else format(value, spec)


def summary(ratios: list[float]) -> str:
    """
    One ratio, or the median of several rounds with each round's.
    """
    import statistics

    if len(ratios) == 1:
        return f"{ratios[0]:.2f}x"
    return f"{statistics.median(ratios):.2f}x (median; rounds {', '.join(f'{r:.2f}' for r in ratios)})"


if __name__ == "__main__" and sys.argv[1:2] == ["call"]:
    _call(json.loads(sys.argv[2]))
