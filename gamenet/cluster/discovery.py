"""
Service discovery through Redis (C{discovery = redis} in C{[cluster]}).

Each server keeps one key, C{gamenet:<cluster>:servers:<id>}, holding its
record as compact JSON::

    {"client_port": 3010, "frontend": true, "host": "10.0.0.5", "id": "connector-1",
     "metadata": {}, "node_port": 4010, "type": "connector"}

(plus C{client_host} when a frontend sets one; L{gamenet.cluster.records}
encodes and decodes it). The key is written with C{SET ... PX} for
C{discovery_ttl} and renewed every C{discovery_ttl / 3}, so it outlives a
server only briefly. Joins and leaves are announced on the channel
C{gamenet:<cluster>:db<redis_db>:membership} as
C{{"event": "join"|"leave", "server": {record}}} (L{gamenet.cluster.membership}).

Every server keeps its view of the cluster (C{app.registry}, which the node's
links follow) from two sources:

 - the membership channel: a join adds the server at once, a leave removes it
   at once (a server that stops cleanly deletes its key and announces its leave);
 - a full resync on start, whenever the subscription is (re)made, and every
   C{discovery_ttl} seconds: C{SCAN} of the keys (never C{KEYS}) and C{MGET},
   after which the registry holds exactly the servers found plus this one.

The registry starts with only this server: servers of the cluster file are
what the master starts, but peers know of each other only through Redis, so
a server started by hand with C{--server}, from a file the others do not
have, or on another machine, joins a running cluster.

B{Joining.} A starting server subscribes, writes its key, reads every
registration, announces its join, and only then takes the servers it read
into its registry. Peers that hear the join link to it at once, and a node
accepts links only from servers in its registry: reading first means the
newcomer already knows them. (Its own links to peers may still reach one
before that peer has heard the join; such a link is refused once, logged,
and retried by the link's backoff within a second.)

B{How fast a dead server is dropped.} A server that dies without leaving
keeps its key until the key expires: at most C{discovery_ttl} after its last
renewal, which was before it died. The first resync after that no longer
finds it and removes it, and resyncs run every C{discovery_ttl}; so every
peer drops it within B{2 x discovery_ttl} of its death (plus one Redis round
trip). Routing stops choosing it earlier in most cases: a dead process's node
links close at once, a hung one's fail their pings within about
C{rpc_timeout}; the removal from the registry then stops its link for good.

B{When Redis goes away.} Every call is bounded by C{storage_timeout}
(L{gamenet.redis.RedisClient}); a call that fails changes nothing, so the last
view is kept (the registry is never emptied because Redis is unreachable;
routing goes on over the links already made) and registration is retried
every C{discovery_ttl / 3}. The connections' reconnection backoff is capped
at C{discovery_ttl / 3} (txredisapi's default cap is 10 s), so a server is
registered again within about that of Redis coming back. txredisapi does
not subscribe again after a reconnection, so the subscriber subscribes from
its C{connectionMade}; once subscribed, the server renews its registration
(writing it again, and announcing a join, if Redis lost it) and resyncs.
A Redis that comes back empty holds only the servers that have registered
again so far, so until Redis has been reachable for 0.9 x C{discovery_ttl}
a resync adds servers but removes none; by then every live server has
registered again. (A server that died while Redis was away is therefore
dropped within about 2 x C{discovery_ttl} of Redis coming back.) Each
change of state (Redis unreachable or reachable again, subscription lost or
made) is logged once.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from .. import redis
from ..config import ServerConfig
from ..redis import RedisUnavailable
from .membership import JOIN, LEAVE, STOPPED, MembershipSubscription, announcement, dumps, text_of
from .records import decode_server, encode_server

if TYPE_CHECKING:
    from ..app import Application

log = Logger()

SCAN_COUNT = 200
MGET_CHUNK = 500


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "\\*?[]" else c for c in text)


class RedisDiscovery(Service):
    """
    Registers this server in Redis and keeps C{app.registry} to the servers
    registered there (see the module's description).

    Owned by the server's L{gamenet.cluster.ClusterNode}, which starts it
    after its links follow the registry and stops it first.

    @ivar key: this server's key.
    @ivar channel: the membership channel.
    @ivar resyncs: how many full resyncs have completed.
    """

    def __init__(self, app: Application, clock: Any = None) -> None:
        self.app = app
        self.reactor = app.reactor
        self.clock = clock if clock is not None else app.reactor
        cluster = app.cluster
        self.ttl = cluster.discovery_ttl
        self.timeout = cluster.storage_timeout
        self.key = redis.key(cluster, "servers", app.server_id)
        self.prefix = redis.key(cluster, "servers", "")
        # Pub/sub is shared by every database of a Redis server: the channel
        # names the database, so that clusters in other databases do not hear it.
        self.channel = redis.key(cluster, f"db{cluster.redis_db}", "membership")
        self.resyncs = 0
        self._record = encode_server(app.server)
        self._value = dumps(self._record)
        # Both connections reconnect well within the registration's lifetime.
        self._redis = redis.RedisClient(cluster, self.clock, "discovery", reactor=self.reactor,
                                        max_delay=self.ttl / 3, every_failure=True, observer=self._observe,
                                        closed=STOPPED)
        self._subscription = MembershipSubscription(
            cluster, self.clock, self.reactor, app.server_id, self.channel, heard=self._heard,
            subscribed=lambda: self._background(self._after_subscribing()), failed=self._unreachable,
            lost=self._forget_reached)
        self._renew_loop: LoopingCall | None = None
        self._resync_loop: LoopingCall | None = None
        self._reachable: bool | None = None
        self._reachable_since: float | None = None
        self._registering = False
        self._registered = self._was_registered = self._joined = False
        self._resyncing = False
        self._resync_again = False
        self._touched: set[str] = set()
        self._bad: set[tuple[str, str]] = set()
        self._stopping = False
        # Peers are learnt only through Redis: the servers of the cluster
        # file are not this server's view.
        app.registry.replace([app.server])

    def __repr__(self) -> str:
        return f"<RedisDiscovery {self.app.server_id} {self.prefix}*>"

    @property
    def subscribed(self) -> bool:
        """
        Whether the membership subscription is up now.
        """
        return self._subscription.subscribed

    # Service

    def startService(self) -> None:
        super().startService()
        self._stopping = False
        self._registered = self._was_registered = self._joined = False
        self._redis.connect()
        self._subscription.start()
        self._renew_loop = LoopingCall(self._renew)
        self._renew_loop.clock = self.clock
        self._renew_loop.start(self.ttl / 3, now=False)
        self._resync_loop = LoopingCall(self._resync_now)
        self._resync_loop.clock = self.clock
        self._resync_loop.start(self.ttl, now=False)
        self._background(self._begin())

    def stopService(self) -> Deferred[None]:  # type: ignore[override]
        super().stopService()
        return Deferred.fromCoroutine(self._stop())

    async def _begin(self) -> None:
        await self._quietly(self._register())
        await self._resync()

    async def _stop(self) -> None:
        self._stopping = True
        unsubscribed = self._subscription.stop()
        for loop in (self._renew_loop, self._resync_loop):
            if loop is not None and loop.running:
                loop.stop()
        if self._redis.closed is None:
            try:
                await self._redis.call("delete", self.key, what="DEL")
                await self._redis.call("publish", self.channel, announcement(LEAVE, self._record), what="PUBLISH")
                log.info("{server_id}: left the cluster in redis", server_id=self.app.server_id)
            except Exception as e:
                log.warn("{server_id}: could not announce the leave in redis ({reason}); peers drop this "
                         "server when its registration lapses", server_id=self.app.server_id, reason=e)
        closed = self._redis.bound(self._redis.close(STOPPED), "disconnect")
        await DeferredList([unsubscribed, closed], consumeErrors=True)

    def _background(self, coroutine: Any) -> None:
        Deferred.fromCoroutine(coroutine).addErrback(
            lambda failure: log.failure("{server_id}: discovery failed", failure, server_id=self.app.server_id)
        )

    # Redis calls and the state they reveal

    def _observe(self, error: str | None) -> None:
        if error is None:
            self._reached()
        else:
            self._unreachable(error)

    def _unreachable(self, reason: str) -> None:
        self._reachable_since = None
        if self._stopping or self._reachable is False:
            return
        self._reachable = False
        cluster = self.app.cluster
        log.warn("{server_id}: redis at {host}:{port} is unreachable ({reason}); keeping the last view of "
                 "{count} servers and retrying", server_id=self.app.server_id, host=cluster.redis_host,
                 port=cluster.redis_port, reason=reason, count=len(self.app.registry.servers))

    def _forget_reached(self) -> None:
        if not self._stopping:
            self._reachable_since = None

    def _reached(self) -> None:
        if self._reachable_since is None:
            self._reachable_since = self.clock.seconds()
        if self._reachable is True or self._stopping:
            return
        cluster = self.app.cluster
        if self._reachable is False:
            log.info("{server_id}: redis at {host}:{port} is reachable again", server_id=self.app.server_id,
                     host=cluster.redis_host, port=cluster.redis_port)
        self._reachable = True

    def _removals_allowed(self) -> bool:
        # Until Redis has been reachable for 0.9 x discovery_ttl (it may have
        # come back empty), live servers may not have registered again yet.
        since = self._reachable_since
        return since is not None and self.clock.seconds() - since >= 0.9 * self.ttl

    # Registration

    def _renew(self) -> None:
        self._background(self._quietly(self._register()))

    async def _quietly(self, coroutine: Any) -> None:
        try:
            await coroutine
        except RedisUnavailable:
            pass

    async def _register(self) -> None:
        """
        Renew this server's key, or write it when Redis does not have it
        (the first time, or Redis lost it), then announce the join if it is
        not announced yet.
        """
        if self._registering or self._stopping:
            return
        self._registering = True
        try:
            milliseconds = max(1, int(self.ttl * 1000))
            if self._registered:
                renewed = await self._redis.call("set", self.key, self._value, pexpire=milliseconds,
                                                 only_if_exists=True, what="SET XX")
                if renewed is None:
                    self._registered = self._joined = False
            # Commands go out in order on one connection: none issued after
            # the stop's DEL may write the key again.
            if not self._registered and not self._stopping:
                await self._redis.call("set", self.key, self._value, pexpire=milliseconds, what="SET")
                log.info("{server_id}: {what} in redis as {key}", server_id=self.app.server_id, key=self.key,
                         what="registered again (the registration was gone)" if self._was_registered
                         else "registered")
                self._registered = self._was_registered = True
            if not self._joined and self.resyncs and not self._stopping:
                await self._announce()
        finally:
            self._registering = False

    async def _announce(self) -> None:
        # The first join waits until this server has read its peers (see
        # _resync): peers that hear it link to this server at once, and
        # this server lets in only the servers it knows.
        await self._redis.call("publish", self.channel, announcement(JOIN, self._record), what="PUBLISH")
        self._joined = True

    # The view

    def _resync_now(self) -> None:
        self._background(self._resync())

    async def _resync(self) -> None:
        """
        Read every registration and make the registry hold those servers
        (and this one). Failing, it changes nothing.
        """
        if self._stopping:
            return
        if self._resyncing:
            self._resync_again = True
            return
        self._resyncing = True
        try:
            while True:
                self._resync_again = False
                self._touched = set()
                try:
                    found = await self._read_all()
                except RedisUnavailable:
                    return
                if self._stopping:
                    return
                if self._registered and not self._joined:
                    try:
                        await self._announce()
                    except RedisUnavailable:
                        pass  # the next renewal announces it
                    if self._stopping:
                        return
                self._apply(found)
                self.resyncs += 1
                if not self._resync_again:
                    return
        finally:
            self._resyncing = False

    async def _read_all(self) -> dict[str, ServerConfig]:
        pattern = _glob_escape(self.prefix) + "*"
        keys: set[str] = set()
        cursor = "0"
        while True:
            reply = await self._redis.call("scan", cursor, pattern, SCAN_COUNT, what="SCAN")
            cursor = text_of(reply[0])
            keys.update(text_of(k) for k in reply[1])
            if cursor == "0":
                break
        ordered = sorted(k for k in keys if k.startswith(self.prefix))
        found: dict[str, ServerConfig] = {}
        for start in range(0, len(ordered), MGET_CHUNK):
            chunk = ordered[start:start + MGET_CHUNK]
            values = await self._redis.call("mget", chunk, what="MGET")
            for key, value in zip(chunk, values):
                if value is None:
                    continue  # expired or deleted since the scan
                server = self._parse(text_of(value), key)
                if server is not None and server.id != self.app.server_id:
                    found[server.id] = server
        return found

    def _parse(self, value: str, where: str) -> ServerConfig | None:
        try:
            server = decode_server(json.loads(value))
            if where[len(self.prefix):] != server.id:
                raise ValueError(f"it holds server {server.id!r}")
        except ValueError as e:
            if (where, value) not in self._bad:  # once, not at every resync
                self._bad.add((where, value))
                log.warn("{server_id}: ignoring a bad server record in {where}: {error}",
                         server_id=self.app.server_id, where=where, error=e)
            return None
        return server

    def _apply(self, found: dict[str, ServerConfig]) -> None:
        registry = self.app.registry
        current = {sid: s for sid, s in registry.servers.items() if sid != self.app.server_id}
        # A join or leave that arrived while the resync was reading is newer
        # than what the resync read.
        for sid in self._touched:
            if sid in current:
                found[sid] = current[sid]
            else:
                found.pop(sid, None)
        gone = [sid for sid in current if sid not in found]
        if gone and not self._removals_allowed():
            for sid in gone:
                found[sid] = current[sid]
            gone = []
        new = [sid for sid in found if current.get(sid) != found[sid]]
        for sid in gone:
            log.info("{server_id}: server {peer_id} is no longer registered; dropping it",
                     server_id=self.app.server_id, peer_id=sid)
        for sid in new:
            log.info("{server_id}: found server {peer_id} ({type}) in redis", server_id=self.app.server_id,
                     peer_id=sid, type=found[sid].type)
        if gone or new:
            self.app.replace_servers(list(found.values()))

    # Membership

    async def _after_subscribing(self) -> None:
        # Redis is back: register again now (Redis may have come back empty)
        # and read again what happened while unsubscribed. The command
        # connection reconnects on its own schedule: wait for it (within a
        # renewal period), so that the first call does not time out.
        try:
            await self._redis.ready(self.ttl / 3 + self.timeout)
        except RedisUnavailable:
            pass  # the renewals go on trying
        try:
            await self._register()
        except RedisUnavailable:
            return
        await self._resync()

    def _heard(self, event: str, server: ServerConfig) -> None:
        if self._stopping or not self.running:
            return
        if server.id == self.app.server_id:
            if event == JOIN and encode_server(server) != self._record:
                log.warn("{server_id}: another server registered with this server's id, at {host}:{port}",
                         server_id=self.app.server_id, host=server.host, port=server.node_port)
            return
        self._touched.add(server.id)
        if event == JOIN:
            if self.app.registry.get(server.id) != server:
                log.info("{server_id}: server {peer_id} ({type}) joined", server_id=self.app.server_id,
                         peer_id=server.id, type=server.type)
                self.app.add_servers([server])
        elif event == LEAVE:
            if server.id in self.app.registry:
                log.info("{server_id}: server {peer_id} left", server_id=self.app.server_id, peer_id=server.id)
                self.app.remove_servers([server.id])
        else:
            log.warn("{server_id}: ignoring an unknown event {event!r} on {channel}", server_id=self.app.server_id,
                     event=event, channel=self.channel)

