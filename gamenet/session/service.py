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

log = Logger()


class SessionService:
    """
    Every session of one frontend.

    @ivar single_session: when true, binding a uid that another session of
        this frontend holds kicks that older session with reason C{"replaced"}.
    @ivar learners: told of every session that opens and closes.
    @ivar keeper: stores bound sessions' settings, when the cluster has storage.
    @ivar encode_push: set by the connector: encodes a push once for many
        sessions, or returns C{None} when send hooks apply to the route.
    @ivar emit: called as C{emit(event, *args)} for C{bind_session},
        C{unbind_session} and C{close_session}.
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
        The session's connection closed: forget it and tell everyone.
        """
        if self._sessions.pop(session.id, None) is None:
            return
        if session.uid is not None:
            self._forget_uid(session)
        session._closed(reason)
        for learner in self.learners:
            try:
                learner.on_disconnect(session, reason)
            except Exception:
                log.failure("session learner {learner!r} failed on disconnect", learner=learner)
        self.emit("close_session", session, reason)

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
        if self.single_session:
            for other in self.get_by_uid(uid):
                other.kick("replaced")
        session.uid = uid
        self._by_uid.setdefault(uid, []).append(session)
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
        self.emit("unbind_session", session, uid)
        return self.keeper.forget(session, uid) if self.keeper is not None else succeed(None)

    def _forget_uid(self, session: Session) -> None:
        sessions = self._by_uid.get(session.uid, [])  # type: ignore[arg-type]
        if session in sessions:
            sessions.remove(session)
        if not sessions:
            self._by_uid.pop(session.uid, None)  # type: ignore[arg-type]

    def _commit(self, session: Session) -> Deferred[None]:
        return self.keeper.changed(session) if self.keeper is not None else succeed(None)
