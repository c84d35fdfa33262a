"""
C{cluster.ini}: the one place a cluster is described, read and validated.

Every problem is reported with the file, section and key it concerns, all of
them at once, as a L{ConfigError}.
"""

from __future__ import annotations

import configparser
import math
import os
from typing import Any, Callable, Mapping

import attrs

SECRET_ENVIRONMENT = "GAMENET_SECRET"
TRANSPORTS = ("hybrid", "websocket", "tcp")


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
    client_host: str = ""
    heartbeat: float = 30.0
    handshake_timeout: float = 10.0
    max_body_size: int = 64 * 1024
    max_ws_message_size: int = 256 * 1024
    messages_per_second: int = 100
    max_connections: int = 10000
    max_outbound_queue: int = 1024 * 1024
    allowed_origins: tuple[str, ...] = ("*",)
    use_dict: bool = True
    single_session: bool = False
    tls_cert: str = ""
    tls_key: str = ""
    web_port: int = 0
    web_root: str = ""


@attrs.frozen
class ServerConfig:
    """
    One server of the cluster.

    @ivar node_port: where it listens for node links from other servers.
    @ivar client_port: where a frontend listens for clients; 0 for backends.
    @ivar options: the frontend's options; C{None} for a backend.
    @ivar auto_restart: whether the master restarts it when it dies.
    """

    id: str
    type: str
    host: str
    node_port: int
    frontend: bool = False
    client_port: int = 0
    options: FrontendOptions | None = None
    auto_restart: bool = True

    @property
    def client_host(self) -> str:
        """
        The host clients are told to connect to.
        """
        if self.options is not None and self.options.client_host:
            return self.options.client_host
        return self.host


