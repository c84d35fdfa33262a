"""
The C{area} backend of the benchmarks.
"""

from __future__ import annotations

import time
from typing import Any

from gamenet import GamenetError, Handler, handler, route_handler

PUSH_ROUTE = "onBench"


def echo(msg: Any, session: Any) -> Any:
    """
    C{area.echoHandler.echo}: answer the body as it came (the connector's echo, on a backend).
    """
    return msg


class BenchHandler(Handler):
    """
    C{area.benchHandler.*}.
    """

    def init(self) -> None:
        self.pushes = 0
        self.unreached = 0

    async def ready(self, msg: Any, session: Any) -> dict[str, Any]:
        """
        Answers once this backend reaches the session's frontend too (the
        sys calls of binding and of channel pushes go that way).
        """
        connected = await self.app.backend_sessions.is_connected(session.frontend_id, session.id)
        if not connected:
            raise GamenetError("the frontend does not know this session yet", 503)
        return {"server": self.app.server_id, "frontend": session.frontend_id}

    async def join(self, msg: dict[str, Any], session: Any) -> dict[str, int]:
        """
        Bind the session to C{msg["uid"]} and add it to each channel named in
        C{msg["rooms"]}; answers each room's member count.
        """
        uid = str(msg["uid"])
        if session.uid != uid:
            await session.bind(uid)
        counts = {}
        for name in msg["rooms"]:
            channel = self.app.channels.create_channel(name)
            channel.add(uid, session.frontend_id)
            counts[name] = channel.user_count
        return counts

    def members(self, msg: dict[str, Any], session: Any) -> dict[str, int]:
        """
        The member count of channel C{msg["room"]} (0 when there is none yet).
        """
        channel = self.app.channels.get_channel(msg["room"])
        return {"members": 0 if channel is None else channel.user_count}

    def push(self, msg: dict[str, Any], session: Any) -> dict[str, Any]:
        """
        Push C{{"room", "n", "sent"}} on C{onBench} to every member of channel
        C{msg["room"]}, C{sent} being C{msg["sent"]} when given (the sender's
        C{time.monotonic()}: one clock for every process of the machine), else
        this server's C{time.monotonic()} just before the push starts; answers
        at once (not when the push is delivered) with C{sent} and the member count.
        """
        name = msg["room"]
        channel = self.app.channels.get_channel(name)
        if channel is None:
            raise GamenetError(f"no room {name}", 404)
        sent = msg["sent"] if "sent" in msg else time.monotonic()
        self.pushes += 1
        channel.push_message(PUSH_ROUTE, {"room": name, "n": msg["n"], "sent": sent}).addCallback(self._pushed)
        return {"sent": sent, "members": channel.user_count}

    def _pushed(self, unreached: list[str]) -> None:
        self.unreached += len(unreached)

    def stats(self, msg: Any, session: Any) -> dict[str, Any]:
        """
        Pushes started and members they did not reach, and each channel's size.
        """
        channels = {name: self.app.channels.get_channel(name).user_count for name in self.app.channels.channels}
        return {"pushes": self.pushes, "unreached": self.unreached, "channels": channels}


echo_route = route_handler("area.echoHandler.echo", echo)
bench = handler(BenchHandler, "area")
