"""
The C{area} backends: handlers reached through the connectors, and a remote
reached with C{app.rpc}.
"""

from __future__ import annotations

from typing import Any

from gamenet import GamenetError, Handler, Remote, handler, remote

from . import pinned_router


class AreaHandler(Handler):
    """
    C{area.areaHandler.*}; every answer names the server that gave it.
    """

    def init(self) -> None:
        self.app.route("area", pinned_router)

    def _answer(self, session: Any, **values: Any) -> dict[str, Any]:
        return {"server": self.app.server_id, "frontend": session.frontend_id, "sid": session.id, **values}

    def echo(self, msg: Any, session: Any) -> dict[str, Any]:
        """
        The message back.
        """
        return self._answer(session, msg=msg)

    async def ready(self, msg: Any, session: Any) -> dict[str, Any]:
        """
        Answers only when this server's links to the session's frontend and to
        every other C{area} server work (for tests waiting for a cluster).
        """
        connected = await self.app.backend_sessions.is_connected(session.frontend_id, session.id)
        peers = {}
        for server in self.app.servers_by_type("area"):
            result = await self.app.rpc.area.areaRemote.whoami.to(server.id)(self.app.server_id)
            peers[server.id] = result["server"]
        return self._answer(session, connected=connected, peers=peers)

    async def login(self, msg: Any, session: Any) -> dict[str, Any]:
        """
        Bind the session to C{msg["uid"]}, then set and push the setting
        C{msg["key"]} = C{msg["value"]}.
        """
        await session.bind(str(msg["uid"]))
        session.set(msg["key"], msg["value"])
        await session.push(msg["key"])
        return self._answer(session, uid=session.uid)

    def whoami(self, msg: Any, session: Any) -> dict[str, Any]:
        """
        The uid and the settings named in C{msg["keys"]} as the session copy
        carried with this request has them.
        """
        keys = msg.get("keys", []) if isinstance(msg, dict) else []
        return self._answer(session, uid=session.uid, settings={key: session.get(key) for key in keys})

    async def rpc(self, msg: Any, session: Any) -> dict[str, Any]:
        """
        Call C{areaRemote.whoami} on server C{msg["to"]} by id, on the
        server the route function picks for C{msg["key"]}, and on every
        C{area} server.
        """
        method = self.app.rpc.area.areaRemote.whoami
        by_id = await method.to(msg["to"])(self.app.server_id)
        by_param = await method(msg["key"], self.app.server_id)
        everyone = await method.broadcast(self.app.server_id)
        return self._answer(
            session, by_id=by_id, by_param=by_param,
            broadcast={server: value if isinstance(value, dict) else repr(value) for server, value in everyone.items()},
        )

    async def rpcFail(self, msg: Any, session: Any) -> dict[str, Any]:
        """
        Call C{areaRemote.fail} on server C{msg["to"]}; its error becomes this
        request's error response.
        """
        await self.app.rpc.area.areaRemote.fail.to(msg["to"])(msg["code"])
        return self._answer(session)

    async def kick(self, msg: Any, session: Any) -> dict[str, Any]:
        """
        Kick every session of C{msg["uid"]} on frontend C{msg["frontend"]}
        with C{msg["reason"]}; answers how many sessions of the uid are left there.
        """
        sessions = self.app.backend_sessions
        await sessions.kick_by_uid(msg["frontend"], msg["uid"], msg["reason"])
        left = await sessions.get_by_uid(msg["frontend"], msg["uid"])
        return self._answer(session, kicked=msg["uid"], left=len(left))


class AreaRemote(Remote):
    """
    C{area.areaRemote.*}, called with C{app.rpc}.
    """

    def whoami(self, caller: str) -> dict[str, Any]:
        """
        Which server ran the call, for which caller.
        """
        return {"server": self.app.server_id, "caller": caller}

    def fail(self, code: int) -> None:
        """
        Fail with C{code}.
        """
        raise GamenetError(f"{self.app.server_id} failed on purpose", int(code))


area_handler = handler(AreaHandler, "area")
area_remote = remote(AreaRemote, "area")
