"""
Server specs: a server as a JSON-able mapping of its section's keys, for the
servers the admin service adds at run time, and back, checked with the same
parsers as the cluster file.
"""

from __future__ import annotations

from typing import Any, Mapping

import attrs

from ._load import _claim_ports, _Reader, _same_schemas, _server
from ._model import ClusterConfig, ConfigError, FrontendOptions, HttpOptions, ServerConfig


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
    C{[frontend]} section); paths are relative to the cluster file. A
    frontend's C{protos_dir} must give its routes the server schemas the
    cluster's other frontends give them.

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
    if server is not None and not reader.problems:
        _same_schemas(reader, [*(other for other in cluster.servers if other.id != server.id), server])
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
