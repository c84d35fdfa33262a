"""
What the master knows of each server (L{Member}), and the records the admin
API gives of them: state, readiness and the figures between two polls. No
I/O: the fleet feeds it statuses and asks it for records. Tested in
C{tests/test_fleet.py}.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Collection, Iterable

import attrs

from ..config import ServerConfig
from . import stats

Record = dict[str, Any]


@attrs.define(eq=False)
class Member:
    """
    What the master knows of one server.

    @ivar started: when its process started, by the fleet's clock.
    @ivar login: when its current login began, in the fleet's event order;
        C{None} while it is not logged in.
    @ivar stopping: a stop, kill or restart was asked and its process has not exited.
    @ivar restarting: start it again once its process has exited.
    @ivar starts: how many times its process started.
    @ivar status: its last C{status} during this login.
    @ivar seen: when that status arrived, in the fleet's event order.
    @ivar figures: rates and quantiles between its last two statuses.
    @ivar routes: the same for each route, with its totals.
    @ivar history: samples of the figures, the last
        L{Fleet.history_seconds<gamenet.admin.fleet.Fleet.history_seconds>}.
    @ivar polling: a C{status} call is on its way.
    """

    server: ServerConfig
    local: bool
    pid: int | None = None
    started: float = 0.0
    login: int | None = None
    stopping: bool = False
    restarting: bool = False
    starts: int = 0
    status: dict[str, Any] | None = None
    status_at: float = 0.0
    seen: int = 0
    figures: dict[str, Any] = attrs.Factory(dict)
    routes: dict[str, Any] = attrs.Factory(dict)
    history: deque[dict[str, Any]] = attrs.Factory(deque)
    polling: bool = False

    def forget_status(self) -> None:
        self.status, self.figures, self.routes = None, {}, {}

    def take_status(self, status: dict[str, Any], now: float, seen: int, history_seconds: float) -> None:
        """
        Keep a C{status} that arrived at C{now}, C{seen} in the fleet's event
        order. From the second status of one process on, the figures between
        the two are kept too, and a sample of them in C{history}, which holds
        the last C{history_seconds}.
        """
        before, before_at = self.status, self.status_at
        self.status, self.status_at, self.seen = status, now, seen
        if not self.local and (before is None or before.get("pid") != status.get("pid")):
            self.starts += 1
        if before is None or before.get("pid") != status.get("pid"):
            return
        seconds = now - before_at
        metrics_before, metrics_after = stats.mapping(before.get("metrics")), stats.mapping(status.get("metrics"))
        figures = stats.figures(metrics_before, metrics_after, seconds)
        cpu = (stats.number(before, "cpu_seconds"), stats.number(status, "cpu_seconds"))
        figures["cpu"] = 100 * stats.rate(*cpu, seconds)
        self.figures = figures
        self.routes = stats.route_figures(metrics_before, metrics_after, seconds)
        self.history.append({
            "t": now, "rps": figures["rps"], "p50": figures["p50"], "p99": figures["p99"],
            "errors": figures["errors_per_second"], "cpu": figures["cpu"],
            "rss": status.get("rss", 0), "clients": status.get("clients", 0),
        })
        while self.history and self.history[0]["t"] < now - history_seconds:
            self.history.popleft()


def state(member: Member, logged_in: Collection[str], restart_pending: Callable[[str], bool]) -> str:
    """
    A server's state (see L{gamenet.admin.fleet}).

    @param logged_in: the ids of the servers logged in to the master.
    @param restart_pending: whether the supervisor is to start a local
        server's process again.
    """
    server_id = member.server.id
    up = server_id in logged_in
    running = member.pid is not None if member.local else up
    if not running:
        pending = member.local and restart_pending(server_id)
        return "restarting" if member.restarting or pending else "down"
    if up:
        draining = member.stopping or (member.status or {}).get("state") == "draining"
        return "draining" if draining else "up"
    return "stopping" if member.stopping else "starting"


def records(members: Iterable[Member], every: Collection[Member], logged_in: Collection[str],
            restart_pending: Callable[[str], bool], now: float) -> list[Record]:
    """
    The records of C{members} at C{now}, as the admin API gives them (see
    C{doc/operations.md}); whether each is ready depends on C{every} server
    of the fleet. C{logged_in} and C{restart_pending} are L{state}'s.
    """
    states = {member.server.id: state(member, logged_in, restart_pending) for member in every}
    up = [member for member in every if states[member.server.id] == "up"]
    return [_record(member, states[member.server.id], up, now) for member in members]


def unknown_type(server_type: str, members: Iterable[Member]) -> str:
    """
    The error message for a server type no member has.
    """
    types = sorted({member.server.type for member in members})
    return f"unknown server type {server_type} (types: {', '.join(types) or 'none'})"


def _ready(member: Member, state: str, up: list[Member]) -> bool:
    """
    Up, not draining, its status known, and every other server that is
    up (of C{up}) has reported since this login that its link to it is
    available.
    """
    if state != "up" or member.status is None or member.login is None:
        return False
    for other in up:
        if other is member:
            continue
        if other.status is None or other.seen < member.login:
            return False
        if stats.mapping(other.status.get("links")).get(member.server.id) is not True:
            return False
    return True


def _record(member: Member, state: str, up: list[Member], at: float) -> Record:
    server = member.server
    status = member.status or {}
    figures = member.figures
    uptime = None
    if member.local and state not in ("down", "restarting"):
        uptime = max(0.0, at - member.started)
    elif not member.local and "started" in status:
        uptime = max(0.0, at - stats.number(status, "started"))
    # Live figures only from a server logged in now: a stopped one has none.
    live = state in ("up", "draining")

    def now(value: Any) -> Any:
        return value if live else None

    return {
        "id": server.id,
        "type": server.type,
        "host": server.host,
        "ports": {**server.ports, **stats.mapping(status.get("ports"))},
        "pid": member.pid if member.local else status.get("pid"),
        "state": state,
        "ready": _ready(member, state, up),
        "uptime": uptime,
        "restarts": max(0, member.starts - 1),
        "clients": now(status.get("clients", 0)),
        "sessions": now(status.get("sessions", 0)),
        "rps": now(figures.get("rps", 0.0)),
        "errors_per_second": now(figures.get("errors_per_second", 0.0)),
        "p50": now(figures.get("p50")),
        "p99": now(figures.get("p99")),
        "cpu": now(figures.get("cpu", 0.0)),
        "rss": now(status.get("rss", 0)),
        "frontend": server.frontend,
    }
