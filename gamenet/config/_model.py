"""
What a cluster file describes: the cluster, its servers and their options,
as frozen attrs values; and L{ConfigError}, every problem of a file.
"""

from __future__ import annotations

import attrs

SECRET_ENVIRONMENT = "GAMENET_SECRET"
ADMIN_TOKEN_ENVIRONMENT = "GAMENET_ADMIN_TOKEN"
TRANSPORTS = ("hybrid", "websocket", "tcp")
UNIQUE_SCOPES = ("frontend", "cluster")
UNIQUE_POLICIES = ("kick_old", "refuse")


class ConfigError(Exception):
    """
    A cluster file that cannot be used; C{str()} lists every problem, one a line.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@attrs.frozen
class FrontendOptions:
    """
    How a frontend serves clients, and its limits. Every key can be set in
    C{[frontend]} for all frontends and again in a server's own section.
    """

    transport: str = "hybrid"
    reuse_port: bool = False
    client_host: str = ""
    heartbeat: float = 30.0
    handshake_timeout: float = 10.0
    max_body_size: int = 64 * 1024
    max_ws_message_size: int = 256 * 1024
    messages_per_second: int = 100
    max_connections: int = 10000
    max_outbound_queue: int = 1024 * 1024
    max_outbound_messages: int = 1024
    allowed_origins: tuple[str, ...] = ("*",)
    use_dict: bool = True
    single_session: bool = False
    unique_session: str = "frontend"
    unique_session_policy: str = "kick_old"
    resume_window: float = 30.0
    resume_buffer: int = 64 * 1024
    tls_cert: str = ""
    tls_key: str = ""
    web_port: int = 0
    web_root: str = ""
    protos_dir: str = ""


@attrs.frozen
class HttpOptions:
    """
    How a server serves HTTP (see C{doc/http.md}), and its limits. Every key
    but C{http_port} can be set in C{[http]} for all servers and again in a
    server's own section, each with the prefix C{http_}.

    @ivar port: 0 when the server serves no HTTP.
    @ivar host: the address to listen on; the server's C{host} when empty.
    """

    port: int = 0
    host: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    max_body_size: int = 1024 * 1024
    max_header_size: int = 16 * 1024
    request_timeout: float = 30.0
    max_connections: int = 1000


@attrs.frozen
class ServerConfig:
    """
    One server of the cluster.

    @ivar node_port: where it listens for node links from other servers.
    @ivar client_port: where a frontend listens for clients; 0 for backends.
    @ivar options: the frontend's options; C{None} for a backend.
    @ivar auto_restart: whether the master restarts it when it dies.
    @ivar metrics_port: where it serves C{/metrics} (its own C{metrics_port},
        else C{[cluster] metrics_port_base} plus its place in the file); 0
        when metrics are off.
    @ivar http: how it serves HTTP; C{http.port} is 0 when it does not.
    @ivar tcp_port: a frontend's port for raw TCP clients only, beside
        C{client_port} (mqant's C{TCPAddr}); 0 for none.
    @ivar ws_port: a frontend's port for WebSocket clients only (mqant's
        C{WsAddr}); 0 for none.
    """

    id: str
    type: str
    host: str
    node_port: int
    frontend: bool = False
    client_port: int = 0
    options: FrontendOptions | None = None
    auto_restart: bool = True
    metrics_port: int = 0
    http: HttpOptions = HttpOptions()
    tcp_port: int = 0
    ws_port: int = 0

    @property
    def client_host(self) -> str:
        """
        The host clients are told to connect to.
        """
        if self.options is not None and self.options.client_host:
            return self.options.client_host
        return self.host

    @property
    def ports(self) -> dict[str, int]:
        """
        Every port the server may open, by name (C{node}, C{client}, C{tcp},
        C{ws}, C{web}, C{http}, C{metrics}); 0 for one it does not open.
        """
        return {
            "node": self.node_port, "client": self.client_port, "tcp": self.tcp_port, "ws": self.ws_port,
            "web": self.options.web_port if self.options is not None else 0, "http": self.http.port,
            "metrics": self.metrics_port,
        }


@attrs.frozen
class ClusterConfig:
    """
    A whole cluster file.

    @ivar path: the file it came from.
    @ivar plugins: the game's plugin packages, searched for registrations.
    @ivar plugin_path: directories put on C{sys.path} before the plugins are
        imported, made absolute from the cluster file's directory.
    @ivar extra_routes: routes added to the route dictionary after the handler
        routes, usually push routes such as C{onChat}: those of the
        C{dictionary} file, then those of the C{extra_routes} key.
    @ivar servers: every server, in file order.
    @ivar master_host: where the master listens for servers.
    @ivar master_port: the master's port; 0 when the cluster runs without
        membership from a master.
    @ivar rpc_timeout: seconds a call between servers may take.
    @ivar drain_timeout: seconds a stopping server keeps serving its clients
        and finishing its calls before it kicks and stops; 0 stops at once.
    @ivar node_tls_cert: a PEM certificate every node presents and trusts on
        node links; with C{node_tls_key}, node links use TLS.
    @ivar storage: where bound sessions' settings are kept: C{memory},
        C{redis}, or the name of a game's storage plugin.
    @ivar storage_ttl: seconds a stored record lives after its last write or heartbeat.
    @ivar storage_heartbeat: seconds between heartbeats of a bound session's record.
    @ivar storage_timeout: seconds any storage call may take.
    @ivar discovery: C{static} (the servers of this file) or C{redis}.
    @ivar discovery_ttl: seconds a server's registration in Redis lives unless renewed.
    @ivar admin_port: where the master serves the admin API; 0 for none.
    @ivar admin_host: the address the admin API listens on.
    @ivar admin_token: the bearer token every admin call must carry.
    @ivar admin_tls_cert: a PEM certificate the admin API serves HTTPS with;
        with C{admin_tls_key}. Required unless C{admin_host} is a loopback address.
    @ivar crons: the crons file in Pomelo's format (see L{gamenet.cron}), or C{""}.
    @ivar transaction_log_dir: where each server writes its transaction log;
        C{""} for a C{logs} directory beside the cluster file (see L{gamenet.transaction}).
    """

    path: str
    name: str
    secret: str
    env: str
    plugins: tuple[str, ...]
    plugin_path: tuple[str, ...]
    extra_routes: tuple[str, ...]
    servers: tuple[ServerConfig, ...]
    master_host: str = "127.0.0.1"
    master_port: int = 0
    rpc_timeout: float = 10.0
    drain_timeout: float = 10.0
    node_tls_cert: str = ""
    node_tls_key: str = ""
    storage: str = "memory"
    storage_ttl: float = 600.0
    storage_heartbeat: float = 60.0
    storage_timeout: float = 2.0
    discovery: str = "static"
    discovery_ttl: float = 10.0
    redis_host: str = "127.0.0.1"
    redis_port: int = 6379
    redis_db: int = 0
    redis_password: str = ""
    admin_port: int = 0
    admin_host: str = "127.0.0.1"
    admin_token: str = ""
    admin_tls_cert: str = ""
    admin_tls_key: str = ""
    crons: str = ""
    transaction_log_dir: str = ""

    def server(self, server_id: str) -> ServerConfig:
        """
        @raise KeyError: no server has that id.
        """
        for server in self.servers:
            if server.id == server_id:
                return server
        raise KeyError(server_id)

    def servers_by_type(self, server_type: str) -> list[ServerConfig]:
        """
        The servers of one type, in file order.
        """
        return [server for server in self.servers if server.type == server_type]
