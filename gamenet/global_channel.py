"""
Global channels: named groups of users whose membership lives in the
cluster's Redis, so that any server can push to every member wherever the
member is connected (Pomelo's globalChannel plugin).

A member is a C{(uid, frontend id)} pair. A backend adds members it learned
of from their sessions; any other server, which never saw those users, pushes
to the channel: it reads the members from Redis, then pushes exactly as a
local L{gamenet.channel.Channel} does, through
L{ChannelService.push_message_by_uids<gamenet.channel.ChannelService.push_message_by_uids>}:
one C{push_uids} sys call per frontend holding members, which encodes the push
once and answers with the uids it holds no session for.

Redis layout, for channel C{<name>} of cluster C{<cluster>}::

    gamenet:<cluster>:gchannel:<name>                 set of the frontend ids that have members
    gamenet:<cluster>:gchannel:<name>:<frontend id>   set of the uids of the members on that frontend

The first set is an index, so that reading a channel needs no C{SCAN}. A
channel name or frontend id containing C{%} or C{:} has those characters
written as C{%25} and C{%3A} in keys (so that channel C{a:b} and frontend C{b}
of channel C{a} cannot share a key); the index holds frontend ids as they are.

Every change is one Lua script run with C{EVAL}, not a C{MULTI} transaction:

  - Leaving must take the frontend id out of the index only when its set has
    become empty, a decision on data read inside the change; C{MULTI} cannot
    branch without a C{WATCH} and retry loop, a script can.
  - A script is one command on any connection of the pool; txredisapi's
    C{MULTI} holds a connection of the pool for the whole transaction, and a
    transaction abandoned by the Redis timeout could leave it held.
  - Reading a channel (its index, then the set of each frontend in it) is one
    script too: one round trip and a consistent snapshot.

The scripts build the keys of frontend sets from the index, so they need a
single Redis server, not Redis Cluster, which wants every key a script
touches passed to it.

Failures: every Redis call is bounded by the cluster's C{storage_timeout}
(L{gamenet.redis.RedisClient}). While Redis is down or unreachable, every call
fails with L{RedisUnavailable} within that time (at once for the calls on a
connection as it is lost); nothing waits longer, nothing is retried, and
servers go on serving everything that does not need Redis. A change that
failed may still have been made, if Redis ran it but its answer came too late;
C{add}, C{leave} and C{destroy} can be repeated safely. Calls work again once
the pool has reconnected (txredisapi retries with a backoff of at most 10
seconds).

Durability: membership is as durable as the Redis it lives in. A Redis that
restarts without persistence (or is killed before saving) comes back with
every global channel empty; games that must survive that re-add their members
(for instance when users enter again). Membership does not follow sessions
either: a member whose client disconnected stays in the channel, and pushes
report it as missing, until the game makes it leave (for instance on
C{close_session}).

Order: the pushes one server makes through its L{GlobalChannelService} reach
the frontends in the order they were made, even when they are not awaited one
by one, so each member gets them in that order, as from a local channel. Their
members are read at once, but each push sends its sys calls only after the
previous one has sent its own (or failed: a push whose members cannot be read
holds the later ones back for at most C{storage_timeout}).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, succeed

from . import redis
from .redis import RedisUnavailable

if TYPE_CHECKING:
    from .app import Application

__all__ = ["GlobalChannel", "GlobalChannelService", "RedisUnavailable"]

# Lua helper making a name or frontend id safe as a key part (the same as _quote).
_QUOTE = """
local function quote(s)
  return (string.gsub(s, '[%%:]', function(c) return string.format('%%%02X', string.byte(c)) end))
end
"""

# KEYS[1] index, KEYS[2] the frontend's set; ARGV[1] uid, ARGV[2] frontend id.
# Returns 1 when the uid was added, 0 when it was a member already.
_ADD = """
local added = redis.call('SADD', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[1], ARGV[2])
return added
"""

# Same keys and arguments; returns 1 when the uid was a member. The frontend id
# leaves the index when its set is empty (Redis deletes an empty set).
_LEAVE = """
local removed = redis.call('SREM', KEYS[2], ARGV[1])
if redis.call('SCARD', KEYS[2]) == 0 then
  redis.call('SREM', KEYS[1], ARGV[2])
