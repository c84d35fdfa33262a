"""
Scenarios: what each simulated client does.

A scenario is a module (or any object) with a coroutine function
C{run(ctx)}, called once per simulated client with its L{Context}; the
client's run ends when C{run} returns. The context connects (timing the
set-up and counting pushes), sends requests (timing them by route, counting
errors by kind), and says when to stop (C{ctx.running} turns false at the
deadline). The built-in L{RouteScenario} sends one route with a JSON body,
C{inflight} requests at a time, and L{IdleScenario} holds a connection;
C{examples/chat/robot.py} is a module scenario.

Only what completes inside the measured window is counted (connections and
errors excepted): a run may start with a warm-up (C{--warmup}), and the
answers that arrive after the deadline (during the drain) are not counted
either, so that the counts and the server CPU cover the same window.
"""

from __future__ import annotations

import importlib
import importlib.util
import time
from pathlib import Path
from typing import Any, Callable, NoReturn

from twisted.internet import error as neterror
from twisted.internet.defer import CancelledError, Deferred, DeferredSemaphore, TimeoutError as DeferredTimeout, gatherResults
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from ..client import Client, ClientError, ErrorResponse
from .options import check_target
from .stats import Histogram, Stats


class RequestFailed(Exception):
    """
    A request or connection of a scenario failed; C{kind} is how it was counted.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        super().__init__(kind)


def _code(code: Any) -> Any:
    # Pitaya's "PIT-404" is Pomelo's 404.
    if isinstance(code, str) and code.startswith("PIT-") and code[4:].isdigit():
        return int(code[4:])
    return code


def error_body(answer: Any) -> str | None:
    """
    The kind of an answer that is an error without Pitaya's error bit:
    gamenet answers Pomelo clients' failed requests with the body
    C{{"code": N, "message": ...}} (N 400 or more) and nothing else.
    """
    if (isinstance(answer, dict) and set(answer) == {"code", "message"} and isinstance(answer["code"], int)
            and answer["code"] >= 400):
        return f"error_response:{answer['code']}"
    return None


def error_kind(error: BaseException) -> str:
    """
    The kind an error is counted as.
    """
    if isinstance(error, ErrorResponse):
        body = error.body
        code = body.get("code") if isinstance(body, dict) else None
        return f"error_response:{_code(code)}"
    if isinstance(error, (DeferredTimeout, CancelledError, neterror.TimeoutError)):
        return "timeout"
    if isinstance(error, (neterror.ConnectError, neterror.DNSLookupError, ConnectionError)):
        return "connect_failed"
    if isinstance(error, ClientError):
        text = str(error)
        if text.startswith("handshake refused"):
            return "handshake_refused"
        if "before the handshake" in text:
            return "connect_failed"
        return "closed"
    if isinstance(error, RequestFailed):
        return error.kind
    return f"exception:{type(error).__name__}"


class Worker:
    """
    What the contexts of one worker share: the stats, the deadline, the target.
    """

    def __init__(self, reactor: Any, spec: dict[str, Any], stats: Stats, on_complete: Callable[[str, float], None],
                 on_error: Callable[[], None], on_push: Callable[[], None]) -> None:
        self.reactor = reactor
        self.spec = spec
        self.stats = stats
        self.window = self.end = float("inf")  # set when the run's times come
        self.stopping = False
        self.outstanding = 0
        self.clients: list[Client] = []
        self.on_complete = on_complete
        self.on_error = on_error
        self.on_push = on_push
        self.connect_limit = DeferredSemaphore(64)  # connections being set up at once

    def error(self, kind: str) -> None:
        if not self.stopping:
            self.stats.error(kind)
            self.on_error()

    @property
    def counting(self) -> bool:
        """
        Whether what completes now is counted: the measured window is open
        (after the warm-up, before the deadline).
        """
        return not self.stopping and self.window <= time.monotonic() < self.end


class Context:
    """
    One simulated client's view of the run, passed to a scenario's C{run}.

    @ivar index: this client's number, 0 to C{clients - 1} over every worker.
    @ivar host, port, transport, tls, path: the target given on the command line.
    @ivar params: the C{--param key=value} pairs, as strings.
    """

    def __init__(self, worker: Worker, index: int) -> None:
        self._worker = worker
        spec = worker.spec
        self.index = index
        self.host: str = spec["host"]
        self.port: int = spec["port"]
        self.transport: str = spec["transport"]
        self.tls: bool = spec["tls"]
        self.path: str = spec["path"]
        self.params: dict[str, str] = spec.get("params", {})
        self.reactor = worker.reactor

    @property
    def running(self) -> bool:
        """
        True until the run's deadline: a scenario stops starting new work when it turns false.
        """
        return not self._worker.stopping and time.monotonic() < self._worker.end

    @property
    def deadline(self) -> float:
        """
        When the measured window ends, as a C{ctx.now()} value: a scenario
        that must stop some time before the deadline can plan with it.
        """
        return self._worker.end

    @property
    def measuring(self) -> bool:
        """
        True while the measured window is open: after the warm-up, before the deadline.
        """
        return self.running and time.monotonic() >= self._worker.window

    def warmed_up(self) -> Deferred[None]:
        """
        Wait until the warm-up is over (at once if there is none, or it is).
        """
        return deferLater(self.reactor, max(0.0, self._worker.window - time.monotonic()), lambda: None)

    def now(self) -> float:
        """
        C{time.monotonic()}: one clock for every process of the machine, so a
        time sent in a message can be compared in another worker.
        """
        return time.monotonic()

    def sleep(self, seconds: float) -> Deferred[None]:
        """
        Wait C{seconds}, or until the deadline if that comes first.
        """
        seconds = max(0.0, min(seconds, self._worker.end - time.monotonic()))
        return deferLater(self.reactor, seconds, lambda: None)

    async def connect(self, host: str | None = None, port: int | None = None, transport: str | None = None,
                      tls: bool | None = None) -> Client:
        """
        Connect and complete the handshake (by default to the target), timing
        the set-up and counting every push the connection receives. A host
        other than loopback is refused unless the run allows remote targets.

        @raise RequestFailed: the connection failed (counted by kind).
        """
        host = self.host if host is None else host
        check_target(host, self._worker.spec["allow_remote"])
        started = time.monotonic()
        try:
            await self._worker.connect_limit.acquire()
            try:
                started = time.monotonic()
                d = Client.connect(
                    self.reactor, host, self.port if port is None else port,
                    self.transport if transport is None else transport, self.tls if tls is None else tls,
                    path=self.path, timeout=self._worker.spec["timeout"],
                )
                d.addTimeout(self._worker.spec["timeout"], self.reactor)
                client = await d
            finally:
                self._worker.connect_limit.release()
        except Exception as e:
            kind = error_kind(e)
            self._worker.error(kind)
            raise RequestFailed(kind) from e
        self._worker.stats.connect.add(time.monotonic() - started)
        self._worker.stats.connected += 1
        self._worker.clients.append(client)
        client.on("*", self._pushed)
        client.closed.addCallback(self._closed, client)
        return client

    def _pushed(self, route_and_msg: tuple[str, Any]) -> None:
        if self._worker.counting:
            self._worker.stats.push(route_and_msg[0])
            self._worker.on_push()

    def _closed(self, reason: str, client: Client) -> str:
        if client.kick_reason is not None:
            self._worker.error("kicked")
        elif not getattr(client, "_robot_closing", False):
            self._worker.error("disconnected")
        return reason

    async def close(self, client: Client) -> None:
        """
        Close a connection (not counted as an error) and wait until it is closed.
        """
        client._robot_closing = True  # type: ignore[attr-defined]
        try:
            await client.close().addTimeout(5.0, self.reactor)
        except Exception:
            pass

    def request(self, client: Client, route: str, body: Any = None) -> Deferred[Any]:
        """
        Send a request, timing it under C{route}: C{await ctx.request(...)}
        gives its answer. (A Deferred, not a coroutine: this is the robot's
        hot path.)

        @raise RequestFailed: an error response, a timeout or a closed
            connection (counted by kind: C{error_response:CODE}, C{timeout}, C{closed}).
        """
        worker = self._worker
        worker.outstanding += 1
        d = client.request(route, body)
        d.addTimeout(worker.spec["timeout"], self.reactor)
        return d.addCallbacks(self._answered, self._failed, (route, time.monotonic()))

    def _answered(self, answer: Any, route: str, started: float) -> Any:
        worker = self._worker
        worker.outstanding -= 1
        kind = error_body(answer)
        if kind is not None:
            worker.error(kind)
            raise RequestFailed(kind)
        if worker.counting:
            latency = time.monotonic() - started
            worker.stats.request_done(route, latency)
            worker.on_complete(route, latency)
        elif not worker.stopping:
            worker.stats.uncounted += 1
        return answer

    def _failed(self, failure: Failure) -> NoReturn:
        self._worker.outstanding -= 1
        kind = error_kind(failure.value)
        self._worker.error(kind)
        raise RequestFailed(kind) from failure.value

    def notify(self, client: Client, route: str, body: Any = None) -> None:
        """
        Send a notify (not counted: no answer comes).
        """
        client.notify(route, body)

    def push_latency(self, route: str, seconds: float) -> None:
        """
        Record how long a push took from being caused to arriving (the
        scenario knows how: e.g. a C{ctx.now()} it sent in the message).
        """
        if self._worker.counting:
            self._worker.stats.push_latency.setdefault(route, Histogram()).add(max(0.0, seconds))

    def delivered(self, route: str, key: str, seconds: float) -> None:
        """
        Record that this client received message C{key} (e.g. a sequence
        number the sender put in it), sent to many clients on C{route}, after
        C{seconds}: the report gives, over every worker, each message's
        deliveries and its first and last delivery latency.
        """
        if self._worker.counting:
            self._worker.stats.delivered(route, key, max(0.0, seconds))

    def error(self, kind: str) -> None:
        """
        Count an error of the scenario's own kind (e.g. a wrong answer).
        """
        self._worker.error(kind)


class RouteScenario:
    """
    Connect, then keep C{inflight} requests of C{route} with C{body}
    outstanding until the deadline; with C{echo}, an answer that is not the
    body counts as C{wrong_answer}.
    """

    def __init__(self, route: str, body: Any, inflight: int, echo: bool = False) -> None:
        self.route = route
        self.body = body
        self.inflight = inflight
        self.echo = echo

    async def run(self, ctx: Context) -> None:
        client = await ctx.connect()
        await gatherResults([self._loop(ctx, client) for _ in range(self.inflight)])
        await ctx.close(client)

    def _loop(self, ctx: Context, client: Client) -> Deferred[None]:
        # One request after the other until the deadline, as callbacks rather
        # than a coroutine: the robot's CPU per request is what limits its rate.
        done: Deferred[None] = Deferred()

        def send() -> None:
            if ctx.running and not client.closed.called:
                ctx.request(client, self.route, self.body).addCallbacks(answered, failed)
            else:
                done.callback(None)

        def answered(answer: Any) -> None:
            if self.echo and answer != self.body:
                ctx.error("wrong_answer")
            send()

        def failed(failure: Failure) -> None:
            if failure.check(RequestFailed) and failure.value.kind in ("closed", "timeout"):
                done.callback(None)
            else:
                send()

        send()
        return done


class IdleScenario:
    """
    Connect and hold the connection (the client keeps its heartbeats) until
    the deadline, sending nothing: what idle players cost a server.
    """

    async def run(self, ctx: Context) -> None:
        client = await ctx.connect()
        await ctx.sleep(float("inf"))  # until the deadline
        await ctx.close(client)


def load_scenario(name: str) -> Any:
    """
    A scenario module by file path (C{examples/chat/robot.py}) or dotted name
    (C{examples.chat.robot}); it must have a C{run(ctx)} coroutine function.
    """
    if name.endswith(".py") or "/" in name:
        path = Path(name).resolve()
        spec = importlib.util.spec_from_file_location(f"_gamenet_robot_scenario_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load a scenario from {name}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(name)
    if not callable(getattr(module, "run", None)):
        raise ImportError(f"scenario {name} has no run(ctx)")
    return module
