"""
gamenet: a distributed game-server framework on Twisted that speaks the Pomelo wire protocol.
"""

from .app import Application
from .channel import Channel, ChannelService
from .component import (
    Component,
    Handler,
    Registration,
    Remote,
    configure,
    controller,
    cron_handler,
    handler,
    remote,
    route_handler,
    session_learner,
    storage_handler,
)
from .config import ClusterConfig, ConfigError, FrontendOptions, ServerConfig
from .dispatch import Request
from .errors import BadRequest, GamenetError, Refused, RouteNotFound, Timeout, Unavailable
from .global_channel import GlobalChannel, GlobalChannelService
from .hooks import DROP
from .http import http_controller, http_handler, http_hook, http_object
from .interfaces import (
    IComponent,
    IFilter,
    IHandler,
    IRegistration,
    IRemote,
    IRouter,
    ISessionLearner,
    IStorageHandler,
)
from .session import Session, SessionService

__version__ = "0.1.0"

__all__ = [
    "DROP",
    "Application",
    "BadRequest",
    "Channel",
    "ChannelService",
    "ClusterConfig",
    "Component",
    "ConfigError",
    "FrontendOptions",
    "GamenetError",
    "GlobalChannel",
    "GlobalChannelService",
    "Handler",
    "IComponent",
    "IFilter",
    "IHandler",
    "IRegistration",
    "IRemote",
    "IRouter",
    "ISessionLearner",
    "IStorageHandler",
    "Refused",
    "Registration",
    "Remote",
    "Request",
    "RouteNotFound",
    "ServerConfig",
    "Session",
    "SessionService",
    "Timeout",
    "Unavailable",
    "configure",
    "controller",
    "cron_handler",
    "handler",
    "http_controller",
    "http_handler",
    "http_hook",
    "http_object",
    "remote",
    "route_handler",
    "session_learner",
    "storage_handler",
]
