"""
The master: starts this machine's servers as child processes, restarts the
ones that die, and tells every server which servers are up.

It is a supervisor, not a message path: client traffic never passes through
it. A master that dies leaves its servers serving; the next one adopts them
(L{gamenet.cluster.adopt}). A master stopped cleanly stops its servers.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import sys
from typing import Any, Callable, Iterable

from twisted.application.service import MultiService, Service
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred, DeferredList, TimeoutError, fail
from twisted.internet.error import ProcessExitedAlready
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.runner.procmon import ProcessMonitor
from twisted.spread import pb
from zope.interface import implementer

from ..config import ClusterConfig, ServerConfig
from ..connector.listener import ListenError, listen
from ..errors import GamenetError, Timeout, Unavailable
from ..protocol import serializer
from .adopt import Adopted, adoptable, pid_path, remove_pid, runs_server, write_pid
from .node import CallFailed, SecretChecker, node_tls_options, remote_error

log = Logger()

MASTER_ID = "master"
PARENT_ENVIRONMENT = "GAMENET_MASTER_PID"


def local_hosts(candidates: Iterable[str] = ()) -> set[str]:
    """
    The names and addresses that mean this machine: loopback, its host name
    and fully qualified name, the addresses the host name resolves to, and
    those of C{candidates} that are IP addresses of this machine's
    interfaces (see L{own_address}).
    """
    names = {"127.0.0.1", "localhost", "::1", "0.0.0.0", socket.gethostname(), socket.getfqdn()}
    try:
        names.update(info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None))
    except OSError:
        pass
    names.update(host for host in candidates if own_address(host))
    return names


def own_address(host: str) -> bool:
    """
    Whether C{host} is an IP address of one of this machine's interfaces: one
    that a socket can be bound to. A name is not looked up.
    """
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        return False
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, 0))
        except OSError:
            return False
    return True


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


def child_environment() -> dict[str, str]:
    """
    The environment of a child: the master's, and the master's process id,
    so that a child can tell when the master is gone (and then write its
    output to a file, see L{gamenet.cluster.adopt.detach_output}).
    """
    return {**os.environ, PARENT_ENVIRONMENT: str(os.getpid())}


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

    With a cluster, it keeps a pid file of each child it starts (see
    L{gamenet.cluster.adopt}), and a server still running from an earlier
    master is adopted rather than started again: it is signalled by pid and
    polled, and started as a child once it is gone.

    @ivar held: children stopped on purpose (by the admin service): not
        restarted until L{start_process}.
    @ivar process_listeners: called with C{(name, pid)} when a child starts
        and C{(name, None)} when it exits.
    """

    minRestartDelay = 1
    maxRestartDelay = 30
    killTime = 10
    log = _ChildLog()

    def __init__(self, reactor: Any, no_restart: set[str], cluster: ClusterConfig | None = None) -> None:
        super().__init__(reactor)
        self.no_restart = no_restart
        self.cluster = cluster
        self._exits: dict[str, list[Deferred[None]]] = {}
        self._stopping: set[str] = set()
        self.held: set[str] = set()
        self.process_listeners: list[Callable[[str, int | None], None]] = []

    def _monitoredProcessExited(self, name: str, reason: Failure | None = None) -> None:
        if name not in self.protocols:
            return
        if name in self._stopping:
            self._stopping.discard(name)
            log.info("server {name} stopped", name=name)
        else:
            log.warn("server {name} died: {reason}", name=name,
                     reason=reason.getErrorMessage() if reason is not None else "")
        if self.cluster is not None:
            remove_pid(pid_path(self.cluster, name), None)
        super()._monitoredProcessExited(name, reason)
        delayed = self.restart.get(name)
        if delayed is not None and delayed.active():
            if name in self.held:
                self.restart.pop(name).cancel()
            elif name in self.no_restart:
                self.restart.pop(name).cancel()
                log.warn("server {name} is not restarted (auto_restart = false)", name=name)
            else:
                log.info("restarting server {name} in {delay:g}s", name=name,
                         delay=max(0.0, delayed.getTime() - self._clock.seconds()))
        for d in self._exits.pop(name, []):
            d.callback(None)
        self._tell(name, None)

    def startProcess(self, name: str) -> None:
        if name in self.protocols:
            return
        cluster = self.cluster
        pid = adoptable(cluster, name) if cluster is not None else None
        if cluster is not None and pid is not None:
            log.info("server {name} still runs from an earlier master (pid {pid}): adopted", name=name, pid=pid)
            # It has run for a while under the earlier master: when it dies it
            # is restarted at once, not after a quick exit's delay.
            self.timeStarted[name] = self._clock.seconds() - self.threshold
            self.protocols[name] = Adopted(  # type: ignore[assignment]
                name, pid, lambda pid: runs_server(pid, cluster.path, name), self._monitoredProcessExited,
                self._clock)
        else:
            super().startProcess(name)
            pid = self.pid(name)
            if cluster is not None and pid is not None:
                write_pid(pid_path(cluster, name), pid)
        if name in self.protocols:
            self._tell(name, self.pid(name))

    def _tell(self, name: str, pid: int | None) -> None:
        for listener in list(self.process_listeners):
            try:
                listener(name, pid)
            except Exception:
                log.failure("process listener failed")

    def pid(self, name: str) -> int | None:
        """
        The process id of a running child (or adopted server), or C{None}.
        """
        return getattr(getattr(self.protocols.get(name), "transport", None), "pid", None)

    def restart_pending(self, name: str) -> bool:
        """
        Whether a child that exited is to be restarted after its delay.
        """
        delayed = self.restart.get(name)
        return delayed is not None and delayed.active()

    def hold(self, name: str) -> None:
        """
        Restart a child no more when it exits (until L{start_process}), and
        cancel its pending restart.
        """
        self.held.add(name)
        delayed = self.restart.pop(name, None)
        if delayed is not None and delayed.active():
            delayed.cancel()

    def start_process(self, name: str) -> None:
        """
        Start a child now: one that was held, or one waiting for its restart delay.
        """
        self.held.discard(name)
        delayed = self.restart.pop(name, None)
        if delayed is not None and delayed.active():
            delayed.cancel()
        self.startProcess(name)

    def kill_process(self, name: str) -> None:
        """
        Kill a running child at once (C{SIGKILL}, no drain).
        """
        transport = getattr(self.protocols.get(name), "transport", None)
        if transport is not None:
            self._stopping.add(name)
            try:
                transport.signalProcess("KILL")
            except ProcessExitedAlready:
                pass

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
    Supervises this machine's servers, keeps the cluster's membership and
    makes control calls on its servers.

    @ivar up: the servers logged in to the master, by id.
    @ivar member_listeners: called with C{(server_id, logged_in)} when a
        server logs in to the master or its link goes, after L{up} changed.
    """

    def __init__(self, cluster: ClusterConfig, env: str | None = None, reactor: Any = None,
                 hosts: set[str] | None = None) -> None:
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor  # type: ignore[no-redef]
        self.reactor = reactor
        self.cluster = cluster
        self.up: dict[str, _MemberAvatar] = {}
        self.member_listeners: list[Callable[[str, bool], None]] = []
        if hosts is None:
            hosts = local_hosts([*(server.host for server in cluster.servers), cluster.master_host])
        self.env = env
        self.local = [server for server in cluster.servers if server.host in hosts]
        self.membership_here = bool(cluster.master_port) and cluster.master_host in hosts
        no_restart = {server.id for server in self.local if not server.auto_restart}
        # Pid files (and adoption) need the cluster file's run directory.
        self.supervisor = Supervisor(reactor, no_restart, cluster if os.path.isfile(cluster.path) else None)
        # A stopping server drains for up to drain_timeout before it exits.
        self.supervisor.killTime = cluster.drain_timeout + 10
        self.supervisor.setServiceParent(self)
        self.port: Any = None
        if cluster.admin_port:
            # Imported here: gamenet.admin builds on this module.
            from ..admin import AdminService

            AdminService(self).setServiceParent(self)

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        if not self.membership_here:
            return
        portal = Portal(_MembershipRealm(self), [SecretChecker(self.cluster.secret, self._known)])
        factory = pb.PBServerFactory(portal)
        factory.noisy = False
        cluster = self.cluster
        try:
            self.port = listen(self.reactor, cluster.master_port, factory, cluster.master_host,
                               f"{cluster.path} [cluster] master_port: the master cannot listen",
                               node_tls_options(cluster) if cluster.node_tls_cert else None)
        except (ListenError, ValueError) as e:
            raise SystemExit(f"gamenet: {e}") from None

    def startService(self) -> None:
        # The children are told this process's id now, after twistd may have
        # forked into the background, so that they can tell when it is gone.
        environment = child_environment()
        for server in self.local:
            self.supervisor.addProcess(server.id, child_command(self.cluster, server, self.env), env=environment)
        log.info("master of cluster {name}: starting {ids}", name=self.cluster.name,
                 ids=", ".join(server.id for server in self.local) or "no local server")
        super().startService()

    async def _stop(self) -> None:
        if "admin" in self.namedServices:
            # The admin API first: nothing acts on the servers while they stop.
            await self.getServiceNamed("admin").stopService()
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
        self._tell(avatar.server_id, True)

    def _left(self, avatar: _MemberAvatar) -> None:
        if self.up.get(avatar.server_id) is avatar:
            del self.up[avatar.server_id]
            log.info("server {server_id} is down", server_id=avatar.server_id)
            self._announce()
            self._tell(avatar.server_id, False)

    def _tell(self, server_id: str, logged_in: bool) -> None:
        for listener in list(self.member_listeners):
            try:
                listener(server_id, logged_in)
            except Exception:
                log.failure("member listener failed")

    def control(self, server_id: str, name: str, **kwargs: Any) -> Deferred[Any]:
        """
        Make a control call on a server logged in to the master (see
        L{gamenet.cluster.control.ControlRemote} for the calls).

        @return: a Deferred firing with the call's result; it fails with
            L{GamenetError} (code 404) when the server is not logged in,
            L{Timeout} when it does not answer within C{rpc_timeout},
            L{Unavailable} when its link goes meanwhile, or with the
            L{GamenetError} the call raised on the server (code 400 for an
            unknown call or bad arguments).
        """
        avatar = self.up.get(server_id)
        if avatar is None:
            return fail(GamenetError(f"server {server_id} is not logged in to the master", 404))
        try:
            args = serializer.dumps(kwargs)
        except (TypeError, ValueError) as e:
            return fail(GamenetError(f"control call {name}: arguments are not JSON-able: {e}", 400))
        timeout = self.cluster.rpc_timeout
        d = avatar.mind.callRemote("control", name, args)
        d.addTimeout(timeout, self.reactor)
        return d.addCallbacks(serializer.loads, self._control_failed,
                              errbackArgs=(server_id, name, timeout))

    def _control_failed(self, failure: Failure, server_id: str, name: str, timeout: float) -> Any:
        # PB may fail a call with a Failure whose value is another Failure.
        while isinstance(failure.value, Failure):
            failure = failure.value
        if failure.check(TimeoutError):
            raise Timeout(f"control call {name} on {server_id} timed out after {timeout:g}s")
        if failure.check(CallFailed):
            raise remote_error(str(failure.value).encode("utf-8"), server_id)
        if failure.check(pb.PBConnectionLost, pb.DeadReferenceError):
            raise Unavailable(f"server {server_id} went away during control call {name}")
        return failure

    def _announce(self) -> None:
        ids = sorted(self.up)
        for avatar in list(self.up.values()):
            avatar.mind.callRemote("membership", ids).addErrback(lambda f: None)
