"""
The admin operations on the clients of the frontends: list a frontend's
sessions, kick a uid or a session, push a message to every client. Tested
in C{tests/test_fleet.py}.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from twisted.internet.defer import DeferredList
from twisted.python.failure import Failure

from ..cluster.control import ADMIN_KICK, SESSIONS_LISTED
from ..errors import GamenetError
from . import stats
from .interfaces import IMaster
from .members import Member, Record


class Clients:
    """
    Control calls on the frontends that are up, for the fleet.
    """

    def __init__(self, master: IMaster, members: Mapping[str, Member],
                 call_failed: Callable[[Failure, str, str], None]) -> None:
        """
        @param members: the fleet's members, by server id.
        @param call_failed: logs a control call that failed, as
            C{call_failed(failure, server_id, name)}.
        """
        self.master = master
        self._members = members
        self._call_failed = call_failed

    def frontends_up(self) -> list[str]:
        """
        The ids of the frontends logged in to the master.
        """
        return [server_id for server_id, member in self._members.items()
                if member.server.frontend and server_id in self.master.up]

    def _frontend_up(self, server_id: str) -> None:
        """
        @raise GamenetError: 404, no such server; 400, a backend; 409, not up.
        """
        member = self._members.get(server_id)
        if member is None:
            raise GamenetError(f"no server {server_id} (servers: {', '.join(self._members) or 'none'})", 404)
        if not member.server.frontend:
            raise GamenetError(f"server {server_id} is not a frontend: it has no client sessions", 400)
        if server_id not in self.master.up:
            raise GamenetError(f"server {server_id} is not up", 409)

    async def _on_frontends(self, name: str, key: str, **kwargs: Any) -> int:
        """
        Make one control call on every logged-in frontend and add up C{key}
        of their answers; a frontend that fails is logged and counts 0.
        """
        ids = self.frontends_up()
        results = await DeferredList([self.master.control(server_id, name, **kwargs) for server_id in ids],
                                     consumeErrors=True)
        total = 0
        for server_id, (ok, result) in zip(ids, results):
            if ok:
                total += int(stats.mapping(result).get(key, 0))
            else:
                self._call_failed(result, server_id, name)
        return total

    async def sessions(self, server_id: str, uid: str | None = None, limit: int = SESSIONS_LISTED) -> Record:
        """
        The sessions of one frontend (of C{uid} only, when given), the first
        C{limit} by id.

        @return: C{{"server", "total", "sessions": [{"id", "uid", "address",
            "transport", "seconds"}, ...]}}.
        @raise GamenetError: 404, no such server; 400, a backend; 409, not up.
        """
        self._frontend_up(server_id)
        kwargs: dict[str, Any] = {"limit": limit} if uid is None else {"uid": uid, "limit": limit}
        result = stats.mapping(await self.master.control(server_id, "sessions", **kwargs))
        sessions = result.get("sessions")
        return {"server": server_id, "total": int(stats.number(result, "total")),
                "sessions": sessions if isinstance(sessions, list) else []}

    async def kick(self, uid: str | None = None, server: str | None = None, session: int | None = None,
                   reason: str = ADMIN_KICK) -> int:
        """
        Kick a uid's sessions on every frontend, or one session of one frontend.

        @return: how many sessions were kicked (of a uid, 0 when it is online nowhere).
        @raise GamenetError: 400, not one target, or a backend; 404, no such
            server, or no such session on it; 409, the server is not up.
        """
        if (uid is None) == (server is None or session is None):
            raise GamenetError('give either "uid", or "server" and "session"', 400)
        if uid is not None:
            return await self._on_frontends("kick", "kicked", uid=uid, reason=reason)
        assert server is not None
        self._frontend_up(server)
        result = await self.master.control(server, "kick", session=session, reason=reason)
        kicked = int(stats.mapping(result).get("kicked", 0))
        if not kicked:
            raise GamenetError(f"no session {session} on {server}", 404)
        return kicked

    async def broadcast(self, route: str, msg: Any) -> int:
        """
        Push C{msg} on C{route} to every client of every frontend.

        @return: how many sessions it was written to.
        """
        return await self._on_frontends("broadcast", "sessions", route=route, msg=msg)
