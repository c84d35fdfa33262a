"""
The connector: entering a chat room, as in Pomelo's chat demo, and an echo
route used by the benchmarks.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from twisted.logger import Logger

from gamenet import Handler, configure, handler, route_handler

log = Logger()


class EntryHandler(Handler):
    """
    C{connector.entryHandler.*}.
    """

    async def enter(self, msg: Any, session: Any) -> dict[str, Any]:
        """
        Join room C{rid} as C{username}: the uid is C{username*rid}; the same
        name twice in one room answers C{{"code": 500, "error": true}}.
        Answers C{{"users": [names in the room]}}.
        """
        username, rid = msg.get("username"), msg.get("rid")
        if not username or not rid:
            return {"code": 500, "error": True}
        uid = f"{username}*{rid}"
        session_service = self.app.get("sessionService")
        if session_service.get_by_uid(uid):
            return {"code": 500, "error": True}
        await session.bind(uid)
        session.set("rid", rid)
        await session.push("rid")
        session.on_close(partial(left, self.app))
        users = await self.app.rpc.chat.chatRemote.add(session, uid, self.app.get("serverId"), rid)
        return {"users": users}


def left(app: Any, session: Any, reason: str) -> None:
    """
    A user's session ended: take it out of its room. A session resumed on
    another connector ends there, so it is set again there (L{resumed}).
    """
    if session.uid is None:
        return
    d = app.rpc.chat.chatRemote.kick(session, session.uid, app.server_id, session.get("rid"))
    d.addErrback(lambda f: log.warn("{uid} left, but the chat server was not told: {error}",
                                    uid=session.uid, error=f.getErrorMessage()))


def resumed(app: Any) -> None:
    """
    A session resumed here from another connector (its room membership
    moved with it) leaves its room when it ends here.
    """
    app.on("resume_session", lambda session, frontend_id, session_id: session.on_close(partial(left, app)))


def echo(msg: Any, session: Any) -> Any:
    """
    Answer the body as it came.
    """
    return msg


entry = handler(EntryHandler, "connector")
resume = configure(resumed, "connector")
echo_route = route_handler("connector.echoHandler.echo", echo)
