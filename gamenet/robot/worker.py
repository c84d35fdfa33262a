"""
One worker process of the robot: C{python -m gamenet.robot.worker SPEC}.

SPEC (JSON) names the target, the scenario and this worker's clients
(C{first_index}, C{clients}). Once it has imported what it needs and loaded
the scenario, it prints C{{"ready": true}} and waits for one line on stdin
with the run's times as absolute C{time.monotonic()} values (one clock for
the whole machine): C{start} (the load starts), C{window} (the warm-up is
over: counting starts), C{end}, C{end + drain} (C{drain} is in the SPEC),
and C{hard_end}, when the process ends whatever happens (an alarm signal,
even if the reactor is stuck or the parent died; before the times come, the
alarm is L{READY_LIMIT} seconds away).

At C{start} it starts its clients, each running the scenario; every second
it prints a JSON line C{{"tick": Tick}}; when every client is done, or at
C{end + drain}, it prints C{{"final": Stats}} (requests still unanswered
counted as abandoned), closes its connections and exits. It also exits when
its stdin closes (the parent is gone).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any

from .stats import Stats, Tick

READY_LIMIT = 120  # seconds a worker waits for the run's times before it ends itself


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(spec: dict[str, Any]) -> None:
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(READY_LIMIT)

    from twisted.internet import epollreactor
    from twisted.internet.error import ReactorAlreadyInstalledError

    try:
        epollreactor.install()
    except ReactorAlreadyInstalledError:
        pass  # something imported the default reactor first: use it
    from twisted.internet import reactor, stdio
    from twisted.internet.defer import Deferred, gatherResults
    from twisted.protocols.basic import LineReceiver
    from twisted.internet.task import LoopingCall

    from .options import UsageError
    from .scenarios import Context, IdleScenario, RequestFailed, RouteScenario, Worker, load_scenario

    if spec.get("scenario"):
        scenario = load_scenario(spec["scenario"])
    elif spec["idle"]:
        scenario = IdleScenario()
    else:
        scenario = RouteScenario(spec["route"], spec["body"], spec["inflight"], spec["echo"])

    stats = Stats(clients=spec["clients"])
    state: dict[str, Any] = {"tick": Tick(0), "final": False}

    def tick() -> Tick:
        # The second of the load it is now, by the shared clock (not by when a timer fired):
        # a new second sends the last one's counts to the parent.
        second = int(time.monotonic() - spec["start"])
        if second > state["tick"].second:
            _emit({"tick": state["tick"].to_json()})
            state["tick"] = Tick(second)
        return state["tick"]

    def completed(route: str, latency: float) -> None:
        tick().request_done(route, latency)

    def errored() -> None:
        tick().errors += 1

    def pushed() -> None:
        tick().pushes += 1

    worker = Worker(reactor, spec, stats, completed, errored, pushed)  # its times are set when they come
    ticker = LoopingCall(tick)  # sends each second's counts, even of a second without any

    def final() -> None:
        if state["final"]:
            return
        state["final"] = True
        worker.stopping = True
        stats.abandoned = worker.outstanding
        if ticker.running:
            ticker.stop()
        if state["tick"].completed or state["tick"].errors or state["tick"].pushes:
            _emit({"tick": state["tick"].to_json()})
        _emit({"final": stats.to_json()})
        for client in worker.clients:
            if not client.closed.called:
                client._robot_closing = True  # type: ignore[attr-defined]
                client.close()
        reactor.callLater(0.3, reactor.stop)

    async def one(index: int) -> None:
        ctx = Context(worker, index)
        try:
            await scenario.run(ctx)
        except RequestFailed:
            pass  # counted where it happened
        except UsageError:
            worker.error("refused_remote")
        except Exception as e:
            worker.error(f"exception:{type(e).__name__}")

    def begin() -> None:
        ticker.start(1.0, now=False)
        runs = [Deferred.fromCoroutine(one(spec["first_index"] + i)) for i in range(spec["clients"])]
        gatherResults(runs).addBoth(lambda _: final())
        reactor.callLater(max(0.0, spec["end"] + spec["drain"] - time.monotonic()), final)

    class Parent(LineReceiver):
        delimiter = b"\n"

        def lineReceived(self, line: bytes) -> None:
            if "start" in spec:
                return
            spec.update(json.loads(line))
            signal.alarm(max(1, int(spec["hard_end"] - time.monotonic()) + 1))
            worker.window, worker.end = spec["window"], spec["end"]
            reactor.callLater(max(0.0, spec["start"] - time.monotonic()), begin)

        def connectionLost(self, reason: Any = None) -> None:
            if not reactor.running:
                return
            if "start" in spec:
                final()
            else:
                reactor.stop()

    stdio.StandardIO(Parent(), stdout=os.open(os.devnull, os.O_WRONLY))
    reactor.callWhenRunning(_emit, {"ready": True})
    reactor.run()


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
