"""
Session storage: where bound sessions' settings live between connections.

L{MemoryStorage} is the default; L{gamenet.storage.redis.RedisStorage} keeps
them in Redis for clusters of several processes or machines; a game may
register its own L{gamenet.interfaces.IStorageHandler} as a plugin.
"""

from __future__ import annotations

from typing import Any, Iterable

from ..component import STORAGE
from ..config import ClusterConfig
from ..interfaces import IRegistration, IStorageHandler
from .memory import MemoryStorage, shared_memory_storage

__all__ = ["MemoryStorage", "choose_storage", "shared_memory_storage"]


def choose_storage(cluster: ClusterConfig, registrations: Iterable[IRegistration], app: Any,
                   reactor: Any) -> IStorageHandler:
    """
    The storage the cluster file's C{storage} names: C{memory}, C{redis}, or
    the game's storage plugin of that name (bound with C{app}).

    @raise TypeError: the plugin does not provide L{IStorageHandler}.
    @raise ValueError: no storage has that name.
    """
    if cluster.storage == "memory":
        return shared_memory_storage(cluster.name, cluster.storage_ttl, reactor)
    if cluster.storage == "redis":
        from .redis import RedisStorage

        return RedisStorage.for_cluster(cluster, reactor)
    for registration in registrations:
        if registration.kind == STORAGE and registration.name == cluster.storage:
            handler = registration.bind(app).instance
            if not IStorageHandler.providedBy(handler):
                raise TypeError(f"storage {cluster.storage!r}: {handler!r} does not provide IStorageHandler")
            return handler
    raise ValueError(f"storage {cluster.storage!r}: not memory, redis, or a storage plugin of the game")
