"""
HTTP routes for bench/http_echo.py, on servers of type C{web}: C{POST /echo}
answers the JSON body it got, among a table of other patterns (a REST
object per resource, as a game's API might have), so that the lookup does
real work.
"""

from __future__ import annotations

from typing import Any

from gamenet import configure, http_handler

RESOURCES = ("users", "items", "rooms", "scores", "mails", "shops", "quests", "guilds", "friends")


def echo(request: Any) -> Any:
    """
    The decoded JSON body, back.
    """
    return request.json


class Resource:
    """
    A REST resource: its C{get} and C{post}.
    """

    def get(self, request: Any) -> Any:
        return request.params

    def post(self, request: Any) -> Any:
        return request.json


def table(app: Any) -> None:
    """
    Bind a list and an item pattern for each of L{RESOURCES}.
    """
    for name in RESOURCES:
        app.http.bind_object_rest(f"/api/{name}", Resource())
        app.http.bind_object_rest(f"/api/{name}/:id", Resource())


echo_route = http_handler("POST:/echo", echo, "web")
api = configure(table, "web")
