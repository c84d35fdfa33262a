"""
A tiny counter game on the connector: log in, count up, get pushed the
total; the totals are also served over HTTP.
"""

from __future__ import annotations

from typing import Any

from zope.interface import implementer

from gamenet import BadRequest, Handler, IFilter, Refused, RouteNotFound, handler


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
        self.app.http.bind_handler("GET:/totals", self._top)
        self.app.http.bind_handler("GET:/totals/:name", self._total)

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

    def _top(self, request: Any) -> dict[str, Any]:
        """
        C{GET /totals?limit=3}: the best totals, highest first, and how many
        players are online. (Private, so that it is no game route: C{init}
        binds it to its URI.)
        """
        limit = request.query.get("limit", "10")
        if not limit.isdigit():
            raise BadRequest("limit must be a whole number")
        best = sorted(self.totals.items(), key=lambda item: -item[1])[: int(limit)]
        return {"top": [{"name": name, "count": count} for name, count in best],
                "online": self.app.sessions.bound_count}

    def _total(self, request: Any) -> dict[str, Any]:
        """
        C{GET /totals/<name>}: one player's total; 404 for a name never seen.
        """
        name = request.params["name"]
        if name not in self.totals:
            raise RouteNotFound(f"no player {name}")
        return {"name": name, "count": self.totals[name]}


counter = handler(CounterHandler, "connector")
