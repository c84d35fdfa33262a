"""
The frontend session: the truth about one connected client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger

from ..errors import GamenetError

if TYPE_CHECKING:
    from .service import SessionService

log = Logger()

_MISSING = object()


class ClientLink(Protocol):
    """
    What a session needs of its connection.
    """

    opened_at: float
    """When the connection was made (Unix time)."""
    received: int
    """Requests and notifies received."""
    sent: int
    """Answers and pushes sent."""

    def push(self, route: str, msg: Any) -> bool:
        """
        Send a push; C{False} when the connection is gone.
        """

    def write(self, data: bytes) -> bool:
        """
        Write encoded packages; C{False} when the connection is gone.
        """

    def kick(self, reason: str) -> Deferred[None]:
        """
        Send a kick with C{reason} and close; fires when closed.
        """

    def close(self, reason: str) -> Deferred[None]:
        """
        Close without a kick package; fires when closed.
        """


class Session:
    """
    A client's session on its frontend.

    @ivar id: unique on this frontend.
    @ivar frontend_id: the id of the frontend server holding the connection.
    @ivar uid: the bound user id, or C{None} for a guest.
    @ivar settings: values that travel with forwarded requests and are stored.
    @ivar user_data: values that never leave this frontend (mqant's C{GetUserData}).
    @ivar remote_address: the client's C{(host, port)}.
    @ivar transport: C{"websocket"}, C{"tcp"}, with C{"+tls"} when encrypted.
    @ivar closed: whether the session has ended.
    @ivar resumable: whether its client asked for resume in its handshake
        (see L{gamenet.session.suspend}).
    @ivar resume_token: while bound, the token that resumes it once
        (C{None} when unbound); sent to a client that asked for resume.
    """

    __slots__ = (
        "id", "frontend_id", "uid", "settings", "user_data", "remote_address",
        "transport", "closed", "close_reason", "_link", "_service", "_close_callbacks",
        "resumable", "resume_token",
    )

    def __init__(
        self,
        id: int,
        frontend_id: str,
        link: ClientLink,
        service: SessionService,
        remote_address: tuple[str, int] = ("", 0),
        transport: str = "",
    ) -> None:
        self.id = id
        self.frontend_id = frontend_id
        self.uid: str | None = None
        self.settings: dict[str, Any] = {}
        self.user_data: dict[str, Any] = {}
        self.remote_address = remote_address
        self.transport = transport
        self.closed = False
        self.close_reason = ""
        self._link = link
        self._service = service
        self._close_callbacks: list[Callable[[Session, str], Any]] = []
        self.resumable = False
        self.resume_token: str | None = None

    def __repr__(self) -> str:
        return f"<Session {self.id} uid={self.uid!r} on {self.frontend_id}>"

    @property
    def is_guest(self) -> bool:
        """
        Whether no uid is bound.
        """
        return self.uid is None

    @property
    def connected_at(self) -> float:
        """
        When the client connected, as Unix time (mqant's C{ConnTime}).
        """
        return self._link.opened_at

    @property
    def messages_received(self) -> int:
        """
        The requests and notifies received from the client (mqant's C{RecvNum}).
        """
        return self._link.received

    @property
    def messages_sent(self) -> int:
        """
        The answers and pushes sent to the client (mqant's C{SendNum}).
        """
        return self._link.sent

    def bind(self, uid: str) -> Deferred[None]:
        """
        Bind the session to C{uid}.

        @return: a Deferred firing when bound; it fails with a
            L{GamenetError} when the session is bound to another uid or closed.
        """
        if self.closed:
            return fail(GamenetError("session is closed"))
        if self.uid is not None:
            if self.uid == uid:
                return succeed(None)
            return fail(GamenetError(f"session is already bound to {self.uid}"))
        if not isinstance(uid, str) or not uid:
            return fail(GamenetError("uid must be a non-empty string"))
        return self._service._bind(self, uid)

    def unbind(self) -> Deferred[None]:
        """
        Forget the bound uid.
        """
        if self.uid is None:
            return succeed(None)
        return self._service._unbind(self)

    def set(self, key: str, value: Any) -> None:
        """
        Set a setting (plain JSON-able values only: they travel to backends).
        On the frontend the change is live at once, and stored when bound.
        """
        self.settings[key] = value
        self._service._commit(self)

    def get(self, key: str, default: Any = None) -> Any:
        """
        A setting, or C{default}.
        """
        return self.settings.get(key, default)

    def delete(self, key: str) -> None:
        """
        Remove a setting, if present; stored when bound.
        """
        if self.settings.pop(key, _MISSING) is not _MISSING:
            self._service._commit(self)

    def import_settings(self, settings: dict[str, Any]) -> Deferred[None]:
        """
        Add C{settings}, the session's own values winning (mqant's
        C{ImportSettings}); stored when bound.
        """
        return self.set_batch({key: value for key, value in settings.items() if key not in self.settings})

    def set_settings(self, settings: dict[str, Any]) -> Deferred[None]:
        """
        Make the settings C{settings} (mqant's C{SetSettings}); stored when bound.
        """
        self.settings.clear()
        self.settings.update(settings)
        return self._service._commit(self)

    def set_batch(self, settings: dict[str, Any]) -> Deferred[None]:
        """
        Set several settings at once, committed together (mqant's C{ToSetBatch}).
        """
        self.settings.update(settings)
        return self._service._commit(self)

    def push(self, *keys: str) -> Deferred[None]:
        """
        Commit settings. On the frontend they are already live; this is where
        a change is committed to storage.
        """
        return self._service._commit(self)

    def push_all(self) -> Deferred[None]:
        """
        Commit every setting.
        """
        return self._service._commit(self)

    def send(self, route: str, msg: Any) -> bool:
        """
        Push C{msg} to this client on C{route}.

        @return: C{False} when the connection is gone.
        """
        return self._link.push(route, msg)

    def kick(self, reason: str = "kick") -> Deferred[None]:
        """
        Send a kick with C{reason} and close the connection.
        """
        return self._link.kick(reason)

    def close(self, reason: str = "closed by server") -> Deferred[None]:
        """
        Close the connection without a kick package.
        """
        return self._link.close(reason)

    def on_close(self, callback: Callable[[Session, str], Any]) -> None:
        """
        Call C{callback(session, reason)} when the session ends; at once if
        it has. A session suspended for resume ends when its window passes;
        one resumed on another frontend does not end here, and its callbacks
        stay here: set them again from C{resume_session} (see C{doc/sessions.md}).
        """
        if self.closed:
            callback(self, self.close_reason)
        else:
            self._close_callbacks.append(callback)

    def export(self) -> dict[str, Any]:
        """
        What travels to backends: id, frontend id, uid and settings.
        """
        return {"id": self.id, "frontend_id": self.frontend_id, "uid": self.uid, "settings": dict(self.settings)}

    def _closed(self, reason: str) -> None:
        self.closed = True
        self.close_reason = reason
        callbacks, self._close_callbacks = self._close_callbacks, []
        for callback in callbacks:
            try:
                callback(self, reason)
            except Exception:
                log.failure("close callback of session {session_id} failed", session_id=self.id)
