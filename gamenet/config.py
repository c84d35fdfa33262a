"""
C{cluster.ini}: the one place a cluster is described, read and validated.

Every problem is reported with the file, section and key it concerns, all of
them at once, as a L{ConfigError}.
"""

from __future__ import annotations

import configparser
import ipaddress
import json
import math
import os
from typing import Any, Callable, Mapping

import attrs

from .cron import read_crons
from .protocol.protobuf import load_dir

SECRET_ENVIRONMENT = "GAMENET_SECRET"
ADMIN_TOKEN_ENVIRONMENT = "GAMENET_ADMIN_TOKEN"
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
    max_outbound_messages: int = 1024
    allowed_origins: tuple[str, ...] = ("*",)
    use_dict: bool = True
    single_session: bool = False
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


def _port_or_off(value: str) -> int:
    return 0 if value.strip() == "0" else _port(value)


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
    "max_outbound_messages": _positive_int,
    "allowed_origins": _words,
    "use_dict": _bool,
    "single_session": _bool,
    "tls_cert": str,
    "tls_key": str,
    "web_port": _port,
    "web_root": str,
    "protos_dir": str,
}
_HTTP_KEYS: dict[str, Callable[[str], Any]] = {
    "http_host": _text,
    "http_tls_cert": str,
    "http_tls_key": str,
    "http_max_body_size": _positive_int,
    "http_max_header_size": _positive_int,
    "http_request_timeout": _positive_seconds,
    "http_max_connections": _positive_int,
}
_CLUSTER_KEYS: dict[str, Callable[[str], Any]] = {
    "name": _text,
    "secret": str,
    "env": _text,
    "plugins": _words,
    "plugin_path": _words,
    "extra_routes": _words,
    "dictionary": str,
    "master_host": _text,
    "master_port": _port,
    "rpc_timeout": _positive_seconds,
    "drain_timeout": _seconds,
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
    "admin_port": _port_or_off,
    "metrics_port_base": _port_or_off,
    "admin_host": _text,
    "admin_token": str,
    "admin_tls_cert": str,
    "admin_tls_key": str,
    "crons": _text,
    "transaction_log_dir": _text,
}
_SERVER_KEYS: dict[str, Callable[[str], Any]] = {
    "type": _text,
    "host": _text,
    "node_port": _port,
    "frontend": _bool,
    "client_port": _port,
    "tcp_port": _port,
    "ws_port": _port,
    "auto_restart": _bool,
    "metrics_port": _port_or_off,
    "http_port": _port_or_off,
    **_HTTP_KEYS,
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
    http_defaults = reader.section("http", parser["http"] if parser.has_section("http") else {}, _HTTP_KEYS, ())
    if frontend_defaults.get("protos_dir"):
        _check_protos(reader, "frontend", _relative(path, frontend_defaults["protos_dir"]))
    extra_routes = cluster.get("extra_routes", ())
    if cluster.get("dictionary"):
        try:
            extra_routes = (*_dictionary(_relative(path, cluster["dictionary"])), *extra_routes)
        except ValueError as e:
            reader.problem("cluster", "dictionary", str(e))
    secret = environ.get(SECRET_ENVIRONMENT) or cluster.get("secret", "")
    if not secret:
        reader.problem("cluster", "secret", f"missing (set it here or in ${SECRET_ENVIRONMENT})")

    servers: list[ServerConfig] = []
    ports: dict[tuple[str, int], str] = {}
    numbered = 0
    for section in parser.sections():
        if section in ("cluster", "frontend", "http"):
            continue
        if not section.startswith("server:") or not section[len("server:"):]:
            reader.problem(section, None, "unknown section (expected cluster, frontend, http or server:<id>)")
            continue
        values, server = _server(reader, path, section, parser[section], frontend_defaults, http_defaults)
        server = _metrics_port(reader, section, values, server, cluster.get("metrics_port_base", 0), numbered)
        numbered += 1
        _claim_ports(reader, section, values, ports)
        if server is not None:
            servers.append(server)
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
    admin = _admin(reader, path, cluster, environ, ports)
    _same_schemas(reader, servers)
    for key in ("crons", "transaction_log_dir"):
        if key in cluster:
            cluster[key] = _relative(path, cluster[key])
    if cluster.get("crons"):
        _check_crons(reader, cluster["crons"])
    if reader.problems:
        raise ConfigError(reader.problems)
    return ClusterConfig(
        path,
        cluster["name"],
        secret,
        cluster.get("env", "development"),
        cluster.get("plugins", ()),
        tuple(_relative(path, p) for p in cluster.get("plugin_path", ())),
        extra_routes,
        tuple(servers),
        master_host=master[0],
        master_port=master[1],
        rpc_timeout=cluster.get("rpc_timeout", 10.0),
        drain_timeout=cluster.get("drain_timeout", 10.0),
        node_tls_cert=_relative(path, cluster["node_tls_cert"]) if cluster.get("node_tls_cert") else "",
        node_tls_key=_relative(path, cluster["node_tls_key"]) if cluster.get("node_tls_key") else "",
        **{key: cluster[key] for key in _STORAGE_KEYS if key in cluster},
        **admin,
        crons=cluster.get("crons", ""),
        transaction_log_dir=cluster.get("transaction_log_dir", ""),
    )


def _server(
    reader: _Reader, path: str, section: str, raw: Mapping[str, str], frontend_defaults: Mapping[str, Any],
    http_defaults: Mapping[str, Any] = {},
) -> tuple[dict[str, Any], ServerConfig | None]:
    """
    One C{[server:<id>]} section, or a server spec in the same shape, checked.

    @return: its parsed values, and the server, or C{None} when a required key
        is missing or bad.
    """
    values = reader.section(section, raw, _SERVER_KEYS, _REQUIRED_SERVER)
    frontend = values.get("frontend", False)
    own_options = {key: values[key] for key in _FRONTEND_KEYS if key in values}
    if frontend and "client_port" not in raw:
        reader.problem(section, "client_port", "missing (required for a frontend)")
    if not frontend and ("frontend" in values or "frontend" not in raw):
        for key in ("client_port", "tcp_port", "ws_port", *_FRONTEND_KEYS):
            if key in raw:
                reader.problem(section, key, "only frontends take this key")
    options = None
    if frontend:
        merged = {**frontend_defaults, **own_options}
        for key in ("tls_cert", "tls_key", "web_root", "protos_dir"):
            if merged.get(key):
                merged[key] = _relative(path, merged[key])
        options = FrontendOptions(**merged)
        if own_options.get("protos_dir"):
            _check_protos(reader, section, options.protos_dir)
        if bool(options.tls_cert) != bool(options.tls_key):
            reader.problem(section, "tls_key" if options.tls_cert else "tls_cert", "tls_cert and tls_key go together")
        if bool(options.web_port) != bool(options.web_root):
            reader.problem(section, "web_root" if options.web_port else "web_port", "web_port and web_root go together")
    http = _http(reader, path, section, values, http_defaults)
    if not all(key in values for key in _REQUIRED_SERVER):
        return values, None
    return values, ServerConfig(
        section[len("server:"):], values["type"], values["host"], values["node_port"], frontend,
        values.get("client_port", 0) if frontend else 0, options, values.get("auto_restart", True),
        values.get("metrics_port", 0), http,
        values.get("tcp_port", 0) if frontend else 0, values.get("ws_port", 0) if frontend else 0,
    )


def _http(reader: _Reader, path: str, section: str, values: Mapping[str, Any],
          defaults: Mapping[str, Any]) -> HttpOptions:
    """
    A server's HTTP options: its own C{http_*} keys over those of C{[http]}.
    """
    merged = {key[len("http_"):]: value for key, value in {**defaults, **values}.items()
              if key == "http_port" or key in _HTTP_KEYS}
    for key in ("tls_cert", "tls_key"):
        if merged.get(key):
            merged[key] = _relative(path, merged[key])
    if bool(merged.get("tls_cert")) != bool(merged.get("tls_key")):
        reader.problem(section, "http_tls_key" if merged.get("tls_cert") else "http_tls_cert",
                       "http_tls_cert and http_tls_key go together")
    return HttpOptions(**merged)


def _metrics_port(
    reader: _Reader, section: str, values: dict[str, Any], server: ServerConfig | None, base: int, number: int,
) -> ServerConfig | None:
    """
    Resolve the C{metrics_port} of the C{number}th server section (from 0):
    its own key, else C{base + number} when there is a base.

    @return: C{server} with its metrics port; C{values} gets it too, for the port-clash check.
    """
    if "metrics_port" in values or not base:
        return server
    port = base + number
    if port > 65535:
        reader.problem(section, "metrics_port", f"metrics_port_base {base} + {number} = {port} is outside 1-65535")
        return server
    values["metrics_port"] = port
    return attrs.evolve(server, metrics_port=port) if server is not None else None


def _claim_ports(reader: _Reader, section: str, values: Mapping[str, Any], ports: dict[tuple[str, int], str]) -> None:
    """
    Record the ports of one server section in C{ports} (by host and port), and
    report each one another section already has.
    """
    host = values.get("host", "")
    for key in ("node_port", "client_port", "tcp_port", "ws_port", "web_port", "metrics_port", "http_port"):
        if values.get(key):
            other = ports.setdefault((host, values[key]), f"[{section}] {key}")
            if other != f"[{section}] {key}":
                reader.problem(section, key, f"port {values[key]} is also {other}")


def _admin(
    reader: _Reader, path: str, cluster: Mapping[str, Any], environ: Mapping[str, str],
    ports: Mapping[tuple[str, int], str],
) -> dict[str, Any]:
    """
    The admin API's keys of C{[cluster]}, checked together: a token when the
    API is on, TLS when it listens beyond this machine, and a free port.

    @return: the L{ClusterConfig} fields they set.
    """
    port, host = cluster.get("admin_port", 0), cluster.get("admin_host", "127.0.0.1")
    token = environ.get(ADMIN_TOKEN_ENVIRONMENT) or cluster.get("admin_token", "")
    cert, key = cluster.get("admin_tls_cert", ""), cluster.get("admin_tls_key", "")
    if bool(cert) != bool(key):
        reader.problem("cluster", "admin_tls_key" if cert else "admin_tls_cert",
                       "admin_tls_cert and admin_tls_key go together")
    if port and not token:
        reader.problem("cluster", "admin_token",
                       f"missing (required with admin_port; set it here or in ${ADMIN_TOKEN_ENVIRONMENT})")
    if port and not cert and not _loopback(host):
        reader.problem("cluster", "admin_host",
                       f"{host} is not a loopback address: the admin API listens there only over TLS "
                       "(set admin_tls_cert and admin_tls_key)")
    if port and not cluster.get("master_port"):
        reader.problem("cluster", "admin_port",
                       "needs master_port: the master reaches its servers over their links to it")
    if port and (host, port) in ports:
        reader.problem("cluster", "admin_port", f"port {port} is also {ports[host, port]}")
    master = (cluster.get("master_host", "127.0.0.1"), cluster.get("master_port", 0))
    if port and (host, port) == master:
        reader.problem("cluster", "admin_port", f"port {port} is also [cluster] master_port")
    return {
        "admin_port": port, "admin_host": host, "admin_token": token,
        "admin_tls_cert": _relative(path, cert) if cert else "", "admin_tls_key": _relative(path, key) if key else "",
    }


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def server_spec(server: ServerConfig) -> dict[str, Any]:
    """
    A server as a JSON-able dict in the shape of its C{[server:<id>]} section
    (plus C{"id"}): the keys that differ from their defaults, frontend options
    flattened in. L{server_from_spec} reads it back.
    """
    spec: dict[str, Any] = {}
    for field in attrs.fields(ServerConfig):
        value = getattr(server, field.name)
        if field.name == "options":
            if value is not None:
                spec.update(_changed(value))
        elif field.name == "http":
            spec.update({f"http_{key}": item for key, item in _changed(value).items()})
        elif field.default is attrs.NOTHING or value != field.default:
            spec[field.name] = list(value) if isinstance(value, tuple) else value
    return spec


def _changed(options: FrontendOptions | HttpOptions) -> dict[str, Any]:
    return {
        field.name: list(value) if isinstance(value, tuple) else value
        for field in attrs.fields(type(options))
        if (value := getattr(options, field.name)) != field.default
    }


def server_from_spec(spec: Any, cluster: ClusterConfig) -> ServerConfig:
    """
    A server from a spec (a decoded JSON object in the shape L{server_spec}
    gives), checked with the parsers of the cluster file's keys. Frontend
    options not in the spec take their built-in defaults (not the file's
    C{[frontend]} section); paths are relative to the cluster file.

    @raise ConfigError: its problems, one sentence each, prefixed
        C{server spec [server:<id>]}.
    """
    if not isinstance(spec, Mapping):
        raise ConfigError(["server spec: not a JSON object"])
    server_id = spec.get("id")
    if not isinstance(server_id, str) or not server_id.strip():
        raise ConfigError(["server spec: id: missing (a non-empty string)"])
    reader = _Reader("server spec")
    section = f"server:{server_id}"
    raw = {str(key): _spec_text(value) for key, value in spec.items() if key != "id"}
    values, server = _server(reader, cluster.path, section, raw, {})
    _claim_ports(reader, section, values, {})
    if reader.problems or server is None:
        raise ConfigError(reader.problems)
    return server


def _spec_text(value: Any) -> str:
    """
    A JSON value as it would be written in the cluster file.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return " ".join(str(item) for item in value)
    return str(value)


def _check_protos(reader: _Reader, section: str, path: str) -> None:
    try:
        load_dir(path)
    except ValueError as e:
        reader.problem(section, "protos_dir", str(e))


def _check_crons(reader: _Reader, path: str) -> None:
    try:
        read_crons(path)
    except ValueError as e:
        reader.problem("cluster", "crons", str(e))


def _same_schemas(reader: _Reader, servers: list[ServerConfig]) -> None:
    """
    Every frontend encodes a route's pushes and answers alike: a route of
    one frontend's C{serverProtos.json} has the same schema in every other's.
    """
    loaded: dict[str, dict[str, Any]] = {}
    first: dict[str, tuple[str, Any]] = {}
    for server in servers:
        path = server.options.protos_dir if server.options is not None else ""
        if not path:
            continue
        if path not in loaded:
            try:
                loaded[path] = load_dir(path).handshake["server"]
            except ValueError:
                loaded[path] = {}  # reported already
        for route, schema in loaded[path].items():
            other, known = first.setdefault(route, (server.id, schema))
            if known != schema:
                reader.problem(f"server:{server.id}", "protos_dir",
                               f"{route} has another schema than in [server:{other}]'s serverProtos.json")


def _dictionary(path: str) -> tuple[str, ...]:
    """
    The routes of a Pomelo C{dictionary.json}: a JSON array of routes; an
    empty object (what Pomelo's demo ships) is none.

    @raise ValueError: the file cannot be read, or holds something else.
    """
    try:
        with open(path, encoding="utf-8") as f:
            routes = json.load(f)
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror}") from None
    except ValueError as e:
        raise ValueError(f"{path} is not JSON: {e}") from None
    if routes == {}:
        return ()
    if not isinstance(routes, list) or not all(isinstance(route, str) and route for route in routes):
        raise ValueError(f"{path} is not a JSON array of routes")
    return tuple(routes)


def _relative(config_path: str, path: str) -> str:
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(config_path)), path))
