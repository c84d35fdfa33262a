"""
Session storage in Redis, for clusters whose frontends run in several
processes or on several machines.

One string key per uid, C{gamenet:<cluster>:session:<uid>}, holding the
settings as compact JSON and expiring C{storage_ttl} seconds (whole, at least
one) after its last write or heartbeat. Every call is bounded by the cluster's
C{storage_timeout} and fails with L{gamenet.redis.RedisUnavailable} when Redis
does not answer in time; the L{gamenet.session.keeper.SettingsKeeper} logs,
counts and retries.

The commands of one storage go over one connection, so Redis applies them in
the order they were issued: a write followed by a logout's delete never
leaves the record behind, and of two writes the later one wins. Commands
that timed out while Redis was away are dropped, not replayed when it comes
back.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from zope.interface import implementer

from .. import redis
from ..config import ClusterConfig
from ..interfaces import IStorageHandler
from ..protocol.serializer import dumps, loads

log = Logger()


@implementer(IStorageHandler)
@attrs.define
class RedisStorage:
    """
    Stored settings by uid in Redis.

    @ivar cluster: the cluster: its name prefixes the keys; C{redis_*} say
        where Redis is; C{storage_ttl} and C{storage_timeout} apply.
    @ivar clock: where the timeouts are scheduled.
    @ivar redis: its Redis client (one connection, made on the first call).
    """

    cluster: ClusterConfig
    clock: Any
    redis: redis.RedisClient = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.redis = redis.RedisClient(self.cluster, self.clock, "storage")

    @classmethod
    def for_cluster(cls, cluster: ClusterConfig, clock: Any) -> RedisStorage:
        """
        The storage of C{cluster}; it connects to Redis on its first call.
        """
        return cls(cluster, clock)

    @property
    def ttl(self) -> int:
        """
        Seconds a record lives: C{storage_ttl} rounded up, at least 1.
        """
        return max(1, math.ceil(self.cluster.storage_ttl))

    def key(self, uid: str) -> str:
        """
        The Redis key of C{uid}'s record.
        """
        return redis.key(self.cluster, "session", uid)

    def _write(self, uid: str, settings: dict[str, Any]) -> Deferred[Any]:
        try:
            value = dumps(settings)
        except (TypeError, ValueError) as e:
            return fail(e)
        return self.redis.call("set", self.key(uid), value, self.ttl, what="write")

    def storage(self, session: Any) -> Deferred[None]:
        """
        Store the session's settings under its uid (C{SET key json EX ttl}).

        @return: a Deferred; it fails with C{TypeError} or C{ValueError} when
            the settings are not JSON (NaN, infinity, other types).
        """
        return self._write(session.uid, session.settings).addCallback(lambda _: None)

    def delete(self, session: Any) -> Deferred[None]:
        """
        Forget the uid's record (C{DEL}).
        """
        return self.redis.call("delete", self.key(session.uid), what="delete").addCallback(lambda _: None)

    def query(self, uid: str) -> Deferred[dict[str, Any] | None]:
        """
        The uid's settings (C{GET}), or C{None}: nothing stored, or a value
        that is not a JSON object (logged).
        """

        def parse(value: Any) -> dict[str, Any] | None:
            if value is None:
                return None
            try:
                settings = loads(value.encode("utf-8") if isinstance(value, str) else value)
            except ValueError:
                settings = None
            if not isinstance(settings, dict):
                log.warn("storage query for {uid}: {key} does not hold a JSON object; ignored",
                         uid=uid, key=self.key(uid))
                return None
            return settings

        return self.redis.call("get", self.key(uid), what="query").addCallback(parse)

    def heartbeat(self, session: Any) -> Deferred[None]:
        """
        Extend the life of the uid's record (C{EXPIRE key ttl}). When the
        record is gone (Redis restarted empty, or it expired), write it again
        from the session, if the session is still bound to that uid.
        """
        uid = session.uid

        def extended(found: Any) -> Any:
            if int(found) == 0 and session.uid == uid:
                return self._write(uid, session.settings)
            return None

        return self.redis.call("expire", self.key(uid), self.ttl, what="heartbeat").addCallback(extended).addCallback(
            lambda _: None
        )

    def close(self) -> Deferred[None]:
        """
        Close the connection, if one was made; calls after this connect again.
        """
        return self.redis.close()
