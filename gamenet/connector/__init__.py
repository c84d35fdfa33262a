"""
Connectors: how clients reach a frontend. WebSocket (Autobahn), raw TCP, both
on one port (hybrid), each with optional TLS, behind one L{Connection} state machine.
"""

from .connection import Connection, State
from .frontend import Frontend
from .listener import ClientListener, ListenError, client_factory

__all__ = ["ClientListener", "Connection", "Frontend", "ListenError", "State", "client_factory"]
