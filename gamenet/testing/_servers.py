"""
One server on real loopback sockets.
"""

from __future__ import annotations

from typing import Any, Iterable

from ..app import Application
from ..config import ClusterConfig
from ..interfaces import IRegistration


async def start_server(
    cluster: ClusterConfig, server_id: str, registrations: Iterable[IRegistration] = (), reactor: Any = None,
    configure: Any = None,
) -> Application:
    """
    Start one server of C{cluster} on real sockets and wait until it serves.

    @param configure: called with the app before it starts, to add filters and hooks.
    @return: the running application; stop it with C{await app.stopService()}.
    """
    app = Application(cluster, server_id, registrations, reactor=reactor)
    if configure is not None:
        configure(app)
    app.privilegedStartService()
    await app.startService()
    return app


def client_port(app: Application) -> int:
    """
    The port a started frontend listens on.
    """
    port = getattr(app.namedServices.get("clients"), "port", None)
    if port is not None:
        return int(port.getHost().port)
    raise ValueError(f"{app} is not listening for clients")
