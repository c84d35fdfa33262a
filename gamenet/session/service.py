"""
The frontend's sessions: lookup, kick, send and broadcast.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any, Callable, Iterator

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.logger import Logger

from .keeper import SettingsKeeper
from .session import ClientLink, Session

if TYPE_CHECKING:
    from ..interfaces import ISessionLearner
    from .suspend import Resumer

log = Logger()


class SessionService:
    """
    Every session of one frontend.

    @ivar single_session: when true, binding a uid that another session of
        this frontend holds kicks that older session with reason C{"replaced"}.
    @ivar learners: told of every session that opens and closes.
    @ivar keeper: stores bound sessions' settings, when the cluster has storage.
    @ivar unique: with C{unique_session = cluster}, the
        L{UniqueSessions <gamenet.session.unique.UniqueSessions>} every bind
        goes through; C{None} otherwise.
    @ivar encode_push: set by the connector: encodes a push once for many
        sessions, or returns C{None} when send hooks apply to the route.
    @ivar emit: called as C{emit(event, *args)} for C{bind_session},
        C{unbind_session}, C{close_session} and C{resume_session}.
    @ivar resumer: suspends dropped sessions and resumes them (see
        L{gamenet.session.suspend}), when the frontend is wired; else C{None}.
    """

    def __init__(
        self,
        frontend_id: str,
        single_session: bool = False,
        emit: Callable[..., None] = lambda event, *args: None,
    ) -> None:
        self.frontend_id = frontend_id
        self.single_session = single_session
        self.learners: list[ISessionLearner] = []
        self.emit = emit
        self._sessions: dict[int, Session] = {}
        self._by_uid: dict[str, list[Session]] = {}
        self._ids = itertools.count(1)
        self.encode_push: Callable[[str, Any], bytes | None] | None = None
        self.keeper: SettingsKeeper | None = None
        self.unique: Any = None
        self.resumer: Resumer | None = None

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._sessions.values()))

    @property
    def bound_count(self) -> int:
        """
        The number of sessions bound to a uid.
        """
        return sum(len(sessions) for sessions in self._by_uid.values())

    def create(self, link: ClientLink, remote_address: tuple[str, int], transport: str) -> Session:
        """
        A new session for a connection that finished the handshake.
        """
        session = Session(next(self._ids), self.frontend_id, link, self, remote_address, transport)
        self._sessions[session.id] = session
        for learner in self.learners:
            try:
                learner.on_connect(session)
            except Exception:
                log.failure("session learner {learner!r} failed on connect", learner=learner)
        return session

    def closed(self, session: Session, reason: str) -> None:
        """
        The session's connection closed: suspend it when it can be resumed,
        else end it: forget it and tell everyone.
        """
        if self._sessions.get(session.id) is not session:
            return
        if self.resumer is not None and self.resumer.suspend(session, reason):
            return
        self._end(session, reason)

    def _end(self, session: Session, reason: str) -> None:
        if self._detach(session):
            self._ended(session, reason)

    def _ended(self, session: Session, reason: str) -> None:
        """
        Tell everyone that a session no longer here has ended: its close
        callbacks, learners and C{close_session}.
        """
        if self.resumer is not None:
            self.resumer.ended(session)
        session._closed(reason)
        for learner in self.learners:
            try:
                learner.on_disconnect(session, reason)
            except Exception:
                log.failure("session learner {learner!r} failed on disconnect", learner=learner)
        self.emit("close_session", session, reason)

    def _adopt(self, uid: str, make_link: Callable[[Session], ClientLink]) -> Session:
        """
        A session of C{uid} arriving from another frontend, with the link
        C{make_link} gives it until its connection is attached; learners
        are not told (it is not a new session).
        """
        session = Session(next(self._ids), self.frontend_id, None, self)  # type: ignore[arg-type]
        session._link = make_link(session)
        session.uid = uid
        self._sessions[session.id] = session
        self._by_uid.setdefault(uid, []).append(session)
        return session

    def _discard(self, session: Session) -> None:
        """
        Forget an adopted session that did not arrive, silently.
        """
        self._leave(session, "not resumed")

    def _leave(self, session: Session, reason: str = "resumed elsewhere") -> None:
        """
        Forget a session that goes on elsewhere: no close callback, learner
        or C{close_session} is told (it has not ended).
        """
        if self._detach(session):
            self._gone(session, reason)

    def _detach(self, session: Session) -> bool:
        """
        Forget a session here (by id and uid), telling no one; whether it was here.
        """
        if self._sessions.pop(session.id, None) is None:
            return False
        if session.uid is not None:
            self._forget_uid(session)
        return True

    def _gone(self, session: Session, reason: str) -> None:
        """
        A detached session goes on elsewhere: it is closed here, its close callbacks dropped.
        """
        session._close_callbacks.clear()
        session.closed = True
        session.close_reason = reason

    def get(self, session_id: int) -> Session | None:
        """
        The session with that id, or C{None}.
        """
        return self._sessions.get(session_id)

    def get_by_uid(self, uid: str) -> list[Session]:
        """
        The sessions bound to C{uid} (empty when none).
        """
        return list(self._by_uid.get(uid, ()))

    def kick(self, uid: str, reason: str = "kick") -> Deferred[Any]:
        """
        Kick every session bound to C{uid}; fires when all are closed.
        """
        return DeferredList([session.kick(reason) for session in self.get_by_uid(uid)])

    def kick_by_session_id(self, session_id: int, reason: str = "kick") -> Deferred[None]:
        """
        Kick one session; fires when it is closed (at once if there is none).
        """
        session = self._sessions.get(session_id)
        return session.kick(reason) if session is not None else succeed(None)

    def send_message(self, session_id: int, route: str, msg: Any) -> bool:
        """
        Push to one session; C{False} when there is no such session.
        """
        session = self._sessions.get(session_id)
        return session is not None and session.send(route, msg)

    def send_message_by_uid(self, uid: str, route: str, msg: Any) -> int:
        """
        Push to every session of C{uid}; returns how many were sent.
        """
        return sum(session.send(route, msg) for session in self.get_by_uid(uid))

    def broadcast(self, route: str, msg: Any, only_bound: bool = False,
                  accept: Callable[[Session], Any] | None = None) -> int:
        """
        Push to every session (or every bound one) of this frontend; with
        C{accept}, to those it answers true for.

        @return: how many sessions it was written to.
        """
        sessions = [s for s in self._sessions.values() if (not only_bound or s.uid is not None)
                    and (accept is None or accept(s))]
        return len(sessions) - len(self.push_to(sessions, route, msg))

    def push_to(self, sessions: list[Session], route: str, msg: Any) -> list[Session]:
        """
        Push one message to several sessions, encoded once when no send hook
        needs to see each session.

        @return: the sessions it could not be written to (closed, or dropped
            as slow consumers by this write).
        """
        data = self.encode_push(route, msg) if self.encode_push is not None else None
        if data is None:
            return [session for session in sessions if not session.send(route, msg)]
        return [session for session in sessions if not session._link.write(data)]

    def _bind(self, session: Session, uid: str) -> Deferred[None]:
        if self.unique is not None:
            return self.unique.bind(session, uid)
        if self.single_session:
            for other in self.get_by_uid(uid):
                other.kick("replaced")
        return self._bound(session, uid)

    def _bound(self, session: Session, uid: str) -> Deferred[None]:
        session.uid = uid
        self._by_uid.setdefault(uid, []).append(session)
        if self.resumer is not None:
            self.resumer.bound(session)
        return Deferred.fromCoroutine(self._restore(session, uid))

    async def _restore(self, session: Session, uid: str) -> None:
        if self.keeper is not None:
            await self.keeper.restore(session)
        self.emit("bind_session", session, uid)

    def _unbind(self, session: Session) -> Deferred[None]:
        uid = session.uid
        assert uid is not None
        self._forget_uid(session)
        session.uid = None
        if self.resumer is not None:
            self.resumer.ended(session, "the session was unbound")
        self.emit("unbind_session", session, uid)
        return self.keeper.forget(session, uid) if self.keeper is not None else succeed(None)

    def _forget_uid(self, session: Session) -> None:
        if self.unique is not None:
            self.unique.released(session)
        sessions = self._by_uid.get(session.uid, [])  # type: ignore[arg-type]
        if session in sessions:
            sessions.remove(session)
        if not sessions:
            self._by_uid.pop(session.uid, None)  # type: ignore[arg-type]

    def _commit(self, session: Session) -> Deferred[None]:
        return self.keeper.changed(session) if self.keeper is not None else succeed(None)
