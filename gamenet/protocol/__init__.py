"""
The Pomelo wire protocol: a pure codec with no I/O.

L{package} frames bytes; L{message} is the body of a DATA package;
L{handshake} and L{routes} are the connection's opening; L{serializer} turns
bodies into Python values, and L{protobuf} does for the routes that have a
protobuf schema.
"""

from . import handshake, message, package, protobuf, routes, serializer
from .errors import ProtobufError, ProtocolError

__all__ = ["ProtobufError", "ProtocolError", "handshake", "message", "package", "protobuf", "routes", "serializer"]
