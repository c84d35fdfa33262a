"""
What the connectors' node links do, counted from outside gamenet: every
batch of calls a connector sends to a peer (one PB C{callRemote("calls")},
all the calls queued in one reactor turn) and every batch of results it gets
back, per peer. C{connector.benchStats.get} answers the counts.

The counting wraps each L{gamenet.cluster.link.NodeLink}'s C{_flush} and
C{_results} on the instance, once the server has started (its links exist
then): one Python call more per batch, nothing per call.

It also times the sys call C{push_uids} (a channel push reaching this
connector) for pushes whose message carries C{room}, C{n} and C{sent} (those
of C{area.benchHandler.push}), with C{time.monotonic()}, the clock of their
C{sent}: when the call starts; when it returns, the push written to every
member's transport; and when Twisted has put those bytes on the sockets. Twisted's C{transport.write}
only buffers: the socket sends happen when the next reactor iteration
polls the sockets writable, after that iteration's timed calls. A
C{callLater(0)} made in the call runs in those timed calls, and one it
makes in turn runs in the iteration after: after the sends.
C{connector.benchStats.pushes} answers the last 10,000 of them.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from typing import Any

from gamenet import Handler, configure, handler


def _count(link: Any, counts: Counter[str]) -> None:
    flush, results = link._flush, link._results

    def counted_flush() -> None:
        if link._queue and link._perspective is not None:
            counts["batches"] += 1
            counts["calls"] += len(link._queue)
            counts["bytes"] += link._size
        flush()

    def counted_results(batch: bytes) -> None:
        counts["result_batches"] += 1
        counts["result_bytes"] += len(batch)
        results(batch)

    link._flush = counted_flush
    link._results = counted_results


def _instrument(app: Any) -> None:
    counters: dict[str, Counter[str]] = {}
    app.set("bench.link_counters", counters)

    def started(app: Any) -> None:
        for peer_id, link in app.node.links.items():
            _count(link, counters.setdefault(peer_id, Counter()))

    app.after_startup(started)

    pushes: deque[list[Any]] = deque(maxlen=10000)
    app.set("bench.pushes", pushes)
    sys = app.node.sys
    if sys is None:
        return
    run = sys.call
    later = app.reactor.callLater

    def on_sockets(record: list[Any]) -> None:
        record.append(time.monotonic())

    def timed_call(name: str, args: list[Any]) -> Any:
        if name != "push_uids":
            return run(name, args)
        start = time.monotonic()
        result = run(name, args)
        end = time.monotonic()
        msg = args[1] if len(args) > 1 else None
        if isinstance(msg, dict) and "sent" in msg:
            record = [msg.get("room"), msg.get("n"), msg["sent"], start, end, len(args[2])]
            pushes.append(record)
            later(0, later, 0, on_sockets, record)
        return result

    sys.call = timed_call


class BenchStats(Handler):
    """
    C{connector.benchStats.*}.
    """

    def get(self, msg: Any, session: Any) -> dict[str, Any]:
        """
        The batch counters of each node link, by peer, and the frontend's metrics.
        """
        counters = self.app.get("bench.link_counters", {})
        return {
            "links": {peer: dict(counts) for peer, counts in counters.items()},
            "metrics": dict(self.app.frontend.metrics) if self.app.frontend is not None else {},
        }

    def pushes(self, msg: Any, session: Any) -> list[list[Any]]:
        """
        The timed channel pushes: C{[room, n, sent, start, end, members here,
        on sockets]}, oldest first (C{on sockets} missing for one still under way).
        """
        return list(self.app.get("bench.pushes", ()))


instrument = configure(_instrument, "connector")
stats = handler(BenchStats, "connector")
