"""
The master's view of its servers, and what the admin service does to them.
Tested in C{tests/test_fleet.py}.

L{Fleet} follows every server of the cluster through three sources: the
L{Supervisor<gamenet.cluster.master.Supervisor>}'s process events (started,
exited), the master's logins (a server's link to the master is up or gone),
and the C{status} control call it makes on every logged-in server every
L{Fleet.interval} seconds. From those it gives each server a state::

    starting -> up -> draining -> stopping -> down
                                           -> restarting -> starting ...

and the figures of the dashboard (requests and errors per second, latency
p50/p99, CPU %) from the differences between two polls.

What it knows of each server, and the records made of it, are in
L{gamenet.admin.members}; servers added and removed at run time are
checked and made part of the cluster in L{gamenet.admin.additions}; the
operations on clients are in L{gamenet.admin.clients}, on the block list in
L{gamenet.admin.blocking}.
"""

from __future__ import annotations

import os
from itertools import count
from typing import Any, Callable, Iterable

from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..cluster.control import ADMIN_KICK, SESSIONS_LISTED
from ..cluster.master import local_hosts
from ..config import ServerConfig
from ..errors import GamenetError
from ..storage.blocked import BlockStore
from .additions import Changes, can_bind, check, from_file, from_spec
from .blocking import Blocking
from .clients import Clients
from .interfaces import IFleet, IMaster, ISupervisor
from .members import Member, Record, records, state, unknown_type

log = Logger()

