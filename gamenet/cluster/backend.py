"""
Backend sessions: the copy of a client's session that travels with each
forwarded request, and the service that acts on real sessions through their
frontend's sys remote.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred

from ..errors import GamenetError, Unavailable

if TYPE_CHECKING:
    from .service import ClusterNode


class BackendSession:
    """
    A copy of a frontend session, as a backend handler sees it.

    C{get}, C{set}, C{import_settings} and C{set_settings} work on the copy;
    C{bind}, C{unbind}, C{push}, C{push_all}, C{set_batch}, C{send}, C{kick},
    C{close} and C{is_connected} act on the real session through its
    frontend, and C{refresh} reads it again into the copy.

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

    def import_settings(self, settings: dict[str, Any]) -> None:
        """
        Add C{settings} to the copy, its own values winning (mqant's C{ImportSettings}).
        """
        self.settings = {**settings, **self.settings}

    def set_settings(self, settings: dict[str, Any]) -> None:
        """
        Make the copy's settings C{settings} (mqant's C{SetSettings}); C{push_all} sends them.
        """
        self.settings = dict(settings)

    def set_batch(self, settings: dict[str, Any]) -> Deferred[None]:
        """
        Set several settings on the copy and on the real session, in one
        call to its frontend (mqant's C{ToSetBatch}).
        """
        self.settings.update(settings)
        return self.push(*settings)

    def refresh(self) -> Deferred[BackendSession]:
        """
        Read the real session again into this copy: uid and settings, local
        changes not pushed are lost (mqant's C{ToUpdate}).

        @return: a Deferred firing with this session; it fails with a
            L{GamenetError} (404) when the session is gone.
        """
        return self._service._sys(self.frontend_id, "get", self.id).addCallback(self._refreshed)

    def _refreshed(self, data: dict[str, Any] | None) -> BackendSession:
        if not data:
            raise GamenetError(f"session {self.id} is gone from {self.frontend_id}", 404)
        self.uid = data.get("uid")
        self.settings = dict(data.get("settings") or {})
        return self

    def is_connected(self) -> Deferred[bool]:
        """
        Whether the client is still connected (mqant's C{ToConnected}).
        """
        return self._service.is_connected(self.frontend_id, self.id)

    def close(self, reason: str = "closed by server") -> Deferred[None]:
        """
        Close the client's connection without a kick package (mqant's C{ToClose}).
        """
        return self._service.close(self.frontend_id, self.id, reason)

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

    def find(self, key: str, value: Any, frontend_type: str | None = None) -> Deferred[list[BackendSession]]:
        """
        Copies of the live sessions, bound to a uid, whose setting C{key}
        equals C{value}, on every frontend of the cluster (of
        C{frontend_type} only, when given): one C{find} sys call per
        frontend, all at once, results merged.

        The answer is whole or it is an error, never silently partial. Every
        frontend whose link is up is asked, answering or not (a call to a
        hung one fails), and so is one whose link is down while membership
        says it is up (the master saw it log in): it is asked once its link
        comes up, and fails when that takes longer than C{rpc_timeout}.
        A frontend whose link is down and that membership does not count is
        not asked: its process is gone, and its sessions with it. (Without a
        master, membership is the links themselves, so a frontend alive but
        not linked to this server yet is not asked either.)

        @return: a Deferred firing with the sessions, frontend by frontend
            in registry order; it fails with L{Unavailable}, naming the
            frontend and its error, when any frontend asked did not answer
            (down, not answering within C{rpc_timeout}, or failing the call),
            once every frontend asked has answered or failed.
        """
        return Deferred.fromCoroutine(self._find(key, value, frontend_type))

    async def _find(self, key: str, value: Any, frontend_type: str | None) -> list[BackendSession]:
        node = self._node
        local_id = node.app.server_id
        calls = {
            server.id: self._find_on(server.id, key, value)
            for server in node.app.registry
            if server.frontend and frontend_type in (None, server.type) and (
                server.id == local_id or server.id in node.membership
                or (server.id in node.links and node.links[server.id].up)
            )
        }
        found: list[BackendSession] = []
        errors: list[str] = []
        for frontend_id, d in calls.items():
            try:
                found.extend(BackendSession(data, self) for data in await d)
            except Exception as e:
                errors.append(f"{frontend_id}: {e}")
        if errors:
            raise Unavailable(f"cannot find the sessions with {key} = {value!r}: {'; '.join(errors)}")
        return found

    def _find_on(self, frontend_id: str, key: str, value: Any) -> Deferred[Any]:
        # A frontend that membership counts but whose link is not up yet
        # (this server, or that one, has just started) is waited for, up to
        # the call timeout, rather than failed at once.
        link = self._node.links.get(frontend_id)
        if link is None or link.up:
            return self._sys(frontend_id, "find", key, value)
        link.retry_now()
        return link.when_up(self._node.app.cluster.rpc_timeout).addCallback(
            lambda _: self._sys(frontend_id, "find", key, value))

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
