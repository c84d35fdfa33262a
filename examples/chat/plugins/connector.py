"""
The connector's handlers: entering the chat, and an echo route for benchmarks.
"""

from __future__ import annotations

from typing import Any

from gamenet import Handler, handler, route_handler


class EntryHandler(Handler):
    """
    C{connector.entryHandler.*}.
    """

    async def enter(self, msg: Any, session: Any) -> dict[str, Any]:
        """
        Bind the session to C{username*rid}; a second login of the same uid is
        refused with C{{"code": 500, "error": true}}.
        """
        username, rid = msg.get("username"), msg.get("rid")
        if not username or not rid:
            return {"code": 500, "error": True}
        uid = f"{username}*{rid}"
        if self.app.sessions.get_by_uid(uid):
            return {"code": 500, "error": True}
        await session.bind(uid)
        session.set("rid", rid)
        await session.push("rid")
        return {"code": 200, "uid": uid}


def echo(msg: Any, session: Any) -> Any:
    """
    Answer the body as it came.
    """
    return msg


entry = handler(EntryHandler, "connector")
echo_route = route_handler("connector.echoHandler.echo", echo)
