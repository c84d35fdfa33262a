"""
The states of a client connection, and its first phase: from the client's
handshake, through the application's validators and a resume, to the
client's ack. Mixed into L{gamenet.connector.connection.Connection}.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from .._settle import settle
from ..errors import GamenetError
from ..protocol import handshake, package
from ..protocol.errors import ProtocolError

if TYPE_CHECKING:
    from ..session import Session
    from .connection import Connection

log = Logger()


class State(enum.IntEnum):
    """
    Where a connection is in its life.
    """

    HANDSHAKE = 0
    VALIDATING = 1
    WAIT_ACK = 2
    WORKING = 3
    CLOSED = 4


class Handshaking:
    """
    L{Connection}'s handshake: parse it, run the validators, resume a
    session or answer, refuse with a code, and take the ack.
    """

    __slots__ = ()

    def _on_handshake(self: Connection, body: bytes) -> None:
        try:
            request = handshake.parse_request(body)
        except ProtocolError as e:
            self._refuse(handshake.CODE_USE_ERROR, str(e))
            return
        validators = self.frontend.handshake_validators
        if not validators:
            self._accept(request, None)
            return
        self.state = State.VALIDATING
        d = Deferred.fromCoroutine(self._validate(request, validators))
        d.addErrback(lambda f: log.failure("handshake validation crashed", f))

    async def _validate(self: Connection, request: handshake.HandshakeRequest, validators: list[Any]) -> None:
        user = None
        try:
            for validator in validators:
                result = await settle(validator(request))
                if result is not None:
                    user = result
        except GamenetError as e:
            self._refuse(e.code, e.message)
            return
        except Exception:
            log.failure("handshake validator failed for {peer}", peer=self.link.peer)
            self._refuse(handshake.CODE_USE_ERROR, "handshake failed")
            return
        if self.state is not State.CLOSED and not self._close_reason:
            self._accept(request, user)

    def _accept(self: Connection, request: handshake.HandshakeRequest, user: Any) -> None:
        resumer = self.frontend.sessions.resumer
        wanted = resumer.wanted(request.user) if resumer is not None else None
        self.resumable = wanted is not None
        if isinstance(wanted, str):
            # The session comes back (see gamenet.session.suspend), or the handshake is refused.
            self.state = State.VALIDATING
            resumer.resume(wanted).addCallbacks(  # type: ignore[union-attr]
                self._resumed, self._resume_refused, callbackArgs=(request, user))
            return
        self._answer(request, user)

    def _resumed(self: Connection, session: Session, request: handshake.HandshakeRequest, user: Any) -> None:
        if self.state is State.CLOSED or self._close_reason:
            self.frontend.sessions.closed(session, "connection lost")
            return
        self.session = session
        answer = {"resumed": True, "uid": session.uid, "token": session.resume_token}
        self._answer(request, {**user, **answer} if isinstance(user, dict) else answer)

    def _resume_refused(self: Connection, failure: Any) -> None:
        error = failure.value
        if not isinstance(error, GamenetError):
            log.failure("resume failed for {peer}", failure, peer=self.link.peer)
            error = GamenetError("resume failed", 410)
        self._refuse(error.code, error.message)

    def _answer(self: Connection, request: handshake.HandshakeRequest, user: Any) -> None:
        self.pitaya = request.pitaya
        self.state = State.WAIT_ACK
        self.write(package.encode(package.HANDSHAKE, self.frontend.responder.accept(request, user)))

    def _refuse(self: Connection, code: int, reason: str) -> None:
        if self.closing:
            return
        self.frontend.metrics["handshakes_refused"] += 1
        log.info("handshake from {peer} refused ({code}): {reason}", peer=self.link.peer, code=code, reason=reason)
        self.write(package.encode(package.HANDSHAKE, handshake.refuse(code, reason)))
        self.close(f"handshake refused: {reason}")

    def _on_ack(self: Connection) -> None:
        self.state = State.WORKING
        sessions = self.frontend.sessions
        if self.session is None:
            self.session = sessions.create(self, self.link.peer, self.link.transport_name)
            self.session.resumable = self.resumable
        elif sessions.resumer is not None:
            sessions.resumer.attach(self.session, self)
        if self.frontend.options.heartbeat:
            self.write(package.HEARTBEAT_PACKAGE)