@implementer(IFleet)
class Fleet:
    """
    The master's view of every server of its cluster, and the admin
    operations on them; the admin API (L{gamenet.admin}) is a thin layer
    over it. Every operation checks all of its input before it changes
    anything, and raises L{GamenetError} with the HTTP status to answer
    (400 bad input, 404 unknown server, 409 a conflict with the fleet's state).

    @ivar interval: seconds between two polls of each server's status.
    @ivar history_seconds: how long samples are kept for the dashboard.
    @ivar changes: the servers added and removed at run time.
    """

    interval = 2.0
    history_seconds = 600.0

    def __init__(
        self, master: IMaster, clock: Any, store: BlockStore,
        bindable: Callable[[str, int], str | None] = can_bind, hosts: set[str] | None = None,
    ) -> None:
        """
        @param store: where the block list is kept.
        @param bindable: tells why a port cannot be opened on a host, or C{None}.
        @param hosts: the names of this machine (L{local_hosts} by default);
            an IP address of one of its interfaces counts too
            (L{own_address<gamenet.cluster.master.own_address>}).
        """
        self.master = master
        self.supervisor: ISupervisor = master.supervisor
        self.clock = clock
        self.store = store
        self.bindable = bindable
        self.hosts = local_hosts() if hosts is None else hosts
        local = {server.id for server in master.local}
        self._members = {server.id: Member(server, server.id in local) for server in master.cluster.servers}
        self.changes = Changes(master, self._members, self._call)
        self.clients = Clients(master, self._members, self._call_failed)
        self.blocking = Blocking(store, self.clients.frontends_up, self._call)
        self._order = count(1)
        self._started = 0.0
        self._loop = LoopingCall(self.poll)
        self._loop.clock = clock

    # Life

    def watch(self) -> None:
        """
        Take the servers' current state, follow their events, load the block
        list and poll every L{interval} seconds.
        """
        self._started = self.clock.seconds()
        for member in self._members.values():
            if member.local:
                member.pid = self.supervisor.pid(member.server.id)
                if member.pid is not None:
                    member.started, member.starts = self._started, 1
            if member.server.id in self.master.up:
                member.login = next(self._order)
        self.supervisor.process_listeners.append(self._process)
        self.master.member_listeners.append(self._member)
        self.blocking.load()
        self._loop.start(self.interval, now=True)

    def unwatch(self) -> None:
        """
        Stop polling and following events.
        """
        if self._loop.running:
            self._loop.stop()
        for listeners, listener in ((self.supervisor.process_listeners, self._process),
                                    (self.master.member_listeners, self._member)):
            if listener in listeners:
                listeners.remove(listener)

    # Events

    def _process(self, name: str, pid: int | None) -> None:
        member = self._members.get(name)
        if member is None:
            return
        if pid is not None:
            member.pid, member.started = pid, self.clock.seconds()
            member.starts += 1
            member.stopping = member.restarting = False
            return
        member.pid, member.stopping = None, False
        member.forget_status()
        if name in self.changes.removing:
            self.changes.forget(member)
        elif member.restarting:
            self.supervisor.start_process(name)

    def _member(self, server_id: str, logged_in: bool) -> None:
        member = self._members.get(server_id)
        if member is None:
            return
        member.forget_status()
        if not logged_in:
            member.login = None
            return
        member.login = next(self._order)
        self._greet(member.server)
        self._poll(member)

    def _greet(self, server: ServerConfig) -> None:
        """
        Tell a server that just logged in what changed since the cluster file
        was read: servers added and removed, and the block list.
        """
        self.changes.greet(server)
        if server.frontend:
            self.blocking.greet(server.id)

    def _call(self, server_id: str, name: str, **kwargs: Any) -> Any:
        d = self.master.control(server_id, name, **kwargs)
        d.addErrback(self._call_failed, server_id, name)
        return d

    def _call_failed(self, failure: Failure, server_id: str, name: str) -> None:
        log.warn("admin: control call {name} on {server_id} failed: {error}", name=name, server_id=server_id,
                 error=failure.getErrorMessage())

    # Polls

    def poll(self) -> None:
        """
        Ask every logged-in server for its status (one call at a time each).
        """
        for server_id in list(self.master.up):
            member = self._members.get(server_id)
            if member is not None:
                self._poll(member)

    def _poll(self, member: Member) -> None:
        server_id = member.server.id
        if member.polling or server_id not in self.master.up:
            return
        member.polling = True
        avatar = self.master.up[server_id]
        d = self.master.control(server_id, "status")
        d.addCallbacks(self._status, self._call_failed, (member, avatar), errbackArgs=(server_id, "status"))
        d.addBoth(self._polled, member)

    def _polled(self, _: Any, member: Member) -> None:
        member.polling = False

    def _status(self, status: Any, member: Member, avatar: Any) -> None:
        if self.master.up.get(member.server.id) is not avatar or not isinstance(status, dict):
            return
        member.take_status(status, self.clock.seconds(), next(self._order), self.history_seconds)

    # Views

    def _state(self, member: Member) -> str:
        return state(member, self.master.up, self.supervisor.restart_pending)

    def _records(self, members: Iterable[Member]) -> list[Record]:
        return records(members, self._members.values(), self.master.up, self.supervisor.restart_pending,
                       self.clock.seconds())

    def _get(self, server_id: str) -> Member:
        member = self._members.get(server_id)
        if member is None:
            raise GamenetError(f"no server {server_id} (servers: {', '.join(self._members) or 'none'})", 404)
        return member

    def cluster(self) -> Record:
        """
        The cluster's name, the master's pid and uptime, and how many servers
        it has and how many are up.
        """
        records = self.servers()
        return {
            "name": self.master.cluster.name,
            "master": {"pid": os.getpid(), "uptime": self.clock.seconds() - self._started},
            "servers": len(records),
            "up": sum(1 for record in records if record["state"] == "up"),
        }

    def servers(self, server_type: str | None = None) -> list[Record]:
        """
        A record of every server (of one type), in the cluster's order.

        @raise GamenetError: 400, no server has that type.
        """
        if server_type is not None and not any(m.server.type == server_type for m in self._members.values()):
            raise GamenetError(unknown_type(server_type, self._members.values()), 400)
        return self._records(member for member in self._members.values()
                             if server_type is None or member.server.type == server_type)

    def server(self, server_id: str) -> Record:
        """
        One server's record, with its routes' figures.

        @raise GamenetError: 404, no such server.
        """
        member = self._get(server_id)
        return {**self._records([member])[0], "routes": member.routes}

    def history(self, seconds: float) -> Record:
        """
        The samples of the last C{seconds} (at most L{history_seconds}) of every server.
        """
        since = self.clock.seconds() - seconds
        return {
            "interval": self.interval,
            "servers": {server_id: [sample for sample in member.history if sample["t"] >= since]
                        for server_id, member in self._members.items()},
        }

    # Stop, kill, restart

    def _select(self, servers: list[str] | None, server_type: str | None, all: bool) -> tuple[list[Member], bool]:
        """
        @return: the servers chosen, and whether they were named one by one.
        """
        if sum((servers is not None, server_type is not None, bool(all))) != 1:
            raise GamenetError('give one of "servers" (a list of ids), "type" or "all"', 400)
        if servers is not None:
            return [self._get(server_id) for server_id in dict.fromkeys(servers)], True
        if server_type is not None:
            chosen = [member for member in self._members.values() if member.server.type == server_type]
            if not chosen:
                raise GamenetError(unknown_type(server_type, self._members.values()), 400)
            return chosen, False
        return list(self._members.values()), False

    def _here(self, members: list[Member], named: bool, running: bool) -> list[Member]:
        """
        The servers of C{members} this master runs (and, if C{running}, whose
        process runs or waits to restart); a server named one by one that is
        not is a 409.
        """
        chosen = []
        for member in members:
            problem = None
            if not member.local:
                problem = f"server {member.server.id} runs on {member.server.host}, not under this master"
            elif member.server.id in self.changes.removing:
                problem = f"server {member.server.id} is being removed"
            elif running and self._state(member) == "down":
                problem = f"server {member.server.id} is not running"
            if problem is None:
                chosen.append(member)
            elif named:
                raise GamenetError(problem, 409)
        return chosen

    def stop(self, servers: list[str] | None = None, type: str | None = None, all: bool = False) -> list[str]:
        """
        Stop servers: C{SIGTERM}, so that each drains, and no restart.

        @return: the ids of the servers stopped.
        """
        members = self._here(*self._select(servers, type, all), running=True)
        for member in members:
            self._halt(member)
            self.supervisor.stop_processes([member.server.id])
        return self._ids(members, "stopping")

    def kill(self, servers: list[str] | None = None, type: str | None = None, all: bool = False) -> list[str]:
        """
        Kill servers: C{SIGKILL}, no drain, and no restart.

        @return: the ids of the servers killed.
        """
        members = self._here(*self._select(servers, type, all), running=True)
        for member in members:
            self._halt(member)
            self.supervisor.kill_process(member.server.id)
        return self._ids(members, "killing")

    def restart(self, servers: list[str] | None = None, type: str | None = None, all: bool = False) -> list[str]:
        """
        Restart servers: stop each (it drains), and start it once it has
        exited; a server that is not running is started at once.

        @return: the ids of the servers restarted.
        """
        members = self._here(*self._select(servers, type, all), running=False)
        for member in members:
            server_id = member.server.id
            if member.pid is None:
                self.supervisor.start_process(server_id)
                continue
            self._halt(member)
            member.restarting = True
            self.supervisor.stop_processes([server_id])
        return self._ids(members, "restarting")

    def _halt(self, member: Member) -> None:
        self.supervisor.hold(member.server.id)
        member.restarting = False
        member.stopping = member.pid is not None

    def _ids(self, members: list[Member], doing: str) -> list[str]:
        ids = [member.server.id for member in members]
        if ids:
            log.info("admin: {doing} {ids}", doing=doing, ids=", ".join(ids))
        return ids

    # Add, remove

    def add(self, section: str | None = None, spec: Any = None) -> Record:
        """
        Add a server at run time and start it: the section of that id in the
        cluster file as it is now, or a full spec
        (L{server_spec<gamenet.config.server_spec>}'s shape). Every logged-in
        server is told of it; those that log in later too.

        @raise GamenetError: 400 for a bad spec, a file that cannot be read,
            an unknown type or another machine's host; 404 for a section
            that is not in the file; 409 for an id that exists or a port
            another server has or that cannot be opened.
        """
        if (section is None) == (spec is None):
            raise GamenetError('give either "section" or "spec"', 400)
        cluster = self.master.cluster
        server = from_file(cluster, section) if section is not None else from_spec(cluster, spec)
        check(server, cluster, self._members, self.hosts, self.bindable)
        return self._records([self.changes.add(server)])[0]

    def remove(self, server_id: str) -> None:
        """
        Remove a server: stop it (it drains), then forget it and tell every
        server; one that is not running is forgotten at once.

        @raise GamenetError: 404, no such server; 409, another machine's
            server, or one being removed already.
        """
        member = self._get(server_id)
        self._here([member], True, running=False)
        if server_id in self.changes.removing:
            raise GamenetError(f"server {server_id} is being removed already", 409)
        log.info("admin: removing server {server_id}", server_id=server_id)
        self._halt(member)
        if member.pid is None:
            self.changes.forget(member)
            return
        self.changes.removing.add(server_id)
        self.supervisor.stop_processes([server_id])

    # Clients (see L{Clients})

    async def sessions(self, server_id: str, uid: str | None = None, limit: int = SESSIONS_LISTED) -> Record:
        """
        The sessions of one frontend (L{Clients.sessions}).
        """
        return await self.clients.sessions(server_id, uid, limit)

    async def kick(self, uid: str | None = None, server: str | None = None, session: int | None = None,
                   reason: str = ADMIN_KICK) -> int:
        """
        Kick a uid's sessions on every frontend, or one session of one frontend (L{Clients.kick}).
        """
        return await self.clients.kick(uid, server, session, reason)

    async def broadcast(self, route: str, msg: Any) -> int:
        """
        Push C{msg} on C{route} to every client of every frontend (L{Clients.broadcast}).
        """
        return await self.clients.broadcast(route, msg)

    # Block list (see L{Blocking})

    async def blocked(self) -> list[str]:
        """
        The blocked addresses and networks (L{Blocking.blocked}).
        """
        return await self.blocking.blocked()

    async def block(self, networks: list[str]) -> list[str]:
        """
        Block more addresses or networks on every frontend (L{Blocking.block}).
        """
        return await self.blocking.block(networks)

    async def unblock(self, networks: list[str]) -> list[str]:
        """
        Unblock addresses or networks (L{Blocking.unblock}).
        """
        return await self.blocking.unblock(networks)
