"""
Fakes of the master's parts for tests of the admin API and its clients,
checked against the interfaces of L{gamenet.admin.interfaces}.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from zope.interface import implementer

from ..admin.interfaces import IFleet, IMaster, ISupervisor
from ..cluster.control import SESSIONS_LISTED
from ..config import ClusterConfig, ServerConfig
from ..errors import GamenetError


@implementer(ISupervisor)
class FakeSupervisor:
    """
    A process monitor whose children are pretend: it gives them pids and
    records the signals it sends; a test ends a child with L{exit} and lets
    a pending restart happen with L{restart_due}.

    @ivar processes: each child's command line, by name.
    @ivar signals: C{(name, "TERM" | "KILL")}, in order.
    """

    def __init__(self, running: bool = True) -> None:
        self.held: set[str] = set()
        self.no_restart: set[str] = set()
        self.process_listeners: list[Callable[[str, int | None], None]] = []
        self.processes: dict[str, list[str]] = {}
        self.environments: dict[str, dict[str, str]] = {}
        self.pids: dict[str, int] = {}
        self.pending: set[str] = set()
        self.signals: list[tuple[str, str]] = []
        self.running = running
        self._exits: dict[str, list[Deferred[None]]] = {}
        self._next_pid = 1000

    def addProcess(self, name: str, args: list[str], uid: int | None = None, gid: int | None = None,
                   env: dict[str, str] = {}, cwd: str | None = None) -> None:  # noqa: B006 (procmon's signature)
        if name in self.processes:
            raise KeyError(f"remove {name} first")
        self.processes[name] = args
        self.environments[name] = env
        if self.running:
            self._start(name)

    def removeProcess(self, name: str) -> None:
        del self.processes[name]

    def pid(self, name: str) -> int | None:
        return self.pids.get(name)

    def restart_pending(self, name: str) -> bool:
        return name in self.pending

    def hold(self, name: str) -> None:
        self.held.add(name)
        self.pending.discard(name)

    def start_process(self, name: str) -> None:
        self.held.discard(name)
        self.pending.discard(name)
        self._start(name)

    def stop_processes(self, names: list[str]) -> Deferred[Any]:
        waits = []
        for name in names:
            if name in self.pids:
                self.signals.append((name, "TERM"))
                d: Deferred[None] = Deferred()
                self._exits.setdefault(name, []).append(d)
                waits.append(d)
        return DeferredList(waits)

    def kill_process(self, name: str) -> None:
        if name in self.pids:
            self.signals.append((name, "KILL"))

    def _start(self, name: str) -> None:
        if name in self.pids:
            return
        self._next_pid += 1
        self.pids[name] = self._next_pid
        self._tell(name, self._next_pid)

    def exit(self, name: str) -> None:
        """
        A child exits; it is to be restarted unless held or C{no_restart}.
        """
        del self.pids[name]
        if name in self.processes and name not in self.held and name not in self.no_restart:
            self.pending.add(name)
        for d in self._exits.pop(name, []):
            d.callback(None)
        self._tell(name, None)

    def restart_due(self, name: str) -> None:
        """
        The restart delay of an exited child has passed: it starts again.
        """
        self.pending.remove(name)
        self._start(name)

    def _tell(self, name: str, pid: int | None) -> None:
        for listener in list(self.process_listeners):
            listener(name, pid)


@implementer(IMaster)
class FakeMaster:
    """
    A master without processes or sockets: a L{FakeSupervisor}, logins made
    by the test (L{login}, L{logout}), and control calls answered at once from
    C{answers} (by call name: a callable taking the server id and the
    keyword arguments) or, for C{status}, from L{status}.

    @ivar calls: every control call made, C{(server_id, name, kwargs)}.
    @ivar statuses: what each server's C{status} adds to the default one.
    """

    def __init__(self, cluster: ClusterConfig, local: Iterable[ServerConfig] | None = None,
                 env: str | None = None) -> None:
        self.cluster = cluster
        self.local = list(cluster.servers if local is None else local)
        self.env = env
        self.up: dict[str, object] = {}
        self.member_listeners: list[Callable[[str, bool], None]] = []
        self.supervisor = FakeSupervisor()
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.statuses: dict[str, dict[str, Any]] = {}
        self.answers: dict[str, Callable[..., Any]] = {"status": self.status}

    def control(self, server_id: str, name: str, **kwargs: Any) -> Deferred[Any]:
        if server_id not in self.up:
            return fail(GamenetError(f"server {server_id} is not logged in to the master", 404))
        self.calls.append((server_id, name, kwargs))
        answer = self.answers.get(name)
        try:
            result = answer(server_id, **kwargs) if answer is not None else None
        except Exception:
            return fail()
        return result if isinstance(result, Deferred) else succeed(result)

    def status(self, server_id: str) -> dict[str, Any]:
        """
        A server's status: up, linked to every other logged-in server, no
        load; updated with C{statuses[server_id]}.
        """
        return {
            "id": server_id, "pid": self.supervisor.pids.get(server_id), "started": 0.0, "state": "up",
            "clients": 0, "sessions": 0, "links": {other: True for other in self.up if other != server_id},
            "cpu_seconds": 0.0, "rss": 0, "metrics": {}, **self.statuses.get(server_id, {}),
        }

    def login(self, server_id: str) -> None:
        """
        A server logs in to the master.
        """
        self.up[server_id] = object()
        for listener in list(self.member_listeners):
            listener(server_id, True)

    def logout(self, server_id: str) -> None:
        """
        A server's link to the master goes.
        """
        del self.up[server_id]
        for listener in list(self.member_listeners):
            listener(server_id, False)


def server_record(server_id: str, server_type: str, state: str = "up", **fields: Any) -> dict[str, Any]:
    """
    A server's record as the admin API gives it (see C{doc/operations.md}):
    up and ready by default, no load; C{fields} override any key.
    """
    up = state == "up"
    return {
        "id": server_id, "type": server_type, "host": "127.0.0.1",
        "ports": {"node": 0, "client": 0, "web": 0, "metrics": 0}, "pid": 1000 if state != "down" else None,
        "state": state, "ready": up, "uptime": 10.0 if state != "down" else None, "restarts": 0,
        "clients": 0, "sessions": 0,
        "rps": 0.0, "errors_per_second": 0.0, "p50": None, "p99": None, "cpu": 0.0, "rss": 0,
        "frontend": server_type in ("gate", "connector"), **fields,
    }


@implementer(IFleet)
class FakeFleet:
    """
    A fleet (what the admin API asks, L{gamenet.admin.fleet.IFleet}) that
    answers from records kept in memory and records every call: for tests of
    the admin API and of its clients, over the real resource::

        fleet = FakeFleet()
        http = StubTreq(AdminApi(fleet).resource("token"))

    By default it has the five servers of the default cluster, up and ready.
    stop and kill make servers down; restart gives them a new pid, up and
    ready at once.

    @ivar records: the server records, by id, in order.
    @ivar calls: C{(name, kwargs)} of every call made.
    @ivar errors: an error to raise, by call name, instead of answering.
    """

    def __init__(self, records: Iterable[dict[str, Any]] | None = None, name: str = "chat") -> None:
        if records is None:
            records = [server_record(server_id, server_type) for server_id, server_type in (
                ("gate-1", "gate"), ("connector-1", "connector"), ("connector-2", "connector"),
                ("chat-1", "chat"), ("chat-2", "chat"))]
        self.records = {record["id"]: record for record in records}
        self.name = name
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.errors: dict[str, GamenetError] = {}
        self.blocked_networks: list[str] = []
        self._pids = 2000

    def _call(self, name: str, **kwargs: Any) -> None:
        self.calls.append((name, kwargs))
        if name in self.errors:
            raise self.errors[name]

    def _get(self, server_id: str) -> dict[str, Any]:
        if server_id not in self.records:
            raise GamenetError(f"no server {server_id} (servers: {', '.join(self.records)})", 404)
        return self.records[server_id]

    def cluster(self) -> dict[str, Any]:
        self._call("cluster")
        return {"name": self.name, "master": {"pid": 1, "uptime": 10.0}, "servers": len(self.records),
                "up": sum(1 for record in self.records.values() if record["state"] == "up")}

    def servers(self, server_type: str | None = None) -> list[dict[str, Any]]:
        self._call("servers", server_type=server_type)
        if server_type is not None and not any(r["type"] == server_type for r in self.records.values()):
            raise GamenetError(f"unknown server type {server_type}", 400)
        return [record for record in self.records.values() if server_type in (None, record["type"])]

    def server(self, server_id: str) -> dict[str, Any]:
        self._call("server", server_id=server_id)
        return {**self._get(server_id), "routes": {}}

    def history(self, seconds: float) -> dict[str, Any]:
        self._call("history", seconds=seconds)
        return {"interval": 2.0, "servers": {server_id: [] for server_id in self.records}}

    def _select(self, name: str, servers: list[str] | None, type: str | None, all: bool) -> list[dict[str, Any]]:
        self._call(name, servers=servers, type=type, all=all)
        if sum((servers is not None, type is not None, bool(all))) != 1:
            raise GamenetError('give one of "servers" (a list of ids), "type" or "all"', 400)
        if servers is not None:
            return [self._get(server_id) for server_id in servers]
        return [record for record in self.records.values() if type in (None, record["type"])]

    def stop(self, servers: list[str] | None = None, type: str | None = None, all: bool = False) -> list[str]:
        chosen = self._select("stop", servers, type, all)
        for record in chosen:
            record.update(state="down", ready=False, pid=None, uptime=None)
        return [record["id"] for record in chosen]

    def kill(self, servers: list[str] | None = None, type: str | None = None, all: bool = False) -> list[str]:
        chosen = self._select("kill", servers, type, all)
        for record in chosen:
            record.update(state="down", ready=False, pid=None, uptime=None)
        return [record["id"] for record in chosen]

    def restart(self, servers: list[str] | None = None, type: str | None = None, all: bool = False) -> list[str]:
        chosen = self._select("restart", servers, type, all)
        for record in chosen:
            self._pids += 1
            record.update(state="up", ready=True, pid=self._pids, uptime=0.0, restarts=record["restarts"] + 1)
        return [record["id"] for record in chosen]

    def add(self, section: str | None = None, spec: Any = None) -> dict[str, Any]:
        self._call("add", section=section, spec=spec)
        if (section is None) == (spec is None):
            raise GamenetError('give either "section" or "spec"', 400)
        server_id = section.split(":", 1)[-1] if section is not None else spec.get("id")
        if server_id in self.records:
            raise GamenetError(f"server {server_id} already exists", 409)
        record = self.records[server_id] = server_record(
            server_id, spec.get("type", "chat") if spec is not None else "chat", state="starting")
        return record

    def remove(self, server_id: str) -> None:
        self._call("remove", server_id=server_id)
        self._get(server_id)
        del self.records[server_id]

    async def sessions(self, server_id: str, uid: str | None = None, limit: int = SESSIONS_LISTED) -> dict[str, Any]:
        self._call("sessions", server_id=server_id, uid=uid, limit=limit)
        self._get(server_id)
        sessions = [{"id": 1, "uid": "bob", "address": "127.0.0.1", "transport": "tcp", "seconds": 5.0},
                    {"id": 2, "uid": None, "address": "::1", "transport": "ws", "seconds": 1.5}]
        chosen = [session for session in sessions if uid in (None, session["uid"])]
        return {"server": server_id, "total": len(chosen), "sessions": chosen[:limit]}

    async def kick(self, uid: str | None = None, server: str | None = None, session: int | None = None,
                   reason: str = "kicked by admin") -> int:
        self._call("kick", uid=uid, server=server, session=session, reason=reason)
        if server is not None:
            self._get(server)
        return 1

    async def blocked(self) -> list[str]:
        self._call("blocked")
        return list(self.blocked_networks)

    async def block(self, networks: list[str]) -> list[str]:
        self._call("block", networks=networks)
        self.blocked_networks += [network for network in networks if network not in self.blocked_networks]
        return list(self.blocked_networks)

    async def unblock(self, networks: list[str]) -> list[str]:
        self._call("unblock", networks=networks)
        for network in networks:
            if network not in self.blocked_networks:
                raise GamenetError(f"{network} is not blocked", 404)
        self.blocked_networks = [n for n in self.blocked_networks if n not in networks]
        return list(self.blocked_networks)

    async def broadcast(self, route: str, msg: Any) -> int:
        self._call("broadcast", route=route, msg=msg)
        return sum(1 for record in self.records.values() if record["frontend"] and record["state"] == "up")
