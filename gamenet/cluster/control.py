"""
The master's calls on a server: status, membership changes, kicks, the block
list and broadcasts, over the server's link to the master.

The master sends C{control(name, args)} with JSON bytes for the keyword
arguments and gets JSON bytes back (see L{ControlRemote.call}); the admin
service (L{gamenet.admin}) builds on L{gamenet.cluster.master.MasterService.control}.
"""

from __future__ import annotations

import inspect
import os
import resource
import time
from typing import TYPE_CHECKING, Any, Callable

from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger

from .._settle import settle
from ..config import ConfigError, server_from_spec
from ..errors import GamenetError
from ..protocol import serializer

if TYPE_CHECKING:
    from ..app import Application

log = Logger()

ADMIN_KICK = "kicked by admin"

SESSIONS_LISTED = 100
"""How many sessions the C{sessions} call lists when not told (the first, by id)."""


def process_usage() -> tuple[float, int]:
    """
    This process's CPU time (user + system, seconds) and resident memory
    (bytes): from C{/proc/self} where there is one, else from
    L{resource.getrusage} (whose C{ru_maxrss} is the peak, not the current size).
    """
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime
    try:
        with open("/proc/self/statm", "rb") as f:
            rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        rss = usage.ru_maxrss * 1024
    return cpu, rss


