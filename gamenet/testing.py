"""
Helpers for testing games and gamenet itself: cluster descriptions made in
code, and servers started on free loopback ports.
"""

from __future__ import annotations

from typing import Any, Iterable



from .app import Application
from .config import ClusterConfig, FrontendOptions, ServerConfig
from .interfaces import IRegistration

__all__ = ["cluster_config", "frontend", "backend", "start_server"]


def frontend(server_id: str, server_type: str, client_port: int = 0, **options: Any) -> ServerConfig:
    """
    A frontend on 127.0.0.1; C{client_port} 0 takes a free port when started.
    C{options} are L{FrontendOptions} fields.
    """
    return ServerConfig(server_id, server_type, "127.0.0.1", 0, True, client_port, FrontendOptions(**options))


def backend(server_id: str, server_type: str, node_port: int = 0) -> ServerConfig:
    """
    A backend on 127.0.0.1.
    """
    return ServerConfig(server_id, server_type, "127.0.0.1", node_port)


def cluster_config(*servers: ServerConfig, extra_routes: Iterable[str] = (), env: str = "test") -> ClusterConfig:
    """
    A cluster description without a file.
    """
    return ClusterConfig("<test>", "test", "test-secret", env, (), (), tuple(extra_routes), servers)


async def start_server(
    cluster: ClusterConfig, server_id: str, registrations: Iterable[IRegistration] = (), reactor: Any = None,
    configure: Any = None,
) -> Application:
    """
    Start one server of C{cluster} and wait until it serves.

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
    for service in app:
        port = getattr(service, "port", None)
        if port is not None:
            return int(port.getHost().port)
    raise ValueError(f"{app} is not listening for clients")


__all__.append("client_port")

