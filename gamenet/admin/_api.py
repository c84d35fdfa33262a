"""
The admin API's route table: each call checks the shape of its input, asks
the fleet (L{IFleet}), and answers JSON. The dashboard's static files are
served at C{/} (its index) and C{/dashboard/<file>}. Tested in
C{tests/test_admin.py}.
"""

from __future__ import annotations

import math
import mimetypes
import os
from typing import Any, Callable

from klein import Klein
from twisted.python.failure import Failure
from twisted.web.resource import IResource

from ..cluster.control import ADMIN_KICK, SESSIONS_LISTED
from ..errors import GamenetError
from ._resource import answer, failed, guarded, read_json
from .interfaces import IFleet

DASHBOARD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dashboard")

DEFAULT_HISTORY = 300.0
MAX_SESSIONS = 1000
_SELECTION = ("servers", "type", "all")


class AdminApi:
    """
    The routes of the admin API over a fleet (see C{doc/operations.md}).

    @ivar dashboard: the directory of the dashboard's files; when it is
        missing, C{/} is a 404 and the API works as ever.
    """

    app = Klein()

    def __init__(self, fleet: IFleet, dashboard: str = DASHBOARD) -> None:
        self.fleet = fleet
        self.dashboard = dashboard

    def resource(self, token: str) -> IResource:
        """
        The API as a resource, C{/api} behind C{token}.
        """
        return guarded(self.app.resource(), token)

    @app.handle_errors(Exception)
    def _failed(self, request: Any, failure: Failure) -> bytes:
        return failed(request, failure)

    # The dashboard

    @app.route("/", methods=["GET"])
    def index(self, request: Any) -> bytes:
        return self._file(request, "index.html")

    @app.route("/dashboard/<name>", methods=["GET"])
    def file(self, request: Any, name: str) -> bytes:
        return self._file(request, name)

    def _file(self, request: Any, name: str) -> bytes:
        """
        One file of the dashboard's directory, read whole: they are a few
        small ones, and answering them at once (rather than through
        L{twisted.web.static.File}'s producer) keeps the resource testable
        in memory.

        @raise GamenetError: 404, no such file.
        """
        path = os.path.join(self.dashboard, name)
        try:
            if name.startswith(".") or os.path.basename(name) != name:
                raise OSError(name)
            with open(path, "rb") as f:
                content = f.read()
        except OSError:
            raise GamenetError(f"no dashboard file {name}", 404) from None
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        request.setHeader(b"content-type", (kind + ("; charset=utf-8" if kind.startswith("text/") else "")).encode())
        request.setHeader(b"cache-control", b"no-cache")
        return content

    # Views

    @app.route("/api/cluster", methods=["GET"])
    def cluster(self, request: Any) -> bytes:
        return answer(request, self.fleet.cluster())

    @app.route("/api/servers", methods=["GET"])
    def servers(self, request: Any) -> bytes:
        return answer(request, {"servers": self.fleet.servers(_query(request, "type"))})

    @app.route("/api/servers/<server_id>", methods=["GET"])
    def server(self, request: Any, server_id: str) -> bytes:
        return answer(request, self.fleet.server(server_id))

    @app.route("/api/history", methods=["GET"])
    def history(self, request: Any) -> bytes:
        text = _query(request, "seconds")
        try:
            seconds = DEFAULT_HISTORY if text is None else float(text)
        except ValueError:
            seconds = math.nan
        if not seconds > 0 or math.isinf(seconds):
            raise GamenetError(f"seconds must be a number above 0, not {text!r}", 400)
        return answer(request, self.fleet.history(seconds))

    # Processes

    @app.route("/api/stop", methods=["POST"])
    def stop(self, request: Any) -> bytes:
        return self._act(request, self.fleet.stop)

    @app.route("/api/kill", methods=["POST"])
    def kill(self, request: Any) -> bytes:
        return self._act(request, self.fleet.kill)

    @app.route("/api/restart", methods=["POST"])
    def restart(self, request: Any) -> bytes:
        return self._act(request, self.fleet.restart)

    def _act(self, request: Any, operation: Callable[..., list[str]]) -> bytes:
        body = read_json(request, _SELECTION)
        servers, server_type, every = body.get("servers"), body.get("type"), body.get("all", False)
        if servers is not None and not (isinstance(servers, list) and servers and _strings(servers)):
            raise GamenetError('"servers" must be a non-empty list of server ids', 400)
        if server_type is not None and not isinstance(server_type, str):
            raise GamenetError('"type" must be a server type', 400)
        if not isinstance(every, bool):
            raise GamenetError('"all" must be true or false', 400)
        return answer(request, {"servers": operation(servers=servers, type=server_type, all=every)})

    @app.route("/api/servers", methods=["POST"])
    def add(self, request: Any) -> bytes:
        body = read_json(request, ("section", "spec"))
        section = body.get("section")
        if section is not None and not isinstance(section, str):
            raise GamenetError('"section" must be a section name such as "server:chat-3"', 400)
        return answer(request, {"server": self.fleet.add(section=section, spec=body.get("spec"))}, 201)

    @app.route("/api/servers/<server_id>", methods=["DELETE"])
    def remove(self, request: Any, server_id: str) -> bytes:
        self.fleet.remove(server_id)
        return answer(request, {"removed": server_id})

    # Clients

    @app.route("/api/servers/<server_id>/sessions", methods=["GET"])
    async def sessions(self, request: Any, server_id: str) -> bytes:
        text = _query(request, "limit")
        try:
            limit = SESSIONS_LISTED if text is None else int(text)
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_SESSIONS:
            raise GamenetError(f"limit must be a whole number from 1 to {MAX_SESSIONS}, not {text!r}", 400)
        return answer(request, await self.fleet.sessions(server_id, _query(request, "uid"), limit))

    @app.route("/api/kick", methods=["POST"])
    async def kick(self, request: Any) -> bytes:
        body = read_json(request, ("uid", "server", "session", "reason"))
        uid, server, session = body.get("uid"), body.get("server"), body.get("session")
        reason = body.get("reason", ADMIN_KICK)
        if uid is not None and (isinstance(uid, bool) or not isinstance(uid, (str, int))):
            raise GamenetError('"uid" must be a user id', 400)
        if server is not None and not isinstance(server, str):
            raise GamenetError('"server" must be a server id', 400)
        if session is not None and (isinstance(session, bool) or not isinstance(session, int)):
            raise GamenetError('"session" must be a session id (a whole number)', 400)
        if not isinstance(reason, str) or not reason:
            raise GamenetError('"reason" must be a non-empty sentence', 400)
        kicked = await self.fleet.kick(uid=None if uid is None else str(uid), server=server, session=session,
                                       reason=reason)
        return answer(request, {"kicked": kicked})

    @app.route("/api/blocked", methods=["GET"])
    async def blocked(self, request: Any) -> bytes:
        return answer(request, {"blocked": await self.fleet.blocked()})

    @app.route("/api/block", methods=["POST"])
    async def block(self, request: Any) -> bytes:
        return answer(request, {"blocked": await self.fleet.block(_networks(request))})

    @app.route("/api/unblock", methods=["POST"])
    async def unblock(self, request: Any) -> bytes:
        return answer(request, {"blocked": await self.fleet.unblock(_networks(request))})

    @app.route("/api/broadcast", methods=["POST"])
    async def broadcast(self, request: Any) -> bytes:
        body = read_json(request, ("route", "msg"))
        route = body.get("route")
        if not isinstance(route, str) or not route:
            raise GamenetError('"route" must be a push route such as "onNews"', 400)
        if "msg" not in body:
            raise GamenetError('"msg" is missing (the message to push, any JSON value)', 400)
        return answer(request, {"sessions": await self.fleet.broadcast(route, body["msg"])})


def _query(request: Any, name: str) -> str | None:
    values = request.args.get(name.encode("ascii"))
    return values[-1].decode("utf-8", "replace") if values else None


def _strings(values: list[Any]) -> bool:
    return all(isinstance(value, str) for value in values)


def _networks(request: Any) -> list[str]:
    networks = read_json(request, ("networks",)).get("networks")
    if not isinstance(networks, list) or not networks or not _strings(networks):
        raise GamenetError('"networks" must be a non-empty list of addresses and networks', 400)
    return networks
