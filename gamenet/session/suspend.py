"""
Sessions that survive a dropped connection: kept suspended for
C{resume_window} seconds, their pushes held, and given back to the client
that presents its resume token, on this frontend or on another one of its
type (see C{doc/sessions.md}).

L{Resumer} is one frontend's half: it issues tokens at bind, suspends the
sessions whose connection dropped, resumes them for a new connection, and
hands them over to another frontend that asks (the C{resume_take} sys call).
The tokens themselves are L{gamenet.session.resume}.
"""

from __future__ import annotations

import base64
from collections import Counter
from typing import TYPE_CHECKING, Any, Callable

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from ..errors import GamenetError
from . import resume
from .resume import ResumeRefused, TokenError

if TYPE_CHECKING:
    from .service import SessionService
    from .session import Session

log = Logger()

RESUME_ROUTE = "gamenet.resume"
"""The push that carries a bound session's token, C{{"token": ...}}, to a client that asked for resume."""

RESUMABLE = frozenset({"connection lost", "heartbeat timeout"})
"""The close reasons that suspend a session: the network dropped, not a close anyone meant."""


class Held:
    """
    The link of a session without a connection: suspended, or arriving from
    another frontend. Pushes are encoded as the connection would (send hooks
    included) and kept, up to C{limit} bytes; the push that passes it gives
    the session up.

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
        if self.session.closed:
            return False
        self.size += len(data)
        if self.size > self.resumer.buffer:
            self.resumer.metrics["resume_buffer_full"] += 1
            self.resumer.end(self.session, "resume buffer full")
            return False
        self.packages.append(data)
        self.sent += 1
        return True

    def kick(self, reason: str) -> Deferred[None]:
        self.resumer.end(self.session, reason)
        return succeed(None)

    close = kick


class Resumer:
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
        self._taking: set[int] = set()
        # Why a token of a session that is gone is refused, by session id,
        # with until when, oldest first.
        self._ended: dict[int, tuple[str, float]] = {}
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

    def _tombstone(self, session_id: int, why: str) -> None:
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
        ended[session_id] = (why, now + max(self.window, 1.0))

    def _why_gone(self, session_id: int) -> str:
        why, until = self._ended.get(session_id, ("", 0.0))
        return why if until > self.clock.seconds() else "no session to resume"

    def stop(self, reason: str) -> None:
        """
        The frontend stops: every suspended session ends now, with C{reason}.
        """
        for session in list(self.sessions):
            if isinstance(session._link, Held) and session.id not in self._taking:
                self.end(session, reason)

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
            return
        self.metrics["resumes_expired"] += 1
        log.info("session {session_id} of {uid} not resumed within {window:g}s: it ends",
                 session_id=session.id, uid=session.uid, window=self.window)
        self.end(session, reason, "the resume window has passed")

    def end(self, session: Session, reason: str, why: str | None = None) -> None:
        """
        End a session without a connection now, as a closed one ends (close
        callbacks, learners, C{close_session}), exactly once.
        """
        held = session._link
        if isinstance(held, Held) and held.timer is not None and held.timer.active():
            held.timer.cancel()
        self._taking.discard(session.id)
        self.ended(session, why or f"the session has ended ({reason})")
        self.sessions._end(session, reason)

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
            try:
                claims = resume.verify(self._secret, token)
            except TokenError:
                raise ResumeRefused("invalid resume token") from None
            if claims.frontend_id == self.frontend_id:
                session = self._take(claims)
                self._taking.discard(session.id)
            else:
                session = await self._fetch(token, claims)
        except ResumeRefused as e:
            self.metrics["resumes_refused"] += 1
            log.info("resume refused: {reason}", reason=e.message)
            raise
        held = session._link
        if isinstance(held, Held) and held.timer is not None and held.timer.active():
            held.timer.cancel()
        self._issue(session)
        self.metrics["resumes"] += 1
        return session

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
        try:
            answer = await self._sys_call(claims.frontend_id, "resume_take", [token, self.frontend_id])
        except GamenetError as e:
            self.sessions._discard(arriving)
            if e.code == resume.REFUSED_CODE:
                raise ResumeRefused(e.message) from None
            log.warn("resume of {uid} from {frontend_id} failed: {error}", uid=claims.uid,
                     frontend_id=claims.frontend_id, error=e.message)
            raise ResumeRefused(f"the session could not be reached on {claims.frontend_id}") from None
        except Exception:
            self.sessions._discard(arriving)
            raise
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
        self.sessions.emit("resume_session", arriving, claims.frontend_id, claims.session_id)
        return arriving

    def hand_over(self, token: str, to_frontend: str) -> Deferred[dict[str, Any]]:
        """
        The C{resume_take} sys call: give the session of C{token} to
        C{to_frontend}, once. Every server's channels first move the member
        there, so that each push is held here (sent before its server moved
        it) or there (after), never both, never neither; then the session
        leaves this frontend without its close callbacks, learners or
        C{close_session}: it goes on there.

        @return: a Deferred firing with C{uid}, C{settings}, C{pushes} (the
            held packages, base64, in order) and the counters; it fails with
            L{ResumeRefused} and gives nothing when the token is not good.
        """
        return Deferred.fromCoroutine(self._hand_over(token, to_frontend))

    async def _hand_over(self, token: str, to_frontend: str) -> dict[str, Any]:
        try:
            claims = resume.verify(self._secret, token)
        except TokenError:
            raise ResumeRefused("invalid resume token") from None
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
        if session.closed or not isinstance(held, Held):
            raise ResumeRefused(self._why_gone(session.id))
        if held.timer is not None and held.timer.active():
            held.timer.cancel()
        self._taking.discard(session.id)
        self.ended(session, "the resume token was already used")
        self.sessions._leave(session)
        log.info("session {session_id} of {uid} handed over to {frontend_id} with {count} held pushes",
                 session_id=session.id, uid=uid, frontend_id=to_frontend, count=len(held.packages))
        return {
            "uid": uid, "settings": dict(session.settings),
            "pushes": [base64.b64encode(data).decode("ascii") for data in held.packages],
            "opened_at": held.opened_at, "received": held.received, "sent": held.sent,
        }

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