end
return removed
"""

# KEYS[1] index; ARGV[1] the prefix of the frontends' sets (index key and ':').
# Returns {{frontend id, {uid, ...}}, ...}.
_MEMBERS = _QUOTE + """
local result = {}
for _, frontend_id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local uids = redis.call('SMEMBERS', ARGV[1] .. quote(frontend_id))
  if #uids > 0 then
    table.insert(result, {frontend_id, uids})
  end
end
return result
"""

# KEYS[1] index; ARGV[1] prefix. Deletes the channel; returns how many frontends it had.
_DESTROY = _QUOTE + """
local ids = redis.call('SMEMBERS', KEYS[1])
for _, frontend_id in ipairs(ids) do
  redis.call('DEL', ARGV[1] .. quote(frontend_id))
end
redis.call('DEL', KEYS[1])
return #ids
"""


def _quote(part: str) -> str:
    return part.replace("%", "%25").replace(":", "%3A")


def _check(what: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, not {value!r}")
    return value


class GlobalChannel:
    """
    A handle on one global channel; it holds no state of its own, so any
    number of handles, on any servers, act on the same channel.

    Every method returns a Deferred, which fails with L{RedisUnavailable}
    when Redis does not answer within the cluster's C{storage_timeout}.

    @ivar name: the channel's name.
    """

    def __init__(self, name: str, service: GlobalChannelService) -> None:
        self.name = _check("a global channel name", name)
        self._service = service

    def __repr__(self) -> str:
        return f"<GlobalChannel {self.name!r}>"

    def add(self, uid: str, frontend_id: str) -> Deferred[bool]:
        """
        Add the user C{uid} connected to C{frontend_id}.

        @return: a Deferred firing with C{True} when it was added, C{False}
            when it was a member on that frontend already.
        @raise ValueError: C{uid} or C{frontend_id} is not a non-empty string.
        """
        return self._service.add(self.name, uid, frontend_id)

    def leave(self, uid: str, frontend_id: str) -> Deferred[bool]:
        """
        Remove the user C{uid} on C{frontend_id}.

        @return: a Deferred firing with whether it was a member there.
        """
        return self._service.leave(self.name, uid, frontend_id)

    def members(self) -> Deferred[list[str]]:
        """
        @return: a Deferred firing with the members' uids, each once, sorted.
        """
        return self._service.members(self.name)

    def members_by_frontend(self, frontend_id: str) -> Deferred[list[str]]:
        """
        @return: a Deferred firing with the uids of the members on
            C{frontend_id}, sorted (Pomelo's C{getMembersBySid}).
        """
        return self._service.members_by_frontend(self.name, frontend_id)

    def push_message(self, route: str, msg: Any, frontend_type: str | None = None) -> Deferred[list[str]]:
        """
        Push to every member: one C{push_uids} sys call per frontend holding members.

        @param frontend_type: push only to members on frontends of that type
            (Pomelo's C{stype}); by default to members on every frontend.
        @return: a Deferred firing with the uids that could not be reached
            (no session on their frontend, or that frontend is down).
        """
        return self._service.push_message(self.name, route, msg, frontend_type)

    def destroy(self) -> Deferred[None]:
        """
        Remove every member: the channel's keys are deleted.
        """
        return self._service.destroy_channel(self.name)


class GlobalChannelService:
    """
    The global channels as one server sees them (C{app.global_channels}).

    It opens its own lazy connection pool to the cluster's Redis on first use
    and closes it when the application has stopped (or on L{close}).

    The methods taking a channel C{name} are Pomelo's globalChannel API; the
    same is offered on L{GlobalChannel}.
    """

    def __init__(self, app: Application) -> None:
        self.app = app
        self.cluster = app.cluster
        self._redis = redis.RedisClient(self.cluster, app.reactor, "global channel", poolsize=4)
        # Fires once the previous push has sent its sys calls (see the module's "Order").
        self._turn: Deferred[None] = succeed(None)
        app.on("stop_server", lambda server_id: self.close())

    def __repr__(self) -> str:
        return f"<GlobalChannelService of {self.app.server_id}>"

    # Channels

    def get_channel(self, name: str) -> GlobalChannel:
        """
        A handle on the channel C{name}; a channel exists while it has members.

        @raise ValueError: C{name} is not a non-empty string.
        """
        return GlobalChannel(name, self)

    def destroy_channel(self, name: str) -> Deferred[None]:
        """
        Remove every member of the channel C{name}.
        """
        index = self._index(name)
        d = self._redis.call("eval", _DESTROY, [index], [index + ":"], what="destroy")
        return d.addCallback(lambda _: None)

    def add(self, name: str, uid: str, frontend_id: str) -> Deferred[bool]:
        """
        See L{GlobalChannel.add}.
        """
        _check("a uid", uid)
        _check("a frontend id", frontend_id)
        index = self._index(name)
        keys = [index, f"{index}:{_quote(frontend_id)}"]
        d = self._redis.call("eval", _ADD, keys, [uid, frontend_id], what="add")
        return d.addCallback(lambda n: int(n) == 1)

    def leave(self, name: str, uid: str, frontend_id: str) -> Deferred[bool]:
        """
        See L{GlobalChannel.leave}.
        """
        _check("a uid", uid)
        _check("a frontend id", frontend_id)
        index = self._index(name)
        keys = [index, f"{index}:{_quote(frontend_id)}"]
        d = self._redis.call("eval", _LEAVE, keys, [uid, frontend_id], what="leave")
        return d.addCallback(lambda n: int(n) == 1)

    def members(self, name: str) -> Deferred[list[str]]:
        """
        See L{GlobalChannel.members}.
        """
        return self._members(name).addCallback(lambda rows: sorted({uid for _, uids in rows for uid in uids}))

    def members_by_frontend(self, name: str, frontend_id: str) -> Deferred[list[str]]:
        """
        See L{GlobalChannel.members_by_frontend}.
        """
        _check("a frontend id", frontend_id)
        key = f"{self._index(name)}:{_quote(frontend_id)}"
        return self._redis.call("smembers", key, what="members_by_frontend").addCallback(sorted)

    def push_message(self, name: str, route: str, msg: Any, frontend_type: str | None = None) -> Deferred[list[str]]:
        """
        See L{GlobalChannel.push_message}.
        """
        lookup = self._members(name)
        previous, turn = self._turn, Deferred()
        self._turn = turn
        return Deferred.fromCoroutine(self._push(lookup, previous, turn, route, msg, frontend_type))

    async def _push(self, lookup: Deferred[list[tuple[str, list[str]]]], previous: Deferred[None],
                    turn: Deferred[None], route: str, msg: Any, frontend_type: str | None) -> list[str]:
        # Not the previous push's own Deferred: cancelling this push must not cancel it.
        waiter: Deferred[None] = Deferred()
        previous.addBoth(lambda _: None if waiter.called else waiter.callback(None))
        try:
            try:
                await waiter
                rows = await lookup
            except BaseException:
                # Cancelled: the members read for nothing are dropped.
                lookup.addErrback(lambda f: None)
                lookup.cancel()
                raise
            if frontend_type is not None:
                rows = [(frontend_id, uids) for frontend_id, uids in rows
                        if getattr(self.app.server_by_id(frontend_id), "type", None) == frontend_type]
            members = [(uid, frontend_id) for frontend_id, uids in rows for uid in uids]
            # Sends every sys call before returning.
            pushed = self.app.channels.push_message_by_uids(route, msg, members) if members else succeed([])
        finally:
            # The next push goes once this one and every one before it have sent theirs.
            previous.addBoth(lambda _: turn.callback(None))
        return await pushed

    # Redis

    def close(self) -> Deferred[None]:
        """
        Close the connection pool; later calls fail with L{RedisUnavailable}.

        @return: a Deferred firing once the pool's connections are closed.
        """
        return self._redis.close("the global channel service is closed")

    def _index(self, name: str) -> str:
        return redis.key(self.cluster, "gchannel", _quote(_check("a global channel name", name)))

    def _members(self, name: str) -> Deferred[list[tuple[str, list[str]]]]:
        index = self._index(name)
        return self._redis.call("eval", _MEMBERS, [index], [index + ":"], what="members").addCallback(
            lambda rows: [(frontend_id, list(uids)) for frontend_id, uids in rows or ()]
        )
