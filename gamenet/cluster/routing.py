"""
Choosing the server of a type that serves a call.
"""

from __future__ import annotations

import inspect
import zlib
from typing import Any, Callable, Iterable, Sequence

from twisted.logger import Logger

from ..config import ClusterConfig, ServerConfig
from ..errors import Unavailable
from ..interfaces import IRouter

log = Logger()


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


Choice = Callable[[str, Any, str, Any, Sequence[ServerConfig]], Any]
"""
A route function as L{pick} calls it: C{(server_type, route_param, route, body, servers)}.
"""


def _takes(fn: Callable[..., Any], count: int) -> bool:
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return count == 2
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    spread = any(p.kind == p.VAR_POSITIONAL for p in parameters)
    return len(required) <= count and (spread or len(positional) >= count)


def router(fn: Any) -> Choice:
    """
    A route function as L{pick} calls it, its shape told once, here, rather
    than on every call:

      - an L{IRouter}: C{fn.route(server_type, route_param, servers)};
      - C{fn(route_param, servers)}: the route parameter and the available
        servers, sorted by id;
      - C{fn(session, route, body, servers)}, what Pomelo's and Pitaya's
        route functions see: the route parameter (the session, for a
        forwarded client message), the route, the body (the client's body
        as received, JSON bytes; the arguments, a list, for C{app.rpc};
        C{None} when only a parameter is routed, as channels do), and the
        available servers as a dict by id.

    A function that can take two arguments is taken for C{fn(route_param,
    servers)}. Each returns one of the servers, or its id.

    @raise TypeError: C{fn} has none of these shapes.
    """
    if IRouter.providedBy(fn):
        return lambda server_type, param, route, body, servers: fn.route(server_type, param, servers)
    if not callable(fn):
        raise TypeError(f"{fn!r} is not a route function")
    if _takes(fn, 2):
        return lambda server_type, param, route, body, servers: fn(param, servers)
    if _takes(fn, 4):
        return lambda server_type, param, route, body, servers: fn(
            param, route, body, {server.id: server for server in servers})
    raise TypeError(f"{fn!r} takes neither (route_param, servers) nor (session, route, body, servers)")


def pick(
    choice: Choice | None, server_type: str, route_param: Any, servers: Sequence[ServerConfig],
    route: str = "", body: Any = None,
) -> ServerConfig:
    """
    Ask C{choice} (made by L{router}) for one of C{servers}; the default
    router when C{None}.

    @raise Unavailable: no server of the type is up, or the router chose none of them.
    """
    if not servers:
        raise Unavailable(f"no {server_type} server is available")
    if choice is None:
        return default_router(route_param, servers)
    chosen = choice(server_type, route_param, route, body, servers)
    if isinstance(chosen, str):
        chosen = next((server for server in servers if server.id == chosen), None)
    if chosen not in servers:
        raise Unavailable(f"the {server_type} router chose no available server")
    return chosen


def warn_unknown_types(cluster: ClusterConfig, server_types: Iterable[str]) -> None:
    """
    Warn, with static discovery, of a route function (C{app.route}) for a
    server type no server of the cluster file has: a misspelt type, or a
    game's plugins run by a cluster without that type (which is why it is
    no error).
    """
    if cluster.discovery != "static":
        return
    known = sorted({server.type for server in cluster.servers})
    for server_type in server_types:
        if server_type not in known:
            log.warn("{path} [server:*] type: app.route names server type {server_type!r}, which no server "
                     "has; expected one of: {known}", path=cluster.path, server_type=server_type,
                     known=", ".join(known))