class ControlRemote:
    """
    The control calls of one server, by name: C{status}, C{add_servers},
    C{remove_servers}, C{kick}, C{sessions}, C{set_blocked}, C{broadcast}.

    @ivar started: when the server started (unix time).
    """

    def __init__(self, app: Application) -> None:
        self.app = app
        self.started = time.time()
        self._calls: dict[str, Callable[..., Any]] = {
            "status": self.status,
            "add_servers": self.add_servers,
            "remove_servers": self.remove_servers,
            "kick": self.kick,
            "sessions": self.sessions,
            "set_blocked": self.set_blocked,
            "broadcast": self.broadcast,
        }

    def call(self, name: str, args: bytes) -> Deferred[bytes]:
        """
        Run one control call.

        @param args: the keyword arguments as a JSON object.
        @return: a Deferred firing with the result as JSON; it fails with
            L{GamenetError} (code 400) for an unknown call, arguments that
            are not a JSON object or do not fit the call, or bad values.
        """
        return Deferred.fromCoroutine(self._call(name, args))

    async def _call(self, name: str, args: bytes) -> bytes:
        function = self._calls.get(name)
        if function is None:
            raise GamenetError(f"no control call {name!r} (calls: {', '.join(sorted(self._calls))})", 400)
        try:
            kwargs = serializer.loads(args)
        except ValueError:
            raise GamenetError(f"control call {name}: arguments are not JSON", 400) from None
        if not isinstance(kwargs, dict):
            raise GamenetError(f"control call {name}: arguments are not a JSON object", 400)
        try:
            inspect.signature(function).bind(**kwargs)
        except TypeError as e:
            raise GamenetError(f"control call {name}: {e}", 400) from None
        return serializer.dumps(await settle(function(**kwargs)))

    def status(self) -> dict[str, Any]:
        """
        What the master shows of this server (see doc/cluster.md).
        """
        app = self.app
        server = app.server
        node = app.node
        sessions = app.sessions
        cpu, rss = process_usage()
        return {
            "id": server.id,
            "type": server.type,
            "pid": os.getpid(),
            "started": self.started,
            "state": "draining" if node.draining else "up",
            "frontend": server.frontend,
            "clients": len(app.frontend.connections) if app.frontend is not None else 0,
            "sessions": sessions.bound_count if sessions is not None else 0,
            "links": {peer_id: node.link_available(peer_id) for peer_id in sorted(node.links)},
            "cpu_seconds": cpu,
            "rss": rss,
            "host": server.host,
            "ports": server.ports,
            "metrics": app.metrics.summary(),
        }

    def add_servers(self, specs: list[dict[str, Any]]) -> None:
        """
        Add servers (or update them), from their specs.

        @raise GamenetError: a spec that does not describe a server (code 400).
        """
        if not isinstance(specs, list):
            raise GamenetError("add_servers: specs is not a list", 400)
        try:
            servers = [server_from_spec(spec, self.app.cluster) for spec in specs]
        except ConfigError as e:
            raise GamenetError(f"add_servers: {'; '.join(e.problems)}", 400) from None
        self.app.add_servers([server for server in servers if server.id != self.app.server_id])

    def remove_servers(self, ids: list[str]) -> None:
        """
        Remove servers by id (this server stays).
        """
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise GamenetError("remove_servers: ids is not a list of server ids", 400)
        self.app.remove_servers([i for i in ids if i != self.app.server_id])

    async def kick(self, uid: str | None = None, session: int | None = None,
                   reason: str = ADMIN_KICK) -> dict[str, int]:
        """
        Kick the sessions of a uid, or one session by id; a backend kicks none.

        @return: C{{"kicked": n}}, once they are closed.
        """
        sessions = self.app.sessions
        if (uid is None) == (session is None):
            raise GamenetError("kick: give either uid or session", 400)
        if not isinstance(reason, str) or not reason:
            raise GamenetError("kick: reason is not a non-empty string", 400)
        if sessions is None:
            return {"kicked": 0}
        if uid is not None:
            targets = sessions.get_by_uid(str(uid))
        else:
            if not isinstance(session, int) or isinstance(session, bool):
                raise GamenetError("kick: session is not a session id", 400)
            found = sessions.get(session)
            targets = [] if found is None else [found]
        if targets:
            log.info("{server_id}: kicking {count} session(s) for the master: {reason}",
                     server_id=self.app.server_id, count=len(targets), reason=reason)
        await DeferredList([target.kick(reason) for target in targets])
        return {"kicked": len(targets)}

    def sessions(self, uid: str | None = None, limit: int = SESSIONS_LISTED) -> dict[str, Any]:
        """
        This frontend's sessions (of C{uid} only, when given), the first
        C{limit} by id, so that an operator can kick one; a backend has none.

        @return: C{{"total": n, "sessions": [{"id", "uid", "address",
            "transport", "seconds"}, ...]}}: C{uid} is C{None} for a session
            not bound, C{seconds} how long ago its client connected.
        """
        if uid is not None and not isinstance(uid, str):
            raise GamenetError("sessions: uid is not a string", 400)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise GamenetError("sessions: limit is not a whole number above 0", 400)
        sessions = self.app.sessions
        if sessions is None:
            return {"total": 0, "sessions": []}
        chosen = sorted(sessions if uid is None else sessions.get_by_uid(uid), key=lambda session: session.id)
        now = self.app.reactor.seconds()
        return {"total": len(chosen), "sessions": [
            {"id": session.id, "uid": session.uid, "address": session.remote_address[0],
             "transport": session.transport, "seconds": round(max(0.0, now - session.connected_at), 1)}
            for session in chosen[:limit]]}

    def set_blocked(self, networks: list[str]) -> None:
        """
        Replace this frontend's block list; a backend ignores it.

        @raise GamenetError: an entry that is not an address or a network (code 400).
        """
        if not isinstance(networks, list) or not all(isinstance(n, str) for n in networks):
            raise GamenetError("set_blocked: networks is not a list of strings", 400)
        frontend = self.app.frontend
        if frontend is None:
            return
        try:
            frontend.set_blocked(networks)
        except ValueError as e:
            raise GamenetError(f"set_blocked: {e}", 400) from None

    def broadcast(self, route: str, msg: Any) -> dict[str, int]:
        """
        Push C{msg} on C{route} to every client of this frontend.

        @return: C{{"sessions": n}}, the sessions it was written to.
        """
        if not isinstance(route, str) or not route:
            raise GamenetError("broadcast: route is not a non-empty string", 400)
        sessions = self.app.sessions
        return {"sessions": sessions.broadcast(route, msg) if sessions is not None else 0}
