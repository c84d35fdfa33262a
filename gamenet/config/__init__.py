"""
C{cluster.ini}: the one place a cluster is described, read and validated.

Every problem is reported with the file, section and key it concerns, all of
them at once, as a L{ConfigError}. The values are in C{_model}, the keys and
their parsers in C{_values}, reading a file in C{_load}, server specs in
C{_spec}. Tested in C{tests/test_config.py}.
"""

from ._load import load, unshared
from ._model import (
    ADMIN_TOKEN_ENVIRONMENT,
    SECRET_ENVIRONMENT,
    TRANSPORTS,
    ClusterConfig,
    ConfigError,
    FrontendOptions,
    HttpOptions,
    ServerConfig,
)
from ._spec import server_from_spec, server_spec

__all__ = [
    "ADMIN_TOKEN_ENVIRONMENT",
    "SECRET_ENVIRONMENT",
    "TRANSPORTS",
    "ClusterConfig",
    "ConfigError",
    "FrontendOptions",
    "HttpOptions",
    "ServerConfig",
    "load",
    "server_from_spec",
    "server_spec",
    "unshared",
]
