"""
Reading a cluster file: every section checked with the parsers of
L{gamenet.config._values}, every problem collected, then the values built.
"""

from __future__ import annotations

import configparser
import io
import ipaddress
import os
import re
from typing import Any, Callable, Mapping

import attrs

from .._jsonfile import read_json
from ..cron import read_crons
from ..protocol.protobuf import load_dir
from ._model import (
    ADMIN_TOKEN_ENVIRONMENT, SECRET_ENVIRONMENT, ClusterConfig, ConfigError, FrontendOptions, HttpOptions,
    ServerConfig,
)
from ._values import (
    _CLUSTER_KEYS, _FRONTEND_KEYS, _HTTP_KEYS, _REQUIRED_CLUSTER, _REQUIRED_SERVER, _SERVER_KEYS, _STORAGE_KEYS,
)

# A server id names its pid file and its node links: a plain word. "master"
# is the master's own id on node links (gamenet.cluster.master.MASTER_ID).
_SERVER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_RESERVED_ID = "master"


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
        with open(path, "rb") as f:
            raw = f.read()
        parser.read_file(io.StringIO(raw.decode("utf-8"), newline=None), path)
    except OSError as e:
        raise ConfigError([f"{path}: cannot read: {e.strerror}"]) from None
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise ConfigError([f"{path}: line {line} is not UTF-8 text (expected a UTF-8 file)"]) from None
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
    clients: dict[tuple[str, int], tuple[ServerConfig, str]] = {}
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
        _claim_ports(reader, section, values, ports, server, clients)
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
    _same_unique_sessions(reader, servers)
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
    server_id = section[len("server:"):]
    if not _SERVER_ID.fullmatch(server_id) or server_id == _RESERVED_ID:
        reader.problem(section, None, f"the server id {server_id!r} is not allowed (expected letters, digits, "
                                      f"'.', '_' and '-', starting with a letter or digit; not {_RESERVED_ID!r})")
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
        server_id, values["type"], values["host"], values["node_port"], frontend,
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


_CLIENT_PORTS = ("client_port", "tcp_port", "ws_port")


def _claim_ports(
    reader: _Reader, section: str, values: Mapping[str, Any], ports: dict[tuple[str, int], str],
    server: ServerConfig | None = None, clients: dict[tuple[str, int], tuple[ServerConfig, str]] | None = None,
) -> None:
    """
    Record the ports of one server section in C{ports} (by host and port), and
    report each one another section already has, unless both are frontends
    sharing a client port (see L{unshared}).

    @param server: the server of the section, when it could be built.
    @param clients: the first frontend claiming each client port, and its
        key, by host and port; filled here.
    """
    host = values.get("host", "")
    clients = {} if clients is None else clients
    for key in ("node_port", "client_port", "tcp_port", "ws_port", "web_port", "metrics_port", "http_port"):
        if not values.get(key):
            continue
        where = (host, values[key])
        other = ports.setdefault(where, f"[{section}] {key}")
        first = clients.get(where)
        if server is not None and key in _CLIENT_PORTS:
            clients.setdefault(where, (server, key))
        if other == f"[{section}] {key}":
            continue
        refused = unshared(server, key, first)
        if refused is not None:
            reader.problem(section, key, f"port {values[key]} is also {other}{refused}")


def unshared(server: ServerConfig | None, key: str, first: tuple[ServerConfig, str] | None) -> str | None:
    """
    Why C{server} may not share its port C{key} with the frontend that
    claimed it C{first}. Frontends of one type share a client port (the
    kernel spreads new connections among their processes with
    C{SO_REUSEPORT}) when each sets C{reuse_port}, under the same key, with
    the same transport and TLS.

    @return: C{None} when they may; else the end of the message C{port N is
        also ...}: C{""} when the port is simply taken.
    """
    if server is None or server.options is None or first is None or first[0] is server or key not in _CLIENT_PORTS:
        return ""
    sharer, sharer_key = first
    assert sharer.options is not None
    if not (server.options.reuse_port or sharer.options.reuse_port):
        return ""
    if not (server.options.reuse_port and sharer.options.reuse_port):
        return "; sharing a client port needs reuse_port = true in both"
    if key != sharer_key:
        return f"; a shared port must be {sharer_key} in both"
    if server.type != sharer.type:
        return f"; only servers of one type share a port, and that is a {sharer.type}"
    if bool(server.options.tls_cert) != bool(sharer.options.tls_cert) or (
            key == "client_port" and server.options.transport != sharer.options.transport):
        return "; a shared port must have the same transport and TLS in both"
    return None


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


def _same_unique_sessions(reader: _Reader, servers: list[ServerConfig]) -> None:
    """
    The frontends of one type keep one session per uid alike: the first of
    each type sets C{unique_session} and C{unique_session_policy} for the others.
    """
    first: dict[str, ServerConfig] = {}
    for server in servers:
        if server.options is None:
            continue
        model = first.setdefault(server.type, server)
        for key in ("unique_session", "unique_session_policy"):
            mine, theirs = getattr(server.options, key), getattr(model.options, key)
            if mine != theirs:
                reader.problem(f"server:{server.id}", key, f"{mine!r} differs from {theirs!r} of {model.id}; "
                               f"every frontend of type {server.type} must have the same")


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
    routes = read_json(path)
    if routes == {}:
        return ()
    if not isinstance(routes, list) or not all(isinstance(route, str) and route for route in routes):
        raise ValueError(f"{path} is not a JSON array of routes")
    return tuple(routes)


def _relative(config_path: str, path: str) -> str:
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(config_path)), path))
