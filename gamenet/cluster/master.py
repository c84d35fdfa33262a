"""
The master: starts this machine's servers as child processes, restarts the
ones that die, and tells every server which servers are up.

It is a supervisor, not a message path: client traffic never passes through it.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from typing import Any, Callable

from twisted.application.service import MultiService, Service
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.runner.procmon import ProcessMonitor
from twisted.spread import pb
from zope.interface import implementer

from ..config import ClusterConfig, ServerConfig
from ..connector.listener import ListenError, listen
from .node import SecretChecker, node_tls_options

log = Logger()

MASTER_ID = "master"
PARENT_ENVIRONMENT = "GAMENET_MASTER_PID"


def local_hosts() -> set[str]:
    """
    The names and addresses that mean this machine.
    """
    names = {"127.0.0.1", "localhost", "::1", "0.0.0.0", socket.gethostname(), socket.getfqdn()}
    try:
        names.update(info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None))
    except OSError:
        pass
    return names


def child_command(cluster: ClusterConfig, server: ServerConfig, env: str | None) -> list[str]:
    """
    How the master starts one server: C{twistd} in the foreground with the same
    plugin and C{--server}, so that a port that cannot be opened ends the
    child with a message (and the master restarts it with backoff). The child
    runs in a session of its own, so that a Ctrl-C in the master's terminal
    reaches only the master, which then stops the servers in order.
    """
    args = [sys.executable, "-c", "import os; os.setsid(); from twisted.scripts.twistd import run; run()",
            "--nodaemon", "--pidfile=", "gamenet", "--config", os.path.abspath(cluster.path), "--server", server.id]
    if env:
        args += ["--env", env]
    return args


_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\S+ ")


class _ChildLog(Logger):
    """
    Logs children's lines as C{[server-id] line}, without the child's own
    timestamp, and without the empty line procmon adds when a child exits.
    """

    def info(self, format: str | None = None, **kwargs: Any) -> None:
        line = kwargs.get("line")
        if isinstance(line, str):
            if not line.strip():
                return
            kwargs["line"] = _TIMESTAMP.sub("", line, count=1)
        super().info(format, **kwargs)


class Supervisor(ProcessMonitor):
    """
    A process monitor that knows which servers must not be restarted, and
    whose C{stopService} waits until its children have exited.
    """

    minRestartDelay = 1
    maxRestartDelay = 30
    killTime = 10
    log = _ChildLog()

    def __init__(self, reactor: Any, no_restart: set[str]) -> None:
        super().__init__(reactor)
        self.no_restart = no_restart
        self._exits: dict[str, list[Deferred[None]]] = {}
        self._stopping: set[str] = set()

    def _monitoredProcessExited(self, name: str, reason: Failure | None = None) -> None:
        if name not in self.protocols:
            return
        if name in self._stopping:
            self._stopping.discard(name)
            log.info("server {name} stopped", name=name)
        else:
            log.warn("server {name} died: {reason}", name=name,
                     reason=reason.getErrorMessage() if reason is not None else "")
        super()._monitoredProcessExited(name, reason)
        delayed = self.restart.get(name)
        if delayed is not None and delayed.active():
            if name in self.no_restart:
                self.restart.pop(name).cancel()
                log.warn("server {name} is not restarted (auto_restart = false)", name=name)
            else:
                log.info("restarting server {name} in {delay:g}s", name=name,
                         delay=max(0.0, delayed.getTime() - self._clock.seconds()))
        for d in self._exits.pop(name, []):
            d.callback(None)

    def stop_processes(self, names: list[str]) -> Deferred[Any]:
        """
        Stop some children; fires once they have exited.
        """
        waits = []
        for name in names:
            if name in self.protocols:
                d: Deferred[None] = Deferred()
                self._exits.setdefault(name, []).append(d)
                waits.append(d)
                self._stopping.add(name)
                self.stopProcess(name)
        return DeferredList(waits)

    async def stop_in_order(self, groups: list[list[str]]) -> None:
        """
        Stop restarting, then stop the children group by group, each group
        once the one before has exited.
        """
        Service.stopService(self)
        for delayed in self.restart.values():
            if delayed.active():
                delayed.cancel()
        for names in groups:
            await self.stop_processes(names)

    def stopService(self) -> Deferred[None]:  # type: ignore[override]
        return Deferred.fromCoroutine(self.stop_in_order([list(self._processes)]))


class _MemberAvatar(pb.Avatar):
    def __init__(self, master: MasterService, server_id: str, mind: Any) -> None:
        self.master = master
        self.server_id = server_id
        self.mind = mind

    def logout(self) -> None:
        self.master._left(self)


@implementer(IRealm)
class _MembershipRealm:
    def __init__(self, master: MasterService) -> None:
        self.master = master

    def requestAvatar(self, avatar_id: str, mind: Any, *interfaces: Any) -> tuple[Any, Any, Callable[[], None]]:
        if pb.IPerspective not in interfaces:
            raise NotImplementedError("only PB perspectives")
        avatar = _MemberAvatar(self.master, avatar_id, mind)
        self.master._joined(avatar)
        return pb.IPerspective, avatar, avatar.logout


class MasterService(MultiService):
    """
    Supervises this machine's servers and keeps the cluster's membership.

    @ivar up: the ids of servers logged in to the master.
    """

    def __init__(self, cluster: ClusterConfig, env: str | None = None, reactor: Any = None,
                 hosts: set[str] | None = None) -> None:
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor  # type: ignore[no-redef]
        self.reactor = reactor
        self.cluster = cluster
        self.up: dict[str, _MemberAvatar] = {}
        hosts = local_hosts() if hosts is None else hosts
        self.env = env
        self.local = [server for server in cluster.servers if server.host in hosts]
        self.membership_here = bool(cluster.master_port) and cluster.master_host in hosts
        no_restart = {server.id for server in self.local if not server.auto_restart}
        self.supervisor = Supervisor(reactor, no_restart)
        self.supervisor.setServiceParent(self)
        self.port: Any = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        if not self.membership_here:
            return
        portal = Portal(_MembershipRealm(self), [SecretChecker(self.cluster.secret, self._known)])
        factory = pb.PBServerFactory(portal)
        factory.noisy = False
        cluster = self.cluster
        try:
            self.port = listen(self.reactor, cluster.master_port, factory, cluster.master_host, "the master cannot listen",
                               node_tls_options(cluster) if cluster.node_tls_cert else None)
        except ListenError as e:
            raise SystemExit(f"gamenet: {e}") from None

    def startService(self) -> None:
        # The children are told this process's id now, after twistd may have
        # forked into the background, so that they can tell when it is gone.
        environment = {**os.environ, PARENT_ENVIRONMENT: str(os.getpid())}
        for server in self.local:
            self.supervisor.addProcess(server.id, child_command(self.cluster, server, self.env), env=environment)
        log.info("master of cluster {name}: starting {ids}", name=self.cluster.name,
                 ids=", ".join(server.id for server in self.local) or "no local server")
        super().startService()

    async def _stop(self) -> None:
        if self.port is not None:
            await self.port.stopListening()
        # Frontends first, so that clients are kicked while backends still answer.
        await self.supervisor.stop_in_order([
            [server.id for server in self.local if server.frontend],
            [server.id for server in self.local if not server.frontend],
        ])
        Service.stopService(self)

    def stopService(self) -> Deferred[None]:  # type: ignore[override]
        return Deferred.fromCoroutine(self._stop())

    def _known(self, server_id: str) -> bool:
        return any(server.id == server_id for server in self.cluster.servers)

    def _joined(self, avatar: _MemberAvatar) -> None:
        self.up[avatar.server_id] = avatar
        log.info("server {server_id} is up", server_id=avatar.server_id)
        self._announce()

    def _left(self, avatar: _MemberAvatar) -> None:
        if self.up.get(avatar.server_id) is avatar:
            del self.up[avatar.server_id]
            log.info("server {server_id} is down", server_id=avatar.server_id)
            self._announce()

    def _announce(self) -> None:
        ids = sorted(self.up)
        for avatar in list(self.up.values()):
            avatar.mind.callRemote("membership", ids).addErrback(lambda f: None)
