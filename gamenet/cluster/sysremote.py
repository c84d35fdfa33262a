"""
The frontend's C{sys} remote: what backends may do to the sessions it holds.

Only node links reach it; a client route C{sys.*} is never dispatched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from ..errors import GamenetError
from ..protocol.errors import ProtobufError
from ..session import Session, SessionService
from ..session.resume import ResumeRefused

if TYPE_CHECKING:
    from ..channel import ChannelService

log = Logger()


class SysRemote:
    """
    Session operations by name, called as C{call(name, args)}.
    """

    def __init__(self, sessions: SessionService, channels: ChannelService | None = None) -> None:
        """
        @param channels: whose C{broadcast_filter} broadcasts go through.
        """
        self.sessions = sessions
        self.channels = channels
        self._calls: dict[str, Callable[..., Any]] = {
            "bind": self.bind,
            "unbind": self.unbind,
            "push": self.push,
            "push_all": self.push_all,
            "set": self.set,
            "delete": self.delete,
            "get": self.get,
            "get_by_uid": self.get_by_uid,
            "find": self.find,
            "send": self.send,
            "kick_sid": self.kick_sid,
            "kick_uid": self.kick_uid,
            "connected": self.connected,
            "close": self.close,
            "broadcast": self.broadcast,
            "push_uids": self.push_uids,
            "resume_take": self.resume_take,
            "resume_settle": self.resume_settle,
        }

    def call(self, name: str, args: list[Any]) -> Any:
        """
        Run one sys call.

        @raise GamenetError: an unknown call or wrong arguments (code 400), a
            session that is gone (code 404), or a push whose message does not
            fit its route's protobuf schema (code 500, logged here once).
        """
        function = self._calls.get(name)
        if function is None and self.sessions.unique is not None:
            function = self.sessions.unique.sys_calls.get(name)
        if function is None:
            raise GamenetError(f"no sys call {name}", 400)
        try:
            return function(*args)
        except TypeError as e:
            raise GamenetError(f"sys call {name}: {e}", 400) from None
        except ProtobufError as e:
            log.warn("sys call {name}: the push does not fit its schema: {reason}", name=name, reason=str(e))
            raise GamenetError(str(e), 500) from None

    def _session(self, session_id: int) -> Session:
        session = self.sessions.get(session_id)
        if session is None:
            raise GamenetError(f"session {session_id} is gone", 404)
        return session

    def bind(self, session_id: int, uid: str) -> Deferred[None]:
        return self._session(session_id).bind(uid)

    def unbind(self, session_id: int) -> Deferred[None]:
        return self._session(session_id).unbind()

    def push(self, session_id: int, values: dict[str, Any], deleted: list[str]) -> Deferred[None]:
        session = self._session(session_id)
        for key in deleted:
            session.delete(key)
        for key, value in values.items():
            if key not in deleted:
                session.set(key, value)
        return session.push(*values)

    def push_all(self, session_id: int, settings: dict[str, Any]) -> Deferred[None]:
        session = self._session(session_id)
        session.settings.clear()
        session.settings.update(settings)
        return session.push_all()

    def set(self, session_id: int, key: str, value: Any) -> Deferred[None]:
        session = self._session(session_id)
        session.set(key, value)
        return session.push(key)

    def delete(self, session_id: int, key: str) -> Deferred[None]:
        session = self._session(session_id)
        session.delete(key)
        return session.push(key)

    def get(self, session_id: int) -> dict[str, Any] | None:
        session = self.sessions.get(session_id)
        return session.export() if session is not None else None

    def get_by_uid(self, uid: str) -> list[dict[str, Any]]:
        return [session.export() for session in self.sessions.get_by_uid(uid)]

    def find(self, key: str, value: Any) -> list[dict[str, Any]]:
        """
        The exports of the live sessions bound to a uid whose setting C{key}
        equals C{value}. A closed session has already left the service, so a
        user whose connection closed is never found, even while the close
        callbacks it set (telling backends it left) are still under way; a
        suspended one (waiting for its client to resume) is found.
        """
        return [
            session.export() for session in self.sessions
            if session.uid is not None and key in session.settings and session.settings[key] == value
        ]

    def send(self, session_id: int, route: str, msg: Any) -> bool:
        return self.sessions.send_message(session_id, route, msg)

    def kick_sid(self, session_id: int, reason: str) -> Deferred[Any]:
        return self.sessions.kick_by_session_id(session_id, reason).addCallback(lambda _: None)

    def kick_uid(self, uid: str, reason: str) -> Deferred[Any]:
        return self.sessions.kick(uid, reason).addCallback(lambda _: None)

    def connected(self, session_id: int) -> bool:
        session = self.sessions.get(session_id)
        return session is not None and not session.closed

    def close(self, session_id: int, reason: str) -> Deferred[None]:
        session = self.sessions.get(session_id)
        return session.close(reason) if session is not None else succeed(None)

    def broadcast(self, route: str, msg: Any, only_bound: bool, filter_param: Any = None) -> int:
        accept = self.channels.broadcast_filter if self.channels is not None else None
        if accept is None:
            return self.sessions.broadcast(route, msg, only_bound)
        return self.sessions.broadcast(route, msg, only_bound,
                                       lambda session: accept(session, msg, filter_param))

    def push_uids(self, route: str, msg: Any, uids: list[str]) -> list[str]:
        """
        Push to the sessions of C{uids} on this frontend, encoded once.

        @return: the uids that have no session here.
        """
        sessions, missing = [], []
        for uid in uids:
            found = self.sessions.get_by_uid(uid)
            if found:
                sessions.extend(found)
            else:
                missing.append(uid)
        failed = {session.uid for session in self.sessions.push_to(sessions, route, msg)}
        return missing + [uid for uid in uids if uid in failed]

    def resume_take(self, token: str, frontend_id: str) -> Deferred[dict[str, Any]]:
        """
        Hand the session of resume token C{token} over to C{frontend_id}
        (see L{Resumer.hand_over <gamenet.session.suspend.Resumer.hand_over>}).
        """
        resumer = self.sessions.resumer
        if resumer is None:
            raise ResumeRefused("resume is off on this server")
        return resumer.hand_over(token, frontend_id)

    def resume_settle(self, session_id: int, frontend_id: str, arrived: bool, reason: str) -> Deferred[bool]:
        """
        Whether the session handed over to C{frontend_id} arrived there
        (see L{Resumer.settle <gamenet.session.suspend.Resumer.settle>}).
        """
        resumer = self.sessions.resumer
        if resumer is None:
            raise ResumeRefused("resume is off on this server")
        return resumer.settle(session_id, frontend_id, arrived, reason)
