"""
The plugins of the multi-process test game; every module here is searched
for registrations.

Routing of the C{area} type: a session whose setting C{pin} names a server is
always sent to that server (and its requests fail with 503 while it is down);
any other route parameter goes through gamenet's default router.
"""

from __future__ import annotations

from typing import Any, Sequence

from gamenet import ServerConfig
from gamenet.cluster.routing import default_router


def pinned_router(route_param: Any, servers: Sequence[ServerConfig]) -> Any:
    """
    The C{area} route function: the server id in the session's C{pin}
    setting, else the default choice among the available servers.
    """
    get = getattr(route_param, "get", None)
    pin = get("pin") if callable(get) and not isinstance(route_param, dict) else None
    if pin:
        return str(pin)
    return default_router(route_param, servers)
