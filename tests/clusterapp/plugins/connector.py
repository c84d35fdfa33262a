"""
The connectors' own handlers: they read and change the frontend session,
the one that is the truth.
"""

from __future__ import annotations

from typing import Any

from gamenet import Handler, handler

from . import pinned_router


class SessionHandler(Handler):
    """
    C{connector.sessionHandler.*}.
    """

    def init(self) -> None:
        self.app.route("area", pinned_router)

    def info(self, msg: Any, session: Any) -> dict[str, Any]:
        """
        The frontend session as it is: server, session id, uid and the
        settings named in C{keys}.
        """
        keys = msg.get("keys", []) if isinstance(msg, dict) else []
        return {
            "server": self.app.server_id,
            "sid": session.id,
            "uid": session.uid,
            "settings": {key: session.get(key) for key in keys},
        }

    async def pin(self, msg: Any, session: Any) -> dict[str, Any]:
        """
        Send this session's C{area} requests to server C{msg["server"]}
        (or to the default choice again when it is empty).
        """
        server = msg.get("server") if isinstance(msg, dict) else None
        if server:
            session.set("pin", server)
        else:
            session.delete("pin")
        await session.push("pin")
        return {"server": self.app.server_id, "sid": session.id, "pin": session.get("pin")}

    async def bind(self, msg: Any, session: Any) -> dict[str, Any]:
        """
        Bind this session to C{msg["uid"]} here, on the frontend.
        """
        await session.bind(str(msg["uid"]))
        return {"server": self.app.server_id, "sid": session.id, "uid": session.uid}


session_handler = handler(SessionHandler, "connector")
