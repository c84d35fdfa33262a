"""
The record a server keeps in Redis for its peers (see
L{gamenet.cluster.discovery}): what they need to reach it, as a JSON-ready
C{dict}. A pure codec with no I/O. Tested in C{tests/test_records.py}.
"""

from __future__ import annotations

from typing import Any

from ..config import FrontendOptions, ServerConfig

__all__ = ["decode_server", "encode_server"]


def encode_server(server: ServerConfig) -> dict[str, Any]:
    """
    The record of a server in Redis: what its peers need to reach it.
    """
    record: dict[str, Any] = {
        "id": server.id,
        "type": server.type,
        "host": server.host,
        "node_port": server.node_port,
        "frontend": server.frontend,
        "client_port": server.client_port,
        "metadata": {},
    }
    if server.frontend and server.options is not None and server.options.client_host:
        record["client_host"] = server.options.client_host
    return record


def _whole(value: Any, low: int, high: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} is not a number from {low} to {high}: {value!r}")
    return value


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} is not a non-empty string: {value!r}")
    return value


def decode_server(record: Any) -> ServerConfig:
    """
    The L{ServerConfig} of a record from Redis. A frontend's options are not
    needed by its peers and are left out, except C{client_host} (a gate
    tells clients where to connect).

    @raise ValueError: the record is malformed.
    """
    if not isinstance(record, dict):
        raise ValueError(f"not a JSON object: {record!r}")
    frontend = record.get("frontend", False)
    if not isinstance(frontend, bool):
        raise ValueError(f"frontend is not true or false: {frontend!r}")
    client_host = record.get("client_host") or ""
    if not isinstance(client_host, str):
        raise ValueError(f"client_host is not a string: {client_host!r}")
    return ServerConfig(
        _text(record.get("id"), "id"),
        _text(record.get("type"), "type"),
        _text(record.get("host"), "host"),
        _whole(record.get("node_port"), 1, 65535, "node_port"),
        frontend,
        _whole(record.get("client_port", 0), 0, 65535, "client_port") if frontend else 0,
        FrontendOptions(client_host=client_host) if frontend and client_host else None,
    )
