"""
The chat's HTTP API, served by the gate on its C{http_port} (3002 in the
default cluster): the rooms, who is in one, and an announcement pushed to a
room from C{system}, guarded by a token (a C{BeforeServe} hook).

    GET  /rooms                  {"rooms": [{"rid": "lobby", "users": 3}, ...]}
    GET  /rooms/<rid>/users      {"rid": "lobby", "users": ["alice", "bob"]}
    POST /rooms/<rid>/announce   {"msg": "text"}, with Authorization: Bearer TOKEN
                                 -> {"rid": "lobby", "pushed": 3}

The token is C{$CHAT_ANNOUNCE_TOKEN}, else L{DEFAULT_TOKEN}.
"""

from __future__ import annotations

import hmac
import os
from typing import Any

from gamenet import BadRequest, GamenetError, Unavailable, http_handler, http_hook

TOKEN_ENVIRONMENT = "CHAT_ANNOUNCE_TOKEN"
DEFAULT_TOKEN = "change-me-announce"


async def rooms(request: Any) -> dict[str, Any]:
    """
    Every room the chat servers hold and how many are in it, asked of each
    chat server with C{app.rpc}; 503 when one does not answer.
    """
    answers = await request.app.rpc.chat.chatRemote.rooms.broadcast()
    failed = [f"{server_id}: {answer}" for server_id, answer in answers.items() if isinstance(answer, Exception)]
    if failed:
        raise Unavailable(f"cannot list the rooms: {'; '.join(failed)}")
    merged: dict[str, int] = {}
    for held in answers.values():
        merged.update(held)
    return {"rooms": [{"rid": rid, "users": count} for rid, count in sorted(merged.items())]}


async def users(request: Any) -> dict[str, Any]:
    """
    The names in one room, from the chat server it routes to (which
    rebuilds it from the connectors' sessions when it holds none).
    """
    rid = request.params["rid"]
    return {"rid": rid, "users": await request.app.rpc.chat.chatRemote.get(rid, rid)}


async def announce(request: Any) -> dict[str, Any]:
    """
    Push C{msg} to everyone in the room, wherever they are connected.
    """
    rid, body = request.params["rid"], request.json
    text = body.get("msg") if isinstance(body, dict) else None
    if not isinstance(text, str) or not text:
        raise BadRequest('the body must be {"msg": "a non-empty text"}')
    return {"rid": rid, "pushed": await request.app.rpc.chat.chatRemote.announce(rid, rid, text)}


def token(request: Any) -> None:
    """
    Refuse, 401, a request without C{Authorization: Bearer TOKEN}.
    """
    expected = (os.environ.get(TOKEN_ENVIRONMENT) or DEFAULT_TOKEN).encode("utf-8")
    scheme, _, given = (request.header("authorization") or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode("utf-8"), expected):
        raise GamenetError("wrong or missing token (send Authorization: Bearer TOKEN)", 401)


list_rooms = http_handler("GET:/rooms", rooms, "gate")
room_users = http_handler("GET:/rooms/:rid/users", users, "gate")
room_announce = http_handler("POST:/rooms/:rid/announce", announce, "gate")
announce_token = http_hook("POST:/rooms/:rid/announce", "BeforeServe", token, "gate")
