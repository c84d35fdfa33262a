"""
The keys of each section of a cluster file and the parser of each value:
a plain function raising L{ValueError} with a sentence that names what is
expected (the reader adds the file, section and key).
"""

from __future__ import annotations

import math
from typing import Any, Callable

from ._model import TRANSPORTS, UNIQUE_POLICIES, UNIQUE_SCOPES

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
    "reuse_port": _bool,
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
    "unique_session": _choice(*UNIQUE_SCOPES),
    "unique_session_policy": _choice(*UNIQUE_POLICIES),
    "resume_window": _seconds,
    "resume_buffer": _positive_int,
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
