"""
Sessions that survive a dropped connection: kept suspended for
C{resume_window} seconds, their pushes held, and given back to the client
that presents its resume token, on this frontend or on another one of its
type (see C{doc/sessions.md}).

L{Resumer} is one frontend's half: it issues tokens at bind, suspends the
sessions whose connection dropped, resumes them for a new connection, and
hands them over to another frontend that asks (the C{resume_take} sys call,
then C{resume_settle}: whether the session arrived; that giving end is
L{gamenet.session.handover}). The tokens themselves are
L{gamenet.session.resume}; the link of a session without a connection is
L{gamenet.session.held.Held}.
"""

from __future__ import annotations

import base64
from collections import Counter
from typing import TYPE_CHECKING, Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.logger import Logger

from ..errors import GamenetError
from . import resume
from .handover import CONFIRM_WITHIN, HandOver
from .held import Held, stop_window
from .resume import ResumeRefused, TokenError

if TYPE_CHECKING:
    from .service import SessionService
    from .session import Session

log = Logger()

RESUME_ROUTE = "gamenet.resume"
"""The push that carries a bound session's token, C{{"token": ...}}, to a client that asked for resume."""

RESUMABLE = frozenset({"connection lost", "heartbeat timeout"})
"""The close reasons that suspend a session: the network dropped, not a close anyone meant."""

CONFIRM_RETRY = 5.0
"""Seconds between a new frontend's tries to tell the old one whether it took a session."""


