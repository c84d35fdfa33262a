"""
What the bench scripts share: server processes, process CPU and memory from
/proc, and the client-driving loop.

The load comes from worker processes, each running a reactor with
L{gamenet.client.Client} connections (run as C{python _common.py worker SPEC}).
The parent starts them, waits until every worker has connected its clients,
then sends one line with the timed window (absolute C{time.monotonic()}
values, a clock all processes of the machine share). Each worker keeps
C{inflight} requests outstanding on each of its clients from that moment, counts
the answers that arrive inside the window and their latencies, stops sending
at the window's end, and prints one JSON line of results.

Besides, for the cluster benchmarks (bench/forward.py, bench/channel.py): a
cluster file of several servers (L{ClusterServer}, L{write_cluster_file}),
each server its own C{twistd} process (L{twistd_server}), one request from a
throw-away client process (L{call}, run as C{python _common.py call SPEC}),
and the CPU time of more processes than the one driven (C{drive(...,
processes=...)}).

Linux only: CPU and memory are read from /proc.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # gamenet from this work tree, as for the servers and workers below

from gamenet.robot.procstat import cpu_seconds, peak_rss_kib, run_seconds  # noqa: E402,F401 (used by the scripts)

# Servers and workers import gamenet from this work tree, not from an installed copy.
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))}

CONNECT_TIMEOUT = 60.0  # seconds for every worker to connect all its clients
DRAIN = 2.0  # seconds a worker waits for answers still outstanding after the window


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


def workdir() -> Path:
    """
    A fresh temporary directory for server files and logs.
    """
    return Path(tempfile.mkdtemp(prefix="gamenet-bench-"))


def write_cluster(path: Path, client_port: int, node_port: int, transport: str, **frontend: Any) -> None:
    """
    Write a one-server cluster file: C{connector-1} serving the chat example's
    plugins (so C{connector.echoHandler.echo}) on C{client_port}.

    @param frontend: more C{[frontend]} keys.
    """
    options = {"transport": transport, "heartbeat": 30, "messages_per_second": 1000000, **frontend}
    lines = [
        "[cluster]",
        "name = bench",
        "secret = bench",
        "env = bench",
        f"plugin_path = {REPO}",
        "plugins = examples.chat.plugins",
        "",
        "[frontend]",
        *(f"{key} = {value}" for key, value in options.items()),
        "",
        "[server:connector-1]",
        "type = connector",
        "host = 127.0.0.1",
        f"node_port = {node_port}",
        "frontend = true",
        f"client_port = {client_port}",
        "",
    ]
    path.write_text("\n".join(lines))


def gamenet_server(work: Path, transport: str, profile: Path | None = None, **frontend: Any) -> Server:
    """
    C{twistd -n gamenet} running C{connector-1} of a generated cluster file,
    with the epoll reactor; under cProfile (saved to C{profile} on exit) when given.
    """
    port = free_port()
    config = work / "cluster.ini"
    write_cluster(config, port, free_port(), transport, **frontend)
    argv = [str(Path(sys.executable).with_name("twistd")), "--nodaemon", "--pidfile=", "--reactor=epoll"]
    if profile is not None:
        # twistd's own profiler: it saves the stats when the reactor stops, before
        # twistd ends itself with the signal that stopped it.
        argv += [f"--profile={profile}", "--profiler=cprofile", "--savestats"]
    argv += ["gamenet", "--config", str(config), "--server", "connector-1"]
    return Server("gamenet", argv, port, work)


@dataclass
class ClusterServer:
    """
    One server of a generated cluster file: a frontend when it has a C{client_port}.
    """

    id: str
    type: str
    node_port: int = field(default_factory=free_port)
    client_port: int = 0

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
    package such as C{bench}); the C{[frontend]} keys are those of
    L{write_cluster} (C{transport}, heartbeat 30, C{messages_per_second}
    1000000) and C{frontend}.
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
        lines.append("")
    path.write_text("\n".join(lines))


def twistd_server(work: Path, config: Path, server: ClusterServer, **environment: str) -> Server:
    """
    C{twistd -n --pidfile= --reactor=epoll gamenet --config CONFIG --server ID}:
    one server of a cluster file in its own process, ready when its client
    port (a frontend) or its node port (a backend) accepts connections.

    @param environment: more environment variables for the process.
    """
    argv = [str(Path(sys.executable).with_name("twistd")), "--nodaemon", "--pidfile=", "--reactor=epoll",
            "gamenet", "--config", str(config), "--server", server.id]
    return Server(server.id, argv, server.client_port or server.node_port, work, {**ENV, **environment})


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


# Driving clients


@dataclass
class LoadResult:
    """
    What a timed window of load measured.
    """

    seconds: float
    completed: int
    errors: dict[str, int]
    latencies: list[float]  # seconds, of the answers counted
    server_cpu: float  # seconds
    client_cpu: float  # seconds, every worker together
    connected: int
    cpu: dict[str, float] = field(default_factory=dict)  # seconds, of each of drive()'s processes, by name

    @property
    def rate(self) -> float:
        return self.completed / self.seconds

    @property
    def cpu_per_request(self) -> float:
        """
        Server CPU seconds per completed request.
        """
        return self.server_cpu / self.completed if self.completed else float("nan")

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def percentile(self, p: float) -> float:
        """
        The latency (seconds) below which C{p} percent of answers came, nearest rank.
        """
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, max(0, int(round(p / 100 * len(ordered))) - 1))]


@dataclass
class Load:
    """
    The load to apply: C{clients} connections spread over C{workers}
    processes, each keeping C{inflight} requests of C{route} with C{body}
    outstanding; with C{check_echo}, an answer that differs from C{body} counts
    as an error.
    """

    clients: int
    inflight: int
    seconds: float
    transport: str = "websocket"
    workers: int = 2
    warmup: float = 1.0
    route: str = "connector.echoHandler.echo"
    body: Any = field(default_factory=lambda: {"text": "hello, world", "n": 42})
    check_echo: bool = True


def drive(server: Server, load: Load, at_start: Callable[[], Any] | None = None,
          processes: Sequence[Server] = ()) -> LoadResult:
    """
    Apply C{load} to C{server} and measure the timed window.

    @param at_start: called when the timed window opens (e.g. to start a profiler).
    @param processes: more server processes (the rest of a cluster) whose CPU
        time over the window goes into the result's C{cpu} by name, with
        C{server}'s; each is checked to be alive at the end.
    @raise ServerError: the server died, or a worker failed.
    """
    shares = [load.clients // load.workers + (1 if i < load.clients % load.workers else 0)
              for i in range(load.workers)]
    workers = []
    try:
        for share in shares:
            if not share:
                continue
            spec = {"port": server.port, "clients": share, "inflight": load.inflight, "transport": load.transport,
                    "route": load.route, "body": load.body, "check_echo": load.check_echo}
            workers.append(subprocess.Popen(
                [sys.executable, __file__, "worker", json.dumps(spec)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1, env=ENV,
            ))
        connected = 0
        for worker in workers:
            ready = read_line(worker, CONNECT_TIMEOUT, "connecting")
            connected += ready["connected"]
        server.check()
        if not connected:
            raise ServerError(f"no client could connect to {server.name}")
        start = time.monotonic() + load.warmup
        end = start + load.seconds
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write(json.dumps({"start": start, "end": end}) + "\n")
            worker.stdin.flush()
        time.sleep(max(0.0, start - time.monotonic()))
        server_cpu0 = cpu_seconds(server.pid)
        others0 = {other.name: cpu_seconds(other.pid) for other in processes}
        client_cpu0 = sum(cpu_seconds(w.pid) for w in workers)
        if at_start is not None:
            at_start()
        time.sleep(max(0.0, end - time.monotonic()))
        server_cpu1 = cpu_seconds(server.pid)
        others1 = {other.name: cpu_seconds(other.pid) for other in processes}
        client_cpu1 = sum(cpu_seconds(w.pid) for w in workers)
        results = [read_line(worker, DRAIN + 10.0, "reporting") for worker in workers]
        for worker in workers:
            worker.wait(10)
        server.check()
        for other in processes:
            other.check()
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    errors: dict[str, int] = {}
    latencies: list[float] = []
    completed = 0
    for result in results:
        completed += result["completed"]
        latencies.extend(us / 1e6 for us in result["latencies_us"])
        for kind, count in result["errors"].items():
            errors[kind] = errors.get(kind, 0) + count
    cpu = {server.name: server_cpu1 - server_cpu0, **{name: others1[name] - others0[name] for name in others0}}
    return LoadResult(end - start, completed, errors, latencies, server_cpu1 - server_cpu0,
                      client_cpu1 - client_cpu0, connected, cpu)


def read_line(worker: subprocess.Popen[str], timeout: float, doing: str) -> dict[str, Any]:
    """
    The next JSON line a worker prints, within C{timeout} seconds.
    """
    assert worker.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(worker.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise ServerError(f"a bench worker was still {doing} after {timeout:g} s")
    line = worker.stdout.readline()
    if not line:
        raise ServerError(f"a bench worker exited with {worker.wait()} while {doing}")
    return json.loads(line)  # type: ignore[no-any-return]


# The worker process


def _worker(spec: dict[str, Any]) -> None:
    from twisted.internet import epollreactor
    from twisted.internet.error import ReactorAlreadyInstalledError

    try:
        epollreactor.install()
    except ReactorAlreadyInstalledError:
        pass  # importing gamenet (gamenet.robot.procstat, above) installed the default one: epoll on Linux
    from twisted.internet import reactor, stdio
    from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults
    from twisted.protocols.basic import LineReceiver

    from gamenet.client import Client

    class Worker(LineReceiver):
        """
        Connects the clients, waits for the window on stdin, drives the load, reports.
        """

        delimiter = b"\n"

        def __init__(self) -> None:
            self.clients: list[Client] = []
            self.errors: dict[str, int] = {}
            self.latencies: list[float] = []
            self.completed = 0
            self.outstanding = 0
            self.start = self.end = 0.0
            self.reported = False

        async def connect_all(self) -> None:
            limit = DeferredSemaphore(32)

            async def one() -> None:
                async with limit:
                    try:
                        client = await Client.connect(reactor, "127.0.0.1", spec["port"], spec["transport"])
                    except Exception as e:
                        self.error(f"connect: {type(e).__name__}")
                    else:
                        self.clients.append(client)

            await gatherResults([Deferred.fromCoroutine(one()) for _ in range(spec["clients"])])
            print(json.dumps({"connected": len(self.clients)}), flush=True)
            stdio.StandardIO(self, stdout=os.open(os.devnull, os.O_WRONLY))

        def lineReceived(self, line: bytes) -> None:
            window = json.loads(line)
            self.start, self.end = window["start"], window["end"]
            for client in self.clients:
                for _ in range(spec["inflight"]):
                    self.send(client)
            reactor.callLater(self.end - time.monotonic() + DRAIN, self.report)

        def send(self, client: Client) -> None:
            self.outstanding += 1
            d = client.request(spec["route"], spec["body"])
            d.addCallbacks(self.answered, self.failed, callbackArgs=(client, time.monotonic()),
                           errbackArgs=(client,))

        def answered(self, value: Any, client: Client, sent: float) -> None:
            now = time.monotonic()
            self.outstanding -= 1
            if spec["check_echo"] and value != spec["body"]:
                self.error("wrong answer")
            elif self.start <= now < self.end:
                self.completed += 1
                self.latencies.append(now - sent)
            self.next(client, now)

        def failed(self, failure: Any, client: Client) -> None:
            self.outstanding -= 1
            self.error(type(failure.value).__name__)
            self.next(client, time.monotonic())

        def next(self, client: Client, now: float) -> None:
            if now < self.end:
                if not client.closed.called:
                    self.send(client)
            elif not self.outstanding:
                self.report()

        def connectionLost(self, reason: Any = None) -> None:
            # stdin closed before the report: the parent is gone, so is the point.
            if not self.reported:
                self.reported = True
                reactor.stop()

        def error(self, kind: str) -> None:
            self.errors[kind] = self.errors.get(kind, 0) + 1

        def report(self) -> None:
            if self.reported:
                return
            self.reported = True
            print(json.dumps({"completed": self.completed, "errors": self.errors,
                              "latencies_us": [round(t * 1e6) for t in self.latencies]}), flush=True)
            for client in self.clients:
                client.close()
            reactor.callLater(0.2, reactor.stop)

    worker = Worker()
    reactor.callWhenRunning(lambda: Deferred.fromCoroutine(worker.connect_all()))
    reactor.run()


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


def summary(ratios: list[float]) -> str:
    """
    One ratio, or the median of several rounds with each round's.
    """
    import statistics

    if len(ratios) == 1:
        return f"{ratios[0]:.2f}x"
    return f"{statistics.median(ratios):.2f}x (median; rounds {', '.join(f'{r:.2f}' for r in ratios)})"


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    _worker(json.loads(sys.argv[2]))
elif __name__ == "__main__" and sys.argv[1:2] == ["call"]:
    _call(json.loads(sys.argv[2]))
