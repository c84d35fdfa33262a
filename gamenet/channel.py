"""
Channels: named groups of users that a server pushes to.

A push to many users costs one node call per frontend that holds any of them;
each frontend encodes the push once and writes the same bytes to every
member's connection. A member whose connection is gone is skipped and
reported, never an error for the others. Pushes from one server keep their
order per user: they travel on one node link, in order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

from twisted.internet.defer import Deferred
from twisted.logger import Logger

if TYPE_CHECKING:
    from .app import Application

log = Logger()


class Channel:
    """
    A named group of users, each known with the frontend holding their session.

    @ivar name: the channel's name.
    """

    def __init__(self, name: str, service: ChannelService) -> None:
        self.name = name
        self._service = service
        self._members: dict[str, str] = {}
        self.destroyed = False

    def __repr__(self) -> str:
        return f"<Channel {self.name!r} with {len(self._members)} members>"

    def add(self, uid: str, frontend_id: str) -> bool:
        """
        Add a member; C{False} when the channel is destroyed.
        """
        if self.destroyed:
            return False
        self._members[uid] = frontend_id
        return True

    def leave(self, uid: str, frontend_id: str | None = None) -> bool:
        """
        Remove a member (only if on C{frontend_id}, when given); whether it was one.
        """
        current = self._members.get(uid)
        if current is None or (frontend_id is not None and current != frontend_id):
            return False
        del self._members[uid]
        return True

    def get_members(self) -> list[str]:
        """
        The members' uids, in the order they joined.
        """
        return list(self._members)

    def get_member(self, uid: str) -> tuple[str, str] | None:
        """
        C{(uid, frontend_id)} of a member, or C{None}.
        """
        frontend_id = self._members.get(uid)
        return (uid, frontend_id) if frontend_id is not None else None

    @property
    def user_count(self) -> int:
        """
        How many members the channel has.
        """
        return len(self._members)

    def push_message(self, route: str, msg: Any) -> Deferred[list[str]]:
        """
        Push to every member.

        @return: a Deferred firing with the uids that could not be reached.
        """
        return self._service.push_message_by_uids(route, msg, self._members.items())

    def destroy(self) -> None:
        """
        Empty the channel and forget it.
        """
        self._service.destroy_channel(self.name)


class ChannelService:
    """
    The channels of one server (Pomelo's ChannelService).
    """

    def __init__(self, app: Application) -> None:
        self.app = app
        self._channels: dict[str, Channel] = {}

    def create_channel(self, name: str) -> Channel:
        """
        The channel C{name}, made if it does not exist.
        """
        channel = self._channels.get(name)
        if channel is None:
            channel = self._channels[name] = Channel(name, self)
        return channel

    def get_channel(self, name: str, create: bool = False) -> Channel | None:
        """
        The channel C{name}; made when missing and C{create} is true.
        """
        return self.create_channel(name) if create else self._channels.get(name)

    def destroy_channel(self, name: str) -> None:
        """
        Forget a channel and its members.
        """
        channel = self._channels.pop(name, None)
        if channel is not None:
            channel.destroyed = True
            channel._members.clear()

    @property
    def channels(self) -> list[str]:
        """
        The names of the channels that exist.
        """
        return list(self._channels)

    def push_message_by_uids(
        self, route: str, msg: Any, members: Iterable[tuple[str, str]]
    ) -> Deferred[list[str]]:
        """
        Push to users given as C{(uid, frontend_id)}: one call per frontend.

        @return: a Deferred firing with the uids that could not be reached
            (no session on their frontend, or the frontend is down).
        """
        return Deferred.fromCoroutine(self._push(route, msg, members))

    async def _push(self, route: str, msg: Any, members: Iterable[tuple[str, str]]) -> list[str]:
        by_frontend: dict[str, list[str]] = {}
        for uid, frontend_id in members:
            by_frontend.setdefault(frontend_id, []).append(uid)
        calls = {
            frontend_id: self.app.node.sys_call(frontend_id, "push_uids", [route, msg, uids])
            for frontend_id, uids in by_frontend.items()
        }
        missing: list[str] = []
        for frontend_id, d in calls.items():
            try:
                missing.extend(await d)
            except Exception as e:
                log.warn("push {route} to {count} users on {frontend_id} failed: {error}", route=route,
                         count=len(by_frontend[frontend_id]), frontend_id=frontend_id, error=e)
                missing.extend(by_frontend[frontend_id])
        if missing:
            log.info("push {route}: {count} users not reached", route=route, count=len(missing))
        return missing

    def broadcast(self, frontend_type: str, route: str, msg: Any, only_bound: bool = False) -> Deferred[int]:
        """
        Push to every client of every available frontend of C{frontend_type}.

        @return: a Deferred firing with how many clients it was written to.
        """
        return Deferred.fromCoroutine(self._broadcast(frontend_type, route, msg, only_bound))

    async def _broadcast(self, frontend_type: str, route: str, msg: Any, only_bound: bool) -> int:
        calls = [
            self.app.node.sys_call(server.id, "broadcast", [route, msg, only_bound])
            for server in self.app.node.available(frontend_type)
        ]
        total = 0
        for d in calls:
            try:
                total += await d
            except Exception as e:
                log.warn("broadcast {route} failed on a frontend: {error}", route=route, error=e)
        return total
