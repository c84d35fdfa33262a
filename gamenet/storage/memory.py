"""
Session storage in this process's memory, with records that expire like the
Redis ones. The default: it needs no service, and survives a reconnect to
any frontend of the same process (all of them with C{--all} or in tests),
not a restart.
"""

from __future__ import annotations

import copy
from typing import Any

import attrs
from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from ..interfaces import IStorageHandler


@implementer(IStorageHandler)
@attrs.define
class MemoryStorage:
    """
    Stored settings by uid, each with an expiry time.

    @ivar ttl: seconds a record lives after its last write or heartbeat.
    @ivar clock: where time comes from.
    """

    ttl: float
    clock: Any
    _records: dict[str, tuple[dict[str, Any], float]] = attrs.field(factory=dict, init=False)

    def _live(self, uid: str) -> dict[str, Any] | None:
        record = self._records.get(uid)
        if record is None:
            return None
        if record[1] <= self.clock.seconds():
            del self._records[uid]
            return None
        return record[0]

    def storage(self, session: Any) -> Deferred[None]:
        """
        Store a copy of the session's settings under its uid.
        """
        self._records[session.uid] = (copy.deepcopy(session.settings), self.clock.seconds() + self.ttl)
        self._purge()
        return succeed(None)

    def delete(self, session: Any) -> Deferred[None]:
        """
        Forget the uid's record.
        """
        self._records.pop(session.uid, None)
        return succeed(None)

    def query(self, uid: str) -> Deferred[dict[str, Any] | None]:
        """
        A copy of the uid's settings, or C{None}.
        """
        settings = self._live(uid)
        return succeed(copy.deepcopy(settings) if settings is not None else None)

    def heartbeat(self, session: Any) -> Deferred[None]:
        """
        Extend the life of the uid's record.
        """
        settings = self._live(session.uid)
        if settings is not None:
            self._records[session.uid] = (settings, self.clock.seconds() + self.ttl)
        return succeed(None)

    def _purge(self) -> None:
        # Expired records go when something is stored: cheap and bounded by writes.
        now = self.clock.seconds()
        if len(self._records) % 64 == 0:
            for uid in [uid for uid, (_, expires) in self._records.items() if expires <= now]:
                del self._records[uid]


_SHARED: dict[tuple[str, int], MemoryStorage] = {}


def shared_memory_storage(cluster_name: str, ttl: float, clock: Any) -> MemoryStorage:
    """
    The memory storage of a cluster in this process, shared by its frontends.
    """
    key = (cluster_name, id(clock))
    storage = _SHARED.get(key)
    if storage is None:
        storage = _SHARED[key] = MemoryStorage(ttl, clock)
    return storage
