"""
Choosing the server of a type that serves a call.
"""

from __future__ import annotations

import zlib
from typing import Any, Callable, Sequence

from ..config import ServerConfig
from ..errors import Unavailable
from ..interfaces import IRouter


def route_key(route_param: Any) -> str:
    """
    What the default router hashes: a session's uid, else its frontend and
    session id; any other value as text.
    """
    uid = getattr(route_param, "uid", None)
    if uid is not None:
        return str(uid)
    session_id = getattr(route_param, "id", None)
    frontend_id = getattr(route_param, "frontend_id", None)
    if session_id is not None and frontend_id is not None:
        return f"{frontend_id}:{session_id}"
    return str(route_param)


def default_router(route_param: Any, servers: Sequence[ServerConfig]) -> ServerConfig:
    """
    A stable choice: the crc32 of L{route_key} modulo the number of servers.
    """
    return servers[zlib.crc32(route_key(route_param).encode("utf-8")) % len(servers)]


def pick(
    router: Callable[..., Any] | None, server_type: str, route_param: Any, servers: Sequence[ServerConfig]
) -> ServerConfig:
    """
    Ask C{router} (a function C{(route_param, servers)} or an L{IRouter}) for
    one of C{servers}.

    @raise Unavailable: no server of the type is up, or the router chose none of them.
    """
    if not servers:
        raise Unavailable(f"no {server_type} server is available")
    if router is None:
        return default_router(route_param, servers)
    if IRouter.providedBy(router):
        chosen = router.route(server_type, route_param, servers)
    else:
        chosen = router(route_param, servers)
    if isinstance(chosen, str):
        chosen = next((server for server in servers if server.id == chosen), None)
    if chosen not in servers:
        raise Unavailable(f"the {server_type} router chose no available server")
    return chosen
