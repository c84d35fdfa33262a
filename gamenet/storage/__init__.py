"""
Session storage: where bound sessions' settings live between connections.

L{MemoryStorage} is the default; L{gamenet.storage.redis.RedisStorage} keeps
them in Redis for clusters of several processes or machines; a game may
register its own L{gamenet.interfaces.IStorageHandler} as a plugin.
"""

from .memory import MemoryStorage, shared_memory_storage

__all__ = ["MemoryStorage", "shared_memory_storage"]
