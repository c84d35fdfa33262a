"""
The master's block list: client addresses and networks refused by every
frontend, kept in the cluster's block store and pushed to the frontends.
Tested in C{tests/test_fleet.py}.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred, DeferredList, DeferredLock
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..connector.blocklist import Blocklist
from ..errors import GamenetError
from ..storage.blocked import BlockStore

log = Logger()


class Blocking:
    """
    Changes to the block list: each checked, saved, then pushed
    (C{set_blocked}) to every frontend that is up, one change at a time.
    """

    def __init__(self, store: BlockStore, frontends: Callable[[], list[str]],
                 call: Callable[..., Deferred[Any]]) -> None:
        """
        @param store: where the block list is kept.
        @param frontends: the ids of the frontends up now.
        @param call: makes a control call, C{call(server_id, name, **kwargs)},
            logging its failure.
        """
        self.store = store
        self._frontends = frontends
        self._call = call
        self._blocked: list[str] | None = None
        self._lock = DeferredLock()

    def load(self) -> None:
        """
        Load the block list now, so that frontends logging in get it; a
        failure is logged, and the next use tries again.
        """
        loading = Deferred.fromCoroutine(self._current())
        loading.addErrback(lambda f: log.warn("admin: {error}", error=f.getErrorMessage()))

    def greet(self, server_id: str) -> None:
        """
        Tell a frontend that has just logged in the block list, once it is known.
        """
        if self._blocked is not None:
            self._call(server_id, "set_blocked", networks=self._blocked)

    async def blocked(self) -> list[str]:
        """
        The blocked addresses and networks.

        @raise GamenetError: 503, the block list cannot be loaded.
        """
        return list(await self._current())

    async def _current(self) -> list[str]:
        if self._blocked is None:
            try:
                self._blocked = list(Blocklist(await self.store.load()))
            except Exception as e:
                raise GamenetError(f"cannot load the block list: {e}", 503) from None
        return self._blocked

    async def block(self, networks: list[str]) -> list[str]:
        """
        Block more addresses or networks on every frontend, now and after
        restarts: checked, saved, then pushed to the frontends that are up.

        @return: the whole block list, in canonical form (C{203.0.113.7/32}).
        @raise GamenetError: 400, an entry that is not an address or a
            network; 503, the block list cannot be loaded or saved.
        """
        _parse(networks)
        return await self._change(lambda current: list(Blocklist([*current, *networks])))

    async def unblock(self, networks: list[str]) -> list[str]:
        """
        Unblock addresses or networks (C{203.0.113.7} unblocks C{203.0.113.7/32}).

        @return: the whole block list.
        @raise GamenetError: 400, an entry that is not an address or a
            network; 404, one that is not blocked (then nothing is changed);
            503, the block list cannot be loaded or saved.
        """
        unblocked = _parse(networks)

        def change(current: list[str]) -> list[str]:
            missing = [network for network in unblocked if network not in current]
            if missing:
                raise GamenetError(f"{missing[0]} is not blocked (blocked: {', '.join(current) or 'none'})", 404)
            return [network for network in current if network not in unblocked]

        return await self._change(change)

    async def _change(self, change: Callable[[list[str]], list[str]]) -> list[str]:
        await self._lock.acquire()
        try:
            new = change(await self._current())
            try:
                await self.store.save(new)
            except Exception as e:
                log.failure("admin: cannot save the block list", Failure())
                raise GamenetError(f"cannot save the block list: {e}", 503) from None
            self._blocked = new
            log.info("admin: block list is now {networks}", networks=", ".join(new) or "empty")
            await DeferredList([self._call(server_id, "set_blocked", networks=new)
                                for server_id in self._frontends()])
            return list(new)
        finally:
            self._lock.release()


def _parse(networks: list[str]) -> list[str]:
    """
    @return: C{networks} in canonical form.
    @raise GamenetError: 400, one is not an address or a network.
    """
    try:
        return list(Blocklist(networks))
    except ValueError as e:
        raise GamenetError(str(e), 400) from None
