"""
Servers added and removed at run time: read from the cluster file as it is
now or from a spec, checked against the fleet and this machine before
anything changes, then made part of the master's cluster (L{Changes}), or
taken out of it. Tested in C{tests/test_fleet.py}.
"""

from __future__ import annotations

import json
import socket
from typing import Any, Callable, Iterable, Mapping

import attrs
from twisted.logger import Logger

from ..cluster.master import child_command, child_environment, own_address
from ..config import ClusterConfig, ConfigError, ServerConfig, load, server_from_spec, server_spec, unshared
from ..errors import GamenetError
from .interfaces import IMaster, ISupervisor
from .members import Member, unknown_type

log = Logger()


def can_bind(host: str, port: int) -> str | None:
    """
    Whether a TCP port can be opened on C{host} now, as Twisted would open it.

    @return: C{None} when it can, else the reason it cannot.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as e:
        return e.strerror or str(e)
    return None


def server_ports(server: ServerConfig) -> dict[str, int]:
    """
    The ports a server opens, by the key that sets them (C{node_port}, ...).
    """
    return {f"{name}_port": port for name, port in server.ports.items() if port}


def from_file(cluster: ClusterConfig, section: str) -> ServerConfig:
    """
    The server of C{section} (C{server:ID} or C{ID}) in C{cluster}'s file as it is now.

    @raise GamenetError: 400, the file cannot be used; 404, no such section.
    """
    path = cluster.path
    server_id = section[len("server:"):] if section.startswith("server:") else section
    try:
        loaded = load(path)
    except ConfigError as e:
        raise GamenetError(f"{path} cannot be used now: {'; '.join(e.problems)}", 400) from None
    try:
        return loaded.server(server_id)
    except KeyError:
        raise GamenetError(f"no section [server:{server_id}] in {path}", 404) from None


def from_spec(cluster: ClusterConfig, spec: Any) -> ServerConfig:
    """
    The server a spec describes (L{server_spec<gamenet.config.server_spec>}'s shape).

    @raise GamenetError: 400, a bad spec.
    """
    try:
        return server_from_spec(spec, cluster)
    except ConfigError as e:
        raise GamenetError("; ".join(e.problems), 400) from None


def check(server: ServerConfig, cluster: ClusterConfig, members: Mapping[str, Member], hosts: set[str],
          bindable: Callable[[str, int], str | None]) -> None:
    """
    Check that C{server} can join the fleet of C{members}, of C{cluster}.

    @param hosts: the names of this machine.
    @param bindable: tells why a port cannot be opened on a host, or C{None}.
    @raise GamenetError: 400 for an unknown type or another machine's host;
        409 for an id that exists or a port another server has (unless both
        may share it, see L{unshared<gamenet.config.unshared>}) or that
        cannot be opened.
    """
    if server.id in members:
        raise GamenetError(f"server {server.id} already exists", 409)
    if not any(member.server.type == server.type for member in members.values()):
        raise GamenetError(unknown_type(server.type, members.values()), 400)
    if server.host not in hosts and not own_address(server.host):
        raise GamenetError(f"host {server.host} of server {server.id} is not this machine: "
                           "a master starts only servers of its own host", 400)
    taken = _ports_taken(cluster, members.values())
    for key, port in server_ports(server).items():
        other = taken.get((server.host, port))
        if other is not None:
            where, sharer = other
            refused = unshared(server, key, sharer)
            if refused is None:
                continue  # opened with SO_REUSEPORT beside the sharer's
            raise GamenetError(f"{key} {port} of server {server.id} is also {where}{refused}", 409)
        reason = bindable(server.host, port)
        if reason is not None:
            raise GamenetError(f"{key} {port} of server {server.id} cannot be opened on {server.host}: {reason}",
                               409)


def _ports_taken(
    cluster: ClusterConfig, members: Iterable[Member],
) -> dict[tuple[str, int], tuple[str, tuple[ServerConfig, str] | None]]:
    """
    Every port of the fleet by host and port: where it is set, and the
    server and key that have it (C{None} for the master's own).
    """
    taken: dict[tuple[str, int], tuple[str, tuple[ServerConfig, str] | None]] = {
        (member.server.host, port): (f"[server:{member.server.id}] {key}", (member.server, key))
        for member in members for key, port in server_ports(member.server).items()
    }
    if cluster.master_port:
        taken[cluster.master_host, cluster.master_port] = ("[cluster] master_port", None)
    if cluster.admin_port:
        taken[cluster.admin_host, cluster.admin_port] = ("[cluster] admin_port", None)
    return taken


class Changes:
    """
    The servers added and removed since the cluster file was read: the
    master's cluster, its supervisor and the fleet's members follow them,
    and every server is told of them, those that log in later too.

    @ivar removing: the ids of the servers being removed, whose process has
        not exited yet.
    """

    def __init__(self, master: IMaster, members: dict[str, Member], call: Callable[..., Any]) -> None:
        """
        @param members: the fleet's members, by server id.
        @param call: makes a control call, C{call(server_id, name, **kwargs)},
            logging its failure.
        """
        self.master = master
        self.supervisor: ISupervisor = master.supervisor
        self._members = members
        self._call = call
        self._added: dict[str, ServerConfig] = {}
        self._removed: set[str] = set()
        self.removing: set[str] = set()

    def greet(self, server: ServerConfig) -> None:
        """
        Tell a server that just logged in the servers added and removed.
        """
        added = [server_spec(other) for other in self._added.values() if other.id != server.id]
        if added:
            self._call(server.id, "add_servers", specs=added)
        if self._removed:
            self._call(server.id, "remove_servers", ids=sorted(self._removed))

    def add(self, server: ServerConfig) -> Member:
        """
        Add a server that passed L{check} and start it; tell every logged-in server.

        @return: its member.
        """
        master, supervisor = self.master, self.supervisor
        master.cluster = attrs.evolve(master.cluster, servers=(*master.cluster.servers, server))
        master.local.append(server)
        member = self._members[server.id] = Member(server, True)
        self._added[server.id] = server
        self._removed.discard(server.id)
        if not server.auto_restart:
            supervisor.no_restart.add(server.id)
        command = child_command(master.cluster, server, master.env) + ["--server-spec", json.dumps(server_spec(server))]
        supervisor.addProcess(server.id, command, env=child_environment())
        log.info("admin: added server {server_id} ({server_type})", server_id=server.id, server_type=server.type)
        for server_id in list(master.up):
            if server_id != server.id:
                self._call(server_id, "add_servers", specs=[server_spec(server)])
        return member

    def forget(self, member: Member) -> None:
        """
        Take a server whose process is not running out of the cluster, and
        tell every logged-in server.
        """
        server_id = member.server.id
        master, supervisor = self.master, self.supervisor
        del self._members[server_id]
        self.removing.discard(server_id)
        servers = tuple(server for server in master.cluster.servers if server.id != server_id)
        master.cluster = attrs.evolve(master.cluster, servers=servers)
        master.local[:] = [server for server in master.local if server.id != server_id]
        try:
            supervisor.removeProcess(server_id)
        except KeyError:
            pass
        supervisor.held.discard(server_id)
        supervisor.no_restart.discard(server_id)
        if self._added.pop(server_id, None) is None:
            self._removed.add(server_id)
        for other in list(master.up):
            if other != server_id:
                self._call(other, "remove_servers", ids=[server_id])
        log.info("admin: removed server {server_id}", server_id=server_id)
