"""
The giving end of a hand-over: a frontend gives one of its sessions to
another frontend of its type that holds the session's resume token (the
C{resume_take} sys call), then learns whether it arrived there
(C{resume_settle}). Mixed into L{gamenet.session.suspend.Resumer}, which
keeps the state both ends share.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from .held import Held, stop_window
from .resume import ResumeRefused

if TYPE_CHECKING:
    from .session import Session
    from .suspend import Resumer

log = Logger()

CONFIRM_WITHIN = 60.0
"""Seconds a frontend keeps a session it handed over until the new one says it took it; then it ends."""


class HandOver:
    """
    L{Resumer}'s calls of the frontend that holds a session and gives it away.
    """

    def hand_over(self: Resumer, token: str, to_frontend: str) -> Deferred[dict[str, Any]]:
        """
        The C{resume_take} sys call: give the session of C{token} to
        C{to_frontend}, once. Every server's channels first move the member
        there, so that each push is held here (sent before its server moved
        it) or there (after), never both, never neither; then the session
        is found here no more, and kept until C{to_frontend} says whether
        it arrived (L{settle}). When it is given up meanwhile (kicked, its
        buffer passed, unbound, this frontend stops), the members move
        back, it ends here and the call is refused.

        @return: a Deferred firing with C{uid}, C{settings}, C{pushes} (the
            held packages, base64, in order) and the counters; it fails with
            L{ResumeRefused} and gives nothing when the token is not good.
        """
        return Deferred.fromCoroutine(self._hand_over(token, to_frontend))

    async def _hand_over(self: Resumer, token: str, to_frontend: str) -> dict[str, Any]:
        claims = self._verify(token)
        if claims.frontend_id != self.frontend_id or not self._same_type(to_frontend):
            raise ResumeRefused("invalid resume token")
        try:
            session = self._take(claims)
        except ResumeRefused as e:
            self.metrics["resumes_refused"] += 1
            log.info("resume from {frontend_id} refused: {reason}", frontend_id=to_frontend, reason=e.message)
            raise
        uid = session.uid
        assert uid is not None
        if self._move is not None:
            try:
                await self._move(uid, self.frontend_id, to_frontend)
            except Exception as e:
                log.warn("channels did not all move {uid} to {frontend_id}: {error}", uid=uid,
                         frontend_id=to_frontend, error=e)
        held = session._link
        failed = self._failed.get(session.id) or ("the session was unbound" if session.uid != uid else None)
        if failed is not None or not isinstance(held, Held):
            if self._move is not None:
                await self._undo(uid, to_frontend)
            self.end(session, failed or "resume failed")
            raise ResumeRefused(self._why_gone(session.id))
        stop_window(session)
        self._taking.discard(session.id)
        self.ended(session, "the resume token was already used")
        # Kept, found no more, until the new frontend says whether it took it.
        self.sessions._detach(session)
        deadline = self.clock.callLater(CONFIRM_WITHIN, self.settle, session.id, to_frontend, False,
                                        "the resume was not confirmed")
        self._handed[session.id] = (session, to_frontend, deadline)
        log.info("session {session_id} of {uid} handed over to {frontend_id} with {count} held pushes",
                 session_id=session.id, uid=uid, frontend_id=to_frontend, count=len(held.packages))
        return {
            "uid": uid, "settings": dict(session.settings),
            "pushes": [base64.b64encode(data).decode("ascii") for data in held.packages],
            "opened_at": held.opened_at, "received": held.received, "sent": held.sent,
        }

    async def _undo(self: Resumer, uid: str, to_frontend: str) -> None:
        assert self._move is not None
        try:
            await self._move(uid, to_frontend, self.frontend_id)
        except Exception as e:
            log.warn("channels did not all move {uid} back from {frontend_id}: {error}", uid=uid,
                     frontend_id=to_frontend, error=e)

    def settle(self: Resumer, session_id: int, to_frontend: str, arrived: bool,
               reason: str = "the resume did not complete") -> Deferred[bool]:
        """
        The C{resume_settle} sys call: whether the session handed over to
        C{to_frontend} arrived there. If it did, it leaves this frontend
        without ending (it goes on there); if not, or when no word came
        within L{CONFIRM_WITHIN}, its channel members are moved back and it
        ends here with C{reason}, its close callbacks and learners told,
        once. A session still being taken ends once that is done. Asked
        again, the answer is the same.

        @return: a Deferred firing with whether the session goes on at C{to_frontend}.
        """
        handed = self._handed.get(session_id)
        if handed is None or handed[1] != to_frontend:
            if not arrived and session_id in self._taking:
                self._failed.setdefault(session_id, reason)
            return succeed(self._ended.get(session_id, ("", 0.0, ""))[2] == to_frontend)
        session, _, deadline = self._handed.pop(session_id)
        if deadline.active():
            deadline.cancel()
        if arrived:
            self.sessions._gone(session, "resumed elsewhere")
            self._tombstone(session_id, "the resume token was already used", to_frontend)
            return succeed(True)
        return Deferred.fromCoroutine(self._end_handed(session, to_frontend, reason))

    async def _end_handed(self: Resumer, session: Session, to_frontend: str, reason: str) -> bool:
        log.info("session {session_id} of {uid} did not arrive on {frontend_id}: it ends ({reason})",
                 session_id=session.id, uid=session.uid, frontend_id=to_frontend, reason=reason)
        if self._move is not None and session.uid is not None:
            await self._undo(session.uid, to_frontend)
        self._tombstone(session.id, f"the session has ended ({reason})")
        self.sessions._ended(session, reason)
        return False
