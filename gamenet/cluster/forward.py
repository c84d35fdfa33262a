"""
Forwarding: a frontend sends a request or notify for another server type,
as the client sent it, with a copy of the session; the backend runs it as
its own and answers through the link.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred

from ..errors import GamenetError
from ..protocol import serializer
from ..protocol.message import NOTIFY, REQUEST, Message
from . import wire
from .backend import BackendSession

if TYPE_CHECKING:
    from .service import ClusterNode


class _ForwardResponder:
    """
    Turns the backend dispatcher's answer into the result of a node call.
    """

    __slots__ = ("d",)

    def __init__(self) -> None:
        self.d: Deferred[bytes] = Deferred()

    def respond(self, id: int, value: Any, error: GamenetError | None = None) -> None:
        if error is not None:
            self.d.errback(error)
        else:
            self.d.callback(value if isinstance(value, bytes) else serializer.dumps(value))


class _NoResponse:
    @staticmethod
    def respond(id: int, value: Any, error: GamenetError | None = None) -> None:
        pass


class Forwarder:
    """
    The dispatcher's handler for a route of another server type: picks a
    server with that type's route function and forwards the message as received.
    """

    raw = True

    def __init__(self, node: ClusterNode, server_type: str) -> None:
        self.node = node
        self.server_type = server_type

    def __call__(self, message: Message, session: Any) -> Deferred[bytes] | None:
        server = self.node.pick(self.server_type, session, message.route, message.body)
        link = self.node.links[server.id]
        payload = wire.encode_forward(message.route, session.export(), message.body)
        if message.type == NOTIFY:
            link.send(wire.NOTIFY, payload)
            return None
        return link.call(wire.FORWARD, payload, message.route)


def run_forwarded(node: ClusterNode, kind: int, payload: bytes) -> Deferred[bytes] | None:
    """
    Run a message forwarded to this server (C{wire.FORWARD} or C{wire.NOTIFY}).

    @return: a Deferred firing with the encoded answer of a request; C{None} for a notify.
    """
    route, data, body = wire.decode_forward(payload)
    session = BackendSession(data, node.backend_sessions)
    if kind == wire.NOTIFY:
        node.app.dispatcher.dispatch(_NoResponse, session, Message(NOTIFY, 0, route, body))
        return None
    responder = _ForwardResponder()
    node.app.dispatcher.dispatch(responder, session, Message(REQUEST, 1, route, body))
    return responder.d
