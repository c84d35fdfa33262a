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
# Servers and workers import gamenet from this work tree, not from an installed copy.
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

CONNECT_TIMEOUT = 60.0  # seconds for every worker to connect all its clients
DRAIN = 2.0  # seconds a worker waits for answers still outstanding after the window


# Processes


def cpu_seconds(pid: int) -> float:
    """
    User plus system CPU time of a process so far, from /proc/<pid>/stat.
    """
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    # The command name (field 2) is in parentheses and may hold spaces:
    # count the fields from after its closing one. utime and stime are fields 14 and 15.
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_kib(pid: int) -> int:
    """
    The process's peak resident set size (VmHWM) in KiB, from /proc/<pid>/status.
    """
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise ValueError(f"no VmHWM for pid {pid}")


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
    ("gamenet/", "gamenet connection, dispatch, handler"),
    ("examples/", "gamenet connection, dispatch, handler"),
    ("autobahn/", "Autobahn (WebSocket framing)"),
    ("txaio/", "Autobahn (WebSocket framing)"),
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


def drive(server: Server, load: Load, at_start: Callable[[], Any] | None = None) -> LoadResult:
    """
    Apply C{load} to C{server} and measure the timed window.

    @param at_start: called when the timed window opens (e.g. to start a profiler).
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
            ready = _read_line(worker, CONNECT_TIMEOUT, "connecting")
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
        client_cpu0 = sum(cpu_seconds(w.pid) for w in workers)
        if at_start is not None:
            at_start()
        time.sleep(max(0.0, end - time.monotonic()))
        server_cpu1 = cpu_seconds(server.pid)
        client_cpu1 = sum(cpu_seconds(w.pid) for w in workers)
        results = [_read_line(worker, DRAIN + 10.0, "reporting") for worker in workers]
        for worker in workers:
            worker.wait(10)
        server.check()
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
    return LoadResult(end - start, completed, errors, latencies, server_cpu1 - server_cpu0,
                      client_cpu1 - client_cpu0, connected)


def _read_line(worker: subprocess.Popen[str], timeout: float, doing: str) -> dict[str, Any]:
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

    epollreactor.install()
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


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    _worker(json.loads(sys.argv[2]))
