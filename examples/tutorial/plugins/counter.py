"""
A tiny counter game on the connector: log in, count up, get pushed the total.
"""

from __future__ import annotations

from typing import Any

from zope.interface import implementer

from gamenet import BadRequest, Handler, IFilter, Refused, handler


@implementer(IFilter)
class LoginRequired:
    """
    Refuses every counter route but C{login} until the session has a uid.
    """

    def before(self, request: Any) -> None:
        if request.session.uid is None and request.route != "connector.counterHandler.login":
            raise Refused("log in first")


class CounterHandler(Handler):
    """
    C{connector.counterHandler.*}: one instance per server, shared by every client.
    """

    def init(self) -> None:
        self.totals: dict[str, int] = {}
        self.app.before(LoginRequired(), "connector.counterHandler.*")

    async def login(self, msg: Any, session: Any) -> dict[str, Any]:
        """
        Request C{{"name": "bob"}}: bind the session to the uid C{bob}.
        """
        name = msg.get("name") if isinstance(msg, dict) else None
        if not isinstance(name, str) or not name:
            raise BadRequest("name is required")
        await session.bind(name)
        return {"uid": session.uid, "count": self.totals.get(name, 0)}

    def add(self, msg: Any, session: Any) -> None:
        """
        Notify C{{"n": 2}}: add to the player's total and push it as C{onCount}.
        """
        n = msg.get("n", 1) if isinstance(msg, dict) else 1
        if type(n) is not int or not 1 <= n <= 100:
            raise BadRequest("n must be a whole number from 1 to 100")
        total = self.totals[session.uid] = self.totals.get(session.uid, 0) + n
        session.send("onCount", {"count": total})

    def count(self, msg: Any, session: Any) -> dict[str, int]:
        """
        Request: the player's total.
        """
        return {"count": self.totals.get(session.uid, 0)}


counter = handler(CounterHandler, "connector")