@attrs.frozen
class ClusterConfig:
    """
    A whole cluster file.

    @ivar path: the file it came from.
    @ivar plugins: the game's plugin packages, searched for registrations.
    @ivar plugin_path: directories put on C{sys.path} before the plugins are
        imported, made absolute from the cluster file's directory.
    @ivar extra_routes: routes added to the route dictionary after the handler
        routes, usually push routes such as C{onChat}.
    @ivar servers: every server, in file order.
    @ivar master_host: where the master listens for servers.
    @ivar master_port: the master's port; 0 when the cluster runs without
        membership from a master.
    @ivar rpc_timeout: seconds a call between servers may take.
    @ivar node_tls_cert: a PEM certificate every node presents and trusts on
        node links; with C{node_tls_key}, node links use TLS.
    @ivar storage: where bound sessions' settings are kept: C{memory},
        C{redis}, or the name of a game's storage plugin.
    @ivar storage_ttl: seconds a stored record lives after its last write or heartbeat.
    @ivar storage_heartbeat: seconds between heartbeats of a bound session's record.
    @ivar storage_timeout: seconds any storage call may take.
    @ivar discovery: C{static} (the servers of this file) or C{redis}.
    @ivar discovery_ttl: seconds a server's registration in Redis lives unless renewed.
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


def _text(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    return value


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise ValueError(f"not a port number: {value!r}") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is outside 1-65535")
    return port


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"not a whole number: {value!r}") from None
    if number < 1:
        raise ValueError(f"must be at least 1, not {number}")
    return number


def _seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"not a number of seconds: {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"not a finite number of seconds: {value!r}")
    if number < 0:
        raise ValueError(f"must not be negative, not {number}")
    return number


def _positive_seconds(value: str) -> float:
    number = _seconds(value)
    if number == 0:
        raise ValueError("must be more than 0")
    return number


def _body_size(value: str) -> int:
    number = _positive_int(value)
    if number > 0xFFFFFF:
        raise ValueError(f"{number} exceeds the protocol's largest package body, 16777215")
    return number


def _bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"not true or false: {value!r}")


def _words(value: str) -> tuple[str, ...]:
    return tuple(word for word in value.replace(",", " ").split() if word)


def _choice(*allowed: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"{value!r} is not one of {', '.join(allowed)}")
        return value

    return check


def _whole(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"not a whole number: {value!r}") from None
    if number < 0:
        raise ValueError(f"must not be negative, not {number}")
    return number


_FRONTEND_KEYS: dict[str, Callable[[str], Any]] = {
    "transport": _choice(*TRANSPORTS),
    "client_host": str,
    "heartbeat": _seconds,
    "handshake_timeout": _positive_seconds,
    "max_body_size": _body_size,
    "max_ws_message_size": _positive_int,
    "messages_per_second": _positive_int,
    "max_connections": _positive_int,
    "max_outbound_queue": _positive_int,
    "allowed_origins": _words,
    "use_dict": _bool,
    "single_session": _bool,
    "tls_cert": str,
    "tls_key": str,
    "web_port": _port,
    "web_root": str,
}
_CLUSTER_KEYS: dict[str, Callable[[str], Any]] = {
    "name": _text,
    "secret": str,
    "env": _text,
    "plugins": _words,
    "plugin_path": _words,
    "extra_routes": _words,
    "master_host": _text,
    "master_port": _port,
    "rpc_timeout": _positive_seconds,
    "node_tls_cert": str,
    "node_tls_key": str,
    "storage": _text,
    "storage_ttl": _positive_seconds,
    "storage_heartbeat": _positive_seconds,
    "storage_timeout": _positive_seconds,
    "discovery": _choice("static", "redis"),
    "discovery_ttl": _positive_seconds,
    "redis_host": _text,
    "redis_port": _port,
    "redis_db": _whole,
    "redis_password": str,
}
_SERVER_KEYS: dict[str, Callable[[str], Any]] = {
    "type": _text,
    "host": _text,
    "node_port": _port,
    "frontend": _bool,
    "client_port": _port,
    "auto_restart": _bool,
    **_FRONTEND_KEYS,
}
_STORAGE_KEYS = (
    "storage", "storage_ttl", "storage_heartbeat", "storage_timeout", "discovery", "discovery_ttl",
    "redis_host", "redis_port", "redis_db", "redis_password",
)
_REQUIRED_CLUSTER = ("name",)
_REQUIRED_SERVER = ("type", "host", "node_port")


class _Reader:
    def __init__(self, path: str) -> None:
        self.path = path
        self.problems: list[str] = []

    def problem(self, section: str, key: str | None, text: str) -> None:
        where = f"{self.path} [{section}]" + (f" {key}" if key else "")
        self.problems.append(f"{where}: {text}")

    def section(
        self,
        name: str,
        values: Mapping[str, str],
        keys: Mapping[str, Callable[[str], Any]],
        required: tuple[str, ...],
    ) -> dict[str, Any]:
        parsed: dict[str, Any] = {}
        for key, raw in values.items():
            if key not in keys:
                self.problem(name, key, "unknown key")
                continue
            try:
                parsed[key] = keys[key](raw.strip())
            except ValueError as e:
                self.problem(name, key, str(e))
        for key in required:
            if key not in values:
                self.problem(name, key, "missing")
        return parsed


def load(path: str, environ: Mapping[str, str] | None = None) -> ClusterConfig:
    """
    Read and validate a cluster file.

    @param environ: where C{GAMENET_SECRET} is looked up; C{os.environ} by default.
    @raise ConfigError: the file is missing, unreadable or invalid.
    """
    environ = os.environ if environ is None else environ
    parser = configparser.ConfigParser(
        interpolation=None, inline_comment_prefixes=(";", "#"), default_section="\x00"
    )
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except OSError as e:
        raise ConfigError([f"{path}: cannot read: {e.strerror}"]) from None
    except configparser.Error as e:
        raise ConfigError([f"{path}: " + " ".join(line.strip() for line in e.message.splitlines())]) from None
    return _validate(path, parser, environ)


def _validate(path: str, parser: configparser.ConfigParser, environ: Mapping[str, str]) -> ClusterConfig:
    reader = _Reader(path)
    if not parser.has_section("cluster"):
        reader.problem("cluster", None, "missing section")
    cluster = reader.section(
        "cluster", parser["cluster"] if parser.has_section("cluster") else {}, _CLUSTER_KEYS, _REQUIRED_CLUSTER
    )
    frontend_defaults = reader.section(
        "frontend", parser["frontend"] if parser.has_section("frontend") else {}, _FRONTEND_KEYS, ()
    )
    secret = environ.get(SECRET_ENVIRONMENT) or cluster.get("secret", "")
    if not secret:
        reader.problem("cluster", "secret", f"missing (set it here or in ${SECRET_ENVIRONMENT})")

    servers: list[ServerConfig] = []
    ports: dict[tuple[str, int], str] = {}
    for section in parser.sections():
        if section in ("cluster", "frontend"):
            continue
        if not section.startswith("server:") or not section[len("server:"):]:
            reader.problem(section, None, "unknown section (expected cluster, frontend or server:<id>)")
            continue
        server_id = section[len("server:"):]
        values = reader.section(section, parser[section], _SERVER_KEYS, _REQUIRED_SERVER)
        raw = parser[section]
        frontend = values.get("frontend", False)
        own_options = {key: values[key] for key in _FRONTEND_KEYS if key in values}
        if frontend and "client_port" not in raw:
            reader.problem(section, "client_port", "missing (required for a frontend)")
        if not frontend and ("frontend" in values or "frontend" not in raw):
            for key in ("client_port", *_FRONTEND_KEYS):
                if key in raw:
                    reader.problem(section, key, "only frontends take this key")
        options = None
        if frontend:
            merged = {**frontend_defaults, **own_options}
            for key in ("tls_cert", "tls_key", "web_root"):
                if merged.get(key):
                    merged[key] = _relative(path, merged[key])
            options = FrontendOptions(**merged)
            if bool(options.tls_cert) != bool(options.tls_key):
                reader.problem(section, "tls_key" if options.tls_cert else "tls_cert", "tls_cert and tls_key go together")
            if bool(options.web_port) != bool(options.web_root):
                reader.problem(section, "web_root" if options.web_port else "web_port", "web_port and web_root go together")
        host = values.get("host", "")
        for key in ("node_port", "client_port", "web_port"):
            if key in values:
                other = ports.setdefault((host, values[key]), f"[{section}] {key}")
                if other != f"[{section}] {key}":
                    reader.problem(section, key, f"port {values[key]} is also {other}")
        if all(key in values for key in _REQUIRED_SERVER):
            servers.append(
                ServerConfig(
                    server_id, values["type"], host, values["node_port"], frontend,
                    values.get("client_port", 0) if frontend else 0, options, values.get("auto_restart", True),
                )
            )
    if not any(s.startswith("server:") for s in parser.sections()):
        reader.problem("cluster", None, "no [server:<id>] section")
    if bool(cluster.get("node_tls_cert")) != bool(cluster.get("node_tls_key")):
        reader.problem("cluster", "node_tls_key" if cluster.get("node_tls_cert") else "node_tls_cert",
                       "node_tls_cert and node_tls_key go together")
    ttl, heartbeat = cluster.get("storage_ttl", 600.0), cluster.get("storage_heartbeat", 60.0)
    if heartbeat >= ttl:
        reader.problem("cluster", "storage_heartbeat",
                       f"{heartbeat:g} s must be shorter than storage_ttl ({ttl:g} s), or records expire while in play")
    master = (cluster.get("master_host", "127.0.0.1"), cluster.get("master_port", 0))
    if master[1] and master in ports:
        reader.problem("cluster", "master_port", f"port {master[1]} is also {ports[master]}")
    if reader.problems:
        raise ConfigError(reader.problems)
    return ClusterConfig(
        path,
        cluster["name"],
        secret,
        cluster.get("env", "development"),
        cluster.get("plugins", ()),
        tuple(_relative(path, p) for p in cluster.get("plugin_path", ())),
        cluster.get("extra_routes", ()),
        tuple(servers),
        master_host=master[0],
        master_port=master[1],
        rpc_timeout=cluster.get("rpc_timeout", 10.0),
        node_tls_cert=_relative(path, cluster["node_tls_cert"]) if cluster.get("node_tls_cert") else "",
        node_tls_key=_relative(path, cluster["node_tls_key"]) if cluster.get("node_tls_key") else "",
        **{key: cluster[key] for key in _STORAGE_KEYS if key in cluster},
    )


def _relative(config_path: str, path: str) -> str:
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(config_path)), path))
