"""
Clusters described in code, without a file.
"""

from __future__ import annotations

from typing import Any, Iterable

from ..config import ClusterConfig, FrontendOptions, ServerConfig


def frontend(server_id: str, server_type: str, client_port: int = 0, node_port: int = 0,
             **options: Any) -> ServerConfig:
    """
    A frontend on 127.0.0.1; C{client_port} 0 takes a free port when started
    on sockets. C{options} are L{FrontendOptions} fields.
    """
    return ServerConfig(server_id, server_type, "127.0.0.1", node_port, True, client_port,
                        FrontendOptions(**options))


def backend(server_id: str, server_type: str, node_port: int = 0) -> ServerConfig:
    """
    A backend on 127.0.0.1.
    """
    return ServerConfig(server_id, server_type, "127.0.0.1", node_port)


def cluster_config(*servers: ServerConfig, extra_routes: Iterable[str] = (), env: str = "test",
                   secret: str = "test-secret", rpc_timeout: float = 10.0,
                   drain_timeout: float = 0.0) -> ClusterConfig:
    """
    A cluster description without a file.

    @param drain_timeout: 0 by default, unlike a cluster file's 10 s: a
        stopping server kicks its clients at once, so that tests which stop
        servers with clients connected do not wait; tests of the drain set it.
    """
    return ClusterConfig("<test>", "test", secret, env, (), (), tuple(extra_routes), servers,
                         rpc_timeout=rpc_timeout, drain_timeout=drain_timeout)
