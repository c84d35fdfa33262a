"""
The Pomelo wire protocol: a pure codec with no I/O.

L{package} frames bytes; L{message} is the body of a DATA package;
L{handshake} and L{routes} are the connection's opening; L{serializer} turns
bodies into Python values.
"""

from . import handshake, message, package, routes, serializer
from .errors import ProtocolError

__all__ = ["ProtocolError", "handshake", "message", "package", "routes", "serializer"]