class Resumer(HandOver):
    """
    Resume tokens, suspended sessions and hand-overs of one frontend.

    @ivar window: C{resume_window}: seconds a dropped session waits; 0, none does.
    @ivar buffer: C{resume_buffer}: bytes of pushes held for one session.
    @ivar encode: set by the connector: C{encode(session, route, msg)}, a
        push as the session's connection would write it, or C{None} when a
        send hook dropped it.
    @ivar metrics: counters C{resumes}, C{resumes_refused},
        C{resumes_expired}, C{resume_buffer_full}, C{suspended} (the
        connector makes them its frontend's, exported with them).
    """

    def __init__(self, sessions: SessionService, secret: str, window: float, buffer: int, clock: Any,
                 same_type: Callable[[str], bool] = lambda frontend_id: False,
                 sys_call: Callable[[str, str, list[Any]], Deferred[Any]] | None = None,
                 move: Callable[[str, str, str], Deferred[Any]] | None = None) -> None:
        """
        @param same_type: whether a frontend id is one of this frontend's type.
        @param sys_call: C{sys_call(frontend_id, name, args)}: a call to another frontend's sys remote.
        @param move: C{move(uid, from_id, to_id)}: every server's channels move
            the member C{uid} from one frontend to the other; fires once each
            server has, and every push it sent to C{from_id} before has arrived.
        """
        self.sessions = sessions
        self.frontend_id = sessions.frontend_id
        self._secret = secret
        self.window = window
        self.buffer = buffer
        self.clock = clock
        self._same_type = same_type
        self._sys_call = sys_call
        self._move = move
        self.encode: Callable[[Session, str, Any], bytes | None] | None = None
        self.metrics: Counter[str] = Counter()
        self._nonces: dict[int, str] = {}
        # Sessions being taken (here, or handed over) or arriving from another frontend.
        self._taking: set[int] = set()
        # Why a session being taken or arriving is given up once that is done.
        self._failed: dict[int, str] = {}
        # Sessions handed over until their new frontend says it took them:
        # (session, new frontend id, the deadline's call).
        self._handed: dict[int, tuple[Session, str, Any]] = {}
        # Why a token of a session that is gone is refused and where it went
        # on (if it did), by session id, with until when, oldest first.
        self._ended: dict[int, tuple[str, float, str]] = {}
        sessions.resumer = self

    # Tokens

    def wanted(self, user: Any) -> Any:
        """
        What a handshake's C{user} asks of resume: C{True} (send me tokens),
        a token string (resume), or C{None}.
        """
        value = user.get("resume") if isinstance(user, dict) else None
        return value if value is True or isinstance(value, str) else None

    def bound(self, session: Session) -> None:
        """
        C{session} was bound: give it a token, pushed to its client when it asked.
        """
        self._issue(session)
        if session.resumable:
            session.send(RESUME_ROUTE, {"token": session.resume_token})

    def _issue(self, session: Session) -> None:
        nonce = self._nonces[session.id] = resume.new_nonce()
        session.resume_token = resume.issue(self._secret, self.frontend_id, session.id, session.uid or "", nonce)

    def ended(self, session: Session, why: str = "the session has ended") -> None:
        """
        C{session} is unbound or ends: its tokens are good no more.
        """
        if self._nonces.pop(session.id, None) is not None:
            self._tombstone(session.id, why)
        session.resume_token = None

    def _tombstone(self, session_id: int, why: str, went_to: str = "") -> None:
        # Kept for as long as a client could still be trying; then "no
        # session to resume". Pruned as new ones come: no timer.
        now = self.clock.seconds()
        ended = self._ended
        while ended:
            oldest = next(iter(ended))
            if ended[oldest][1] > now:
                break
            del ended[oldest]
        ended.pop(session_id, None)
        ended[session_id] = (why, now + max(self.window, CONFIRM_WITHIN), went_to)

    def _why_gone(self, session_id: int) -> str:
        why, until, _ = self._ended.get(session_id, ("", 0.0, ""))
        return why if until > self.clock.seconds() else "no session to resume"

    def stop(self, reason: str) -> None:
        """
        The frontend stops: every suspended session ends with C{reason},
        now, or once the hand-over it is part of is done.
        """
        for session in list(self.sessions):
            if isinstance(session._link, Held):
                self.give_up(session, reason)
        for session_id in list(self._handed):
            self.settle(session_id, self._handed[session_id][1], False, reason)

    # Suspending

    def suspend(self, session: Session, reason: str) -> bool:
        """
        Keep C{session}, whose connection closed for C{reason}, for the
        window, when it can be resumed: bound, its client asked for resume,
        and the connection dropped rather than closed.

        @return: whether it is suspended (else it ends now).
        """
        if not (self.window and session.resumable and reason in RESUMABLE and session.id in self._nonces):
            return False
        link = session._link
        # A session resumed whose new connection closed before the ack keeps what it holds.
        held = link if isinstance(link, Held) else Held(self, session, link.opened_at, link.received, link.sent)
        held.timer = self.clock.callLater(self.window, self._expire, session, reason)
        session._link = held
        self.metrics["suspended"] += 1
        log.info("session {session_id} of {uid} suspended ({reason}); resumable for {window:g}s",
                 session_id=session.id, uid=session.uid, reason=reason, window=self.window)
        return True

    def _expire(self, session: Session, reason: str) -> None:
        if session.id in self._taking:
            return  # taken before the window passed: it is resumed, or ends when that fails
        self.metrics["resumes_expired"] += 1
        log.info("session {session_id} of {uid} not resumed within {window:g}s: it ends",
                 session_id=session.id, uid=session.uid, window=self.window)
        self.end(session, reason, "the resume window has passed")

    def end(self, session: Session, reason: str, why: str | None = None) -> None:
        """
        End a session without a connection now, as a closed one ends (close
        callbacks, learners, C{close_session}), exactly once.
        """
        stop_window(session)
        self._taking.discard(session.id)
        self._failed.pop(session.id, None)
        self.ended(session, why or f"the session has ended ({reason})")
        self.sessions._end(session, reason)

    def giving_up(self, session: Session) -> bool:
        """
        Whether C{session} is given up once its hand-over is done (see L{give_up}).
        """
        return session.id in self._failed

    def give_up(self, session: Session, reason: str) -> None:
        """
        End a session without a connection (kicked, its buffer passed, the
        frontend stops): now, or when it is being taken or arriving, once
        that is done, by whoever does it.
        """
        if session.id in self._taking:
            self._failed.setdefault(session.id, reason)
        else:
            self.end(session, reason)

    # Resuming

    def resume(self, token: str) -> Deferred[Session]:
        """
        The session of C{token} for a new connection, taken from wherever it
        is: a L{Held} link with its pushes, to L{attach} once the handshake
        is acked. A session of this frontend that still has a connection
        loses it (the client is on a new network).

        @return: a Deferred firing with the session; it fails with
            L{ResumeRefused}, naming why, and nothing of any session.
        """
        return Deferred.fromCoroutine(self._resume(token))

    async def _resume(self, token: str) -> Session:
        try:
            if not self.window:
                raise ResumeRefused("resume is off on this server")
            claims = self._verify(token)
            if claims.frontend_id == self.frontend_id:
                session = self._take(claims)
                self._taking.discard(session.id)
            else:
                session = await self._fetch(token, claims)
        except ResumeRefused as e:
            self.metrics["resumes_refused"] += 1
            log.info("resume refused: {reason}", reason=e.message)
            raise
        stop_window(session)
        self._issue(session)
        self.metrics["resumes"] += 1
        return session

    def _verify(self, token: str) -> resume.Claims:
        try:
            return resume.verify(self._secret, token)
        except TokenError:
            raise ResumeRefused("invalid resume token") from None

    def _take(self, claims: resume.Claims) -> Session:
        """
        Session C{claims.session_id} of this frontend, now held and marked
        being taken, when the token is its current one.

        @raise ResumeRefused: it is not.
        """
        session = self.sessions.get(claims.session_id)
        if session is None or session.closed:
            raise ResumeRefused(self._why_gone(claims.session_id))
        if (session.id in self._taking or session.uid != claims.uid
                or self._nonces.get(session.id) != claims.nonce):
            raise ResumeRefused("the resume token was already used")
        self._taking.add(session.id)
        # Good once: the next token is issued when the resume is done.
        self._nonces[session.id] = resume.new_nonce()
        link = session._link
        if not isinstance(link, Held):
            connection = link
            session._link = Held(self, session, link.opened_at, link.received, link.sent)
            connection.session = None  # type: ignore[attr-defined]
            connection.kick("resumed elsewhere")
        return session

    async def _fetch(self, token: str, claims: resume.Claims) -> Session:
        if not self._same_type(claims.frontend_id) or self._sys_call is None:
            raise ResumeRefused("invalid resume token")
        arriving = self.sessions._adopt(claims.uid, lambda session: Held(self, session))
        arriving.resumable = True
        self._taking.add(arriving.id)
        try:
            answer = await self._sys_call(claims.frontend_id, "resume_take", [token, self.frontend_id])
        except Exception as e:
            self._drop(arriving)
            if isinstance(e, GamenetError) and e.code == resume.REFUSED_CODE:
                raise ResumeRefused(e.message) from None
            # The holder may still hand it over: it is told the session did not arrive, and ends it.
            self._confirm(claims.frontend_id, claims.session_id, None)
            log.warn("resume of {uid} from {frontend_id} failed: {error}", uid=claims.uid,
                     frontend_id=claims.frontend_id, error=e)
            raise ResumeRefused(f"the session could not be reached on {claims.frontend_id}") from None
        failed = self._failed.get(arriving.id)
        if failed is not None:
            self._drop(arriving)
            self._confirm(claims.frontend_id, claims.session_id, None, failed)
            raise ResumeRefused(f"the session has ended ({failed})")
        self._taking.discard(arriving.id)
        held = arriving._link
        assert isinstance(held, Held)
        arriving.settings.update(answer["settings"])
        earlier = [base64.b64decode(data) for data in answer["pushes"]]
        held.packages[:0] = earlier
        held.size += sum(map(len, earlier))
        held.opened_at, held.received, held.sent = answer["opened_at"], answer["received"], answer["sent"]
        log.info("session of {uid} resumed here from {frontend_id} with {count} held pushes", uid=claims.uid,
                 frontend_id=claims.frontend_id, count=len(held.packages))
        if self.sessions.unique is not None:
            # The holder released the uid as it handed the session over.
            self.sessions.unique.adopted(arriving)
        self._confirm(claims.frontend_id, claims.session_id, arriving)
        self.sessions.emit("resume_session", arriving, claims.frontend_id, claims.session_id)
        return arriving

    def _drop(self, arriving: Session) -> None:
        self._taking.discard(arriving.id)
        self._failed.pop(arriving.id, None)
        self.sessions._discard(arriving)

    def _confirm(self, frontend_id: str, session_id: int, arriving: Session | None,
                 reason: str = "the resume did not complete") -> None:
        """
        Tell the frontend that handed session C{session_id} over whether it
        arrived here (C{arriving}) or not (C{None}: it ends there, with
        C{reason}), trying again until it answers or half its wait has
        passed. When it answers that the session ended there meanwhile, the
        arrived copy leaves here, silently.
        """
        Deferred.fromCoroutine(self._tell(frontend_id, session_id, arriving, reason))

    async def _tell(self, frontend_id: str, session_id: int, arriving: Session | None, reason: str) -> None:
        assert self._sys_call is not None
        give_up_at = self.clock.seconds() + CONFIRM_WITHIN / 2
        while True:
            try:
                kept = await self._sys_call(frontend_id, "resume_settle",
                                            [session_id, self.frontend_id, arriving is not None, reason])
                break
            except Exception as e:
                if self.clock.seconds() + CONFIRM_RETRY > give_up_at:
                    log.warn("{frontend_id} was not told whether session {session_id} arrived: {error}",
                             frontend_id=frontend_id, session_id=session_id, error=e)
                    kept = False
                    break
                await deferLater(self.clock, CONFIRM_RETRY)
        if arriving is not None and not kept and not arriving.closed:
            log.warn("session {session_id} of {uid} ended on {frontend_id} before it was confirmed here",
                     session_id=arriving.id, uid=arriving.uid, frontend_id=frontend_id)
            self.sessions._leave(arriving, "resume failed")
            arriving._link.kick("resume failed")

    def attach(self, session: Session, connection: Any) -> None:
        """
        Give a resumed session its new connection (handshake acked): the
        held pushes first, in order, then live.
        """
        held = session._link
        session._link = connection
        session.remote_address = connection.link.peer
        session.transport = connection.link.transport_name
        if isinstance(held, Held) and held.packages:
            connection.write(b"".join(held.packages))
