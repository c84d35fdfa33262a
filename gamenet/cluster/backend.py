"""
Backend sessions: the copy of a client's session that travels with each
forwarded request, and the service that acts on real sessions through their
frontend's sys remote.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred

if TYPE_CHECKING:
    from .service import ClusterNode


class BackendSession:
    """
    A copy of a frontend session, as a backend handler sees it.

    C{get} and C{set} work on the copy; C{bind}, C{unbind}, C{push},
    C{push_all}, C{send} and C{kick} act on the real session through its frontend.

    @ivar id: the session's id on its frontend.
    @ivar frontend_id: the frontend holding the connection.
    @ivar uid: the bound uid, or C{None}.
    @ivar settings: the copy of the settings.
    """

    __slots__ = ("id", "frontend_id", "uid", "settings", "_service")

    def __init__(self, data: dict[str, Any], service: BackendSessionService) -> None:
        self.id: int = data["id"]
        self.frontend_id: str = data["frontend_id"]
        self.uid: str | None = data.get("uid")
        self.settings: dict[str, Any] = dict(data.get("settings") or {})
        self._service = service

    def __repr__(self) -> str:
        return f"<BackendSession {self.id} uid={self.uid!r} of {self.frontend_id}>"

    @property
    def is_guest(self) -> bool:
        """
        Whether no uid is bound.
        """
        return self.uid is None

    def get(self, key: str, default: Any = None) -> Any:
        """
        A setting of the copy, or C{default}.
        """
        return self.settings.get(key, default)

    def set(self, key: str, value: Any) -> None:
        """
        Change the copy; C{push} sends it to the real session.
        """
        self.settings[key] = value

    def delete(self, key: str) -> None:
        """
        Remove a setting from the copy.
        """
        self.settings.pop(key, None)

    def bind(self, uid: str) -> Deferred[None]:
        """
        Bind the real session to C{uid}.
        """
        d = self._service._sys(self.frontend_id, "bind", self.id, uid)
        d.addCallback(self._bound, uid)
        return d

    def _bound(self, _: Any, uid: str | None) -> None:
        self.uid = uid

    def unbind(self) -> Deferred[None]:
        """
        Unbind the real session.
        """
        d = self._service._sys(self.frontend_id, "unbind", self.id)
        d.addCallback(self._bound, None)
        return d

    def push(self, *keys: str) -> Deferred[None]:
        """
        Copy the named settings to the real session (a key deleted from the
        copy is deleted there too).
        """
        values = {key: self.settings.get(key) for key in keys}
        deleted = [key for key in keys if key not in self.settings]
        return self._service._sys(self.frontend_id, "push", self.id, values, deleted)

    def push_all(self) -> Deferred[None]:
        """
        Make the real session's settings equal to the copy's.
        """
        return self._service._sys(self.frontend_id, "push_all", self.id, self.settings)

    def send(self, route: str, msg: Any) -> Deferred[bool]:
        """
        Push C{msg} to the client; fires with C{False} when it is gone.
        """
        return self._service.send(self.frontend_id, self.id, route, msg)

    def kick(self, reason: str = "kick") -> Deferred[None]:
        """
        Kick the client.
        """
        return self._service.kick_by_sid(self.frontend_id, self.id, reason)

    def export(self) -> dict[str, Any]:
        """
        The session as it travels.
        """
        return {"id": self.id, "frontend_id": self.frontend_id, "uid": self.uid, "settings": dict(self.settings)}


class BackendSessionService:
    """
    Acts on sessions held by frontends (Pomelo's BackendSessionService, with
    mqant's gate calls): every method is one sys call to that frontend.
    """

    def __init__(self, node: ClusterNode) -> None:
        self._node = node

    def _sys(self, frontend_id: str, name: str, *args: Any) -> Deferred[Any]:
        return self._node.sys_call(frontend_id, name, list(args))

    def _session(self, data: dict[str, Any] | None) -> BackendSession | None:
        return BackendSession(data, self) if data else None

    def get(self, frontend_id: str, session_id: int) -> Deferred[BackendSession | None]:
        """
        A fresh copy of a session, or C{None} when it is gone.
        """
        return self._sys(frontend_id, "get", session_id).addCallback(self._session)

    def get_by_uid(self, frontend_id: str, uid: str) -> Deferred[list[BackendSession]]:
        """
        Copies of the sessions bound to C{uid} on one frontend.
        """
        return self._sys(frontend_id, "get_by_uid", uid).addCallback(
            lambda found: [BackendSession(data, self) for data in found]
        )

    def kick_by_sid(self, frontend_id: str, session_id: int, reason: str = "kick") -> Deferred[None]:
        """
        Kick one session.
        """
        return self._sys(frontend_id, "kick_sid", session_id, reason)

    def kick_by_uid(self, frontend_id: str, uid: str, reason: str = "kick") -> Deferred[None]:
        """
        Kick every session of C{uid} on one frontend.
        """
        return self._sys(frontend_id, "kick_uid", uid, reason)

    def set(self, frontend_id: str, session_id: int, key: str, value: Any) -> Deferred[None]:
        """
        Set one setting of the real session.
        """
        return self._sys(frontend_id, "set", session_id, key, value)

    def delete(self, frontend_id: str, session_id: int, key: str) -> Deferred[None]:
        """
        Delete one setting of the real session.
        """
        return self._sys(frontend_id, "delete", session_id, key)

    def send(self, frontend_id: str, session_id: int, route: str, msg: Any) -> Deferred[bool]:
        """
        Push a message to one session; fires with C{False} when it is gone.
        """
        return self._sys(frontend_id, "send", session_id, route, msg)

    def is_connected(self, frontend_id: str, session_id: int) -> Deferred[bool]:
        """
        Whether the session is still connected.
        """
        return self._sys(frontend_id, "connected", session_id)

    def close(self, frontend_id: str, session_id: int, reason: str = "closed by server") -> Deferred[None]:
        """
        Close the session's connection without a kick package.
        """
        return self._sys(frontend_id, "close", session_id, reason)

    def broadcast(self, frontend_id: str, route: str, msg: Any, only_bound: bool = False) -> Deferred[int]:
        """
        Push to every client of one frontend; fires with how many got it.
        """
        return self._sys(frontend_id, "broadcast", route, msg, only_bound)
