"""
The link of a session without a connection (see L{gamenet.session.suspend}).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, succeed

if TYPE_CHECKING:
    from .session import Session
    from .suspend import Resumer


class Held:
    """
    The link of a session without a connection: suspended, or arriving from
    another frontend. Pushes are encoded as the connection would (send hooks
    included) and kept, up to C{resume_buffer} bytes; the push that passes
    it gives the session up (once the hand-over it is part of is done, when
    there is one).

    @ivar timer: the call that ends it when its resume window passes.

    @ivar packages: the encoded pushes, in order.
    @ivar size: their bytes.
    """

    def __init__(self, resumer: Resumer, session: Session, opened_at: float = 0.0, received: int = 0,
                 sent: int = 0) -> None:
        self.resumer = resumer
        self.session = session
        self.opened_at = opened_at
        self.received = received
        self.sent = sent
        self.packages: list[bytes] = []
        self.size = 0
        self.timer: Any = None

    def push(self, route: str, msg: Any) -> bool:
        encode = self.resumer.encode
        data = encode(self.session, route, msg) if encode is not None else None
        return data is not None and self.write(data)

    def write(self, data: bytes) -> bool:
        if self.session.closed or self.resumer.giving_up(self.session):
            return False
        self.size += len(data)
        if self.size > self.resumer.buffer:
            self.resumer.metrics["resume_buffer_full"] += 1
            self.resumer.give_up(self.session, "resume buffer full")
            return False
        self.packages.append(data)
        self.sent += 1
        return True

    def kick(self, reason: str) -> Deferred[None]:
        self.resumer.give_up(self.session, reason)
        return succeed(None)

    close = kick


def stop_window(session: Session) -> None:
    """
    Stop the resume window of C{session}, when it is held and has one running.
    """
    held = session._link
    if isinstance(held, Held) and held.timer is not None and held.timer.active():
        held.timer.cancel()
