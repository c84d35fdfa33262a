"""
Channels: named groups of users that a server pushes to.

A push to many users costs one node call per frontend that holds any of them;
each frontend encodes the push once and writes the same bytes to every
member's connection. A member whose connection is gone is skipped and
reported, never an error for the others. Pushes from one server keep their
order per user: they travel on one node link, in order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from .channel_routing import FollowsRouting
from .cluster import wire

if TYPE_CHECKING:
    from .app import Application
    from .cluster.backend import BackendSession

log = Logger()

MOVE_ROUTE = "sys.channels.moveMember"
"""The remote every server serves with L{ChannelService.move_member}."""


class Channel:
    """
    A named group of users, each known with the frontend holding their session.

    @ivar name: the channel's name.
    @ivar state: what a game keeps with the channel, C{None} unless it sets
        it: forgotten with the channel, and made again with it when a
        rebuild is given C{made} (see L{ChannelService.rebuild}).
    @ivar changed: whether a member was added, or asked to leave, since
        the channel was made (or rebuilt, see L{ChannelService.rebuild}).
    """

    def __init__(self, name: str, service: ChannelService) -> None:
        self.name = name
        self._service = service
        self._members: dict[str, str] = {}
        self.destroyed = False
        self.state: Any = None
        self.changed = False

    def __repr__(self) -> str:
        return f"<Channel {self.name!r} with {len(self._members)} members>"

    def add(self, uid: str, frontend_id: str) -> bool:
        """
        Add a member; C{False} when the channel is destroyed.
        """
        if self.destroyed:
            return False
        self._members[uid] = frontend_id
        self.changed = True
        return True

    def leave(self, uid: str, frontend_id: str | None = None) -> bool:
        """
        Remove a member (only if on C{frontend_id}, when given); whether it was one.
        """
        # Even when it is not a member here: another copy may hold it.
        self.changed = True
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

    def push_message(self, route: Any, msg: Any = None, opts: Mapping[str, Any] | None = None) -> Deferred[list[str]]:
        """
        Push to every member: C{push_message(route, msg, opts=None)}, or
        Pomelo's C{push_message(msg, opts=None)} with the route in
        C{msg["route"]}. C{opts} is taken for Pomelo's shape and, as by
        Pomelo's default push, not used.

        @return: a Deferred firing with the uids that could not be reached.
        @raise ValueError: the route is not a string, nor in C{msg["route"]}.
        """
        if not isinstance(route, str):
            route, msg = _route_of(route), route
        # Members were given to add(): not checked again on every push.
        return Deferred.fromCoroutine(self._service._push(route, msg, self._members.items()))

    def destroy(self) -> None:
        """
        Empty the channel and forget it.
        """
        self._service.destroy_channel(self.name)


def _route_of(msg: Any) -> str:
    route = msg.get("route") if isinstance(msg, Mapping) else None
    if not isinstance(route, str) or not route:
        raise ValueError(f"no route given: the message {msg!r} carries no route string as 'route'")
    return route


def _members(records: Iterable[Any]) -> list[tuple[str, str]]:
    """
    Pomelo's C{[{"uid": ..., "sid": ...}]} records, or C{(uid, frontend_id)} pairs, as pairs.

    @raise ValueError: a record is neither, or its uid or frontend id is not a non-empty string.
    """
    if isinstance(records, (str, bytes, Mapping)):
        raise ValueError(f"uids must be a list of {{'uid', 'sid'}} records, not {type(records).__name__}")
    members = []
    for record in records:
        if isinstance(record, Mapping):
            pair = (record.get("uid"), record.get("sid"))
        elif isinstance(record, (tuple, list)) and len(record) == 2:
            pair = (record[0], record[1])
        else:
            raise ValueError(f"{record!r} is neither a {{'uid', 'sid'}} record nor a (uid, frontend id) pair")
        if not all(isinstance(part, str) and part for part in pair):
            raise ValueError(f"{record!r} needs a uid and a frontend id ('sid'), both non-empty strings")
        members.append(pair)
    return members


class ChannelService(FollowsRouting):
    """
    The channels of one server (Pomelo's ChannelService).

    @ivar broadcast_filter: on a frontend, C{fn(session, msg, filter_param)}
        asked for each session a L{broadcast} reaches: only those it answers
        true for get the message (Pomelo's C{broadcastFilter}); C{None},
        every session.
    """

    def __init__(self, app: Application) -> None:
        self.app = app
        self.broadcast_filter: Callable[[Any, Any, Any], bool] | None = None
        self._channels: dict[str, Channel] = {}
        # Per name being rebuilt, the calls waiting for it (rebuild).
        self._rebuilding: dict[str, list[Deferred[Channel]]] = {}
        # Names being rebuilt whose copy another server said may be stale (forget).
        self._stale: set[str] = set()
        self._following = False

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

    def rebuild(self, name: str, key: str, value: Any, frontend_type: str | None = None,
                made: Callable[[Channel, list[BackendSession]], Any] | None = None) -> Deferred[Channel]:
        """
        The channel C{name}, made first from the frontends' live sessions
        when this server does not hold it: each session bound to a uid whose
        setting C{key} equals C{value} becomes a member, on its frontend
        (L{BackendSessionService.find
        <gamenet.cluster.backend.BackendSessionService.find>}, one query to
        every frontend, of C{frontend_type} only when given). A channel held
        is answered at once, as it is.

        Every call for C{name} while its sessions are being found shares that
        one query, and they all get the same channel, in the order they
        came. So a member added or removed by one of them while the query ran
        ends up right: the sessions the query saw are the members first,
        then each call's own change applies (C{add} of a uid already found
        changes nothing; a session that closed before the query reached
        its frontend is not found).

        When the channels follow routing (L{follow_routing}) and C{name} no
        longer routes to this server by the time the query answers, the
        channel serves the calls that waited for it and is then destroyed,
        so that no copy of it stays here: they get it in the turn it is
        made, and one that waits for something else before using it finds
        it destroyed; when one of them added or removed a member, the
        server it routes to is told (L{forget}).

        @param made: called as C{made(channel, sessions)} once the channel
            is made from the sessions found, before any call waiting gets
            it (the first call's, when several share the query; see
            L{gamenet.cluster.recovery}); when it raises, every call
            waiting fails with its error and nothing is kept.
        @return: a Deferred firing with the channel; it fails, for every call
            waiting, with the query's L{Unavailable} when a frontend did not
            answer. Nothing is kept then: the next call queries again.
        """
        channel = self._channels.get(name)
        if channel is not None:
            return succeed(channel)
        d: Deferred[Channel] = Deferred()
        waiting = self._rebuilding.get(name)
        if waiting is not None:
            waiting.append(d)
            return d
        self._rebuilding[name] = [d]
        self.app.backend_sessions.find(key, value, frontend_type).addBoth(self._rebuilt, name, made)
        return d

    def _rebuilt(self, result: list[BackendSession] | Failure, name: str,
                 made: Callable[[Channel, list[BackendSession]], Any] | None) -> None:
        waiting = self._rebuilding.pop(name)
        stale = name in self._stale
        self._stale.discard(name)
        if not isinstance(result, Failure):
            result = self._made(name, result, made)
        if isinstance(result, Failure):
            log.warn("channel {name} was not rebuilt on {server_id}: {error}", name=name,
                     server_id=self.app.server_id, error=result.getErrorMessage())
            for d in waiting:
                d.errback(result)
            return
        channel = result
        log.info("channel {name} rebuilt on {server_id} with {count} members", name=name,
                 server_id=self.app.server_id, count=channel.user_count)
        for d in waiting:
            d.callback(channel)
        if self._following and not self._owns(name):
            self._drop(name)
        elif stale:
            self.destroy_channel(name)

    def _made(self, name: str, sessions: list[BackendSession],
              made: Callable[[Channel, list[BackendSession]], Any] | None) -> Channel | Failure:
        channel = self.create_channel(name)
        for session in sessions:
            if session.uid is not None:
                channel.add(session.uid, session.frontend_id)
        if made is not None:
            try:
                made(channel, sessions)
            except Exception:
                self.destroy_channel(name)
                return Failure()
        channel.changed = False
        return channel

    async def move_member(self, uid: str, from_id: str, to_id: str) -> int:
        """
        Member C{uid} on frontend C{from_id} is now on C{to_id}, in every
        channel of this server (its session was resumed there, see
        C{doc/sessions.md}); its place in join order is kept. Fires once
        every push this server sent to C{from_id} before has arrived there
        (a ping after them on the same link is answered), so that each push
        to the member is held by exactly one of the two frontends.

        @return: how many channels it moved in.
        """
        moved = 0
        for channel in self._channels.values():
            if channel._members.get(uid) == from_id:
                channel._members[uid] = to_id
                moved += 1
        link = self.app.node.links.get(from_id) if from_id != self.app.server_id else None
        if moved and link is not None and link.up:
            await link.call(wire.PING, b"", "move ping")
        return moved

    def move_everywhere(self, uid: str, from_id: str, to_id: str) -> Deferred[None]:
        """
        L{move_member} on every server this one reaches (itself included),
        all at once; fires when each has answered or failed (a failure is logged).
        """
        return Deferred.fromCoroutine(self._move_everywhere(uid, from_id, to_id))

    async def _move_everywhere(self, uid: str, from_id: str, to_id: str) -> None:
        node = self.app.node
        calls = {
            server.id: node.call_remote(server.id, MOVE_ROUTE, [uid, from_id, to_id])
            for server in self.app.registry
            if server.id == self.app.server_id or (server.id in node.links and node.links[server.id].up)
        }
        for server_id, d in calls.items():
            try:
                await d
            except Exception as e:
                log.warn("{uid} was not moved to {to_id} in the channels of {server_id}: {error}", uid=uid,
                         to_id=to_id, server_id=server_id, error=e)

    @property
    def channels(self) -> list[str]:
        """
        The names of the channels that exist.
        """
        return list(self._channels)

    def push_message_by_uids(
        self, route: Any, msg: Any, uids: Any = None, opts: Mapping[str, Any] | None = None,
    ) -> Deferred[list[str]]:
        """
        Push to users, one call per frontend: C{push_message_by_uids(route,
        msg, uids, opts=None)}, or Pomelo's C{push_message_by_uids(msg, uids,
        opts=None)} with the route in C{msg["route"]}. C{uids} are Pomelo's
        C{{"uid": uid, "sid": frontend_id}} records or C{(uid, frontend_id)}
        pairs. C{opts} is taken for Pomelo's shape and, as by Pomelo's
        default push, not used.

        @return: a Deferred firing with the uids that could not be reached
            (no session on their frontend, or the frontend is down).
        @raise ValueError: no route, or a record without a uid and a
            frontend id; nothing is pushed.
        """
        if not isinstance(route, str):
            route, msg, uids = _route_of(route), route, msg
        return Deferred.fromCoroutine(self._push(route, msg, _members(uids if uids is not None else ())))

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
        self.app.metrics.pushed(sum(map(len, by_frontend.values())) - len(missing), len(missing))
        return missing

    def broadcast(self, frontend_type: str, route: str, msg: Any, opts: Mapping[str, Any] | bool | None = None, *,
                  only_bound: bool = False, filter_param: Any = None) -> Deferred[int]:
        """
        Push to every client of every frontend of C{frontend_type} that
        calls reach, draining ones included (their clients are still there).

        @param opts: Pomelo's options: C{binded} (only sessions bound to a
            uid) and C{filterParam} (see C{filter_param}); or, as before
            them, C{only_bound}.
        @param only_bound: only sessions bound to a uid.
        @param filter_param: given to each frontend's L{broadcast_filter},
            when it has one, with each session (JSON-able: it crosses to
            the frontends).
        @return: a Deferred firing with how many clients it was written to.
        """
        if isinstance(opts, Mapping):
            only_bound = only_bound or bool(opts.get("binded"))
            filter_param = opts.get("filterParam", filter_param)
        elif opts is not None:
            only_bound = only_bound or bool(opts)
        return Deferred.fromCoroutine(self._broadcast(frontend_type, route, msg, only_bound, filter_param))

    async def _broadcast(self, frontend_type: str, route: str, msg: Any, only_bound: bool, filter_param: Any) -> int:
        calls = [
            self.app.node.sys_call(server.id, "broadcast",
                                   [route, msg, only_bound, *([filter_param] if filter_param is not None else [])])
            for server in self.app.node.reachable(frontend_type)
        ]
        total = 0
        for d in calls:
            try:
                total += await d
            except Exception as e:
                log.warn("broadcast {route} failed on a frontend: {error}", route=route, error=e)
        self.app.metrics.pushed(total, 0)
        return total
