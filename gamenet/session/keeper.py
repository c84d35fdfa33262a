"""
Keeping bound sessions' settings in an L{IStorageHandler}, with mqant's
semantics made right.

 - On bind, the stored settings of the uid are merged into the session, the
   live session's keys winning, then the result is stored.
 - After every committed change (C{push}, C{push_all}, a backend's C{set} or
   C{delete}), the settings are stored; changes made in one reactor turn are
   stored once.
 - Every C{heartbeat_interval} seconds, each bound session's record is told
   to live on.
 - On unbind (an explicit logout), the record is deleted.

The storage is never in the way of a player: every call is bounded by
C{timeout}, and once a call has failed the storage counts as down: later
calls do not wait for it at all until a retry gets an answer. A failed call
is logged and counted in C{metrics}; the session goes on from memory. Every
C{retry_interval} seconds the keeper retries what is owed: the query of a
session whose stored settings could not be read (it is not written before
that, so that its record is never overwritten by a partial one), then the
last settings of every session whose write failed. So nothing a session
committed is lost while the frontend runs.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

if TYPE_CHECKING:
    from ..interfaces import IStorageHandler
    from .service import SessionService
    from .session import Session

log = Logger()


class SettingsKeeper(Service):
    """
    Stores the settings of one frontend's bound sessions; a service of its
    application, stopped after the clients are gone so that it writes last.

    @ivar metrics: counters C{storage_writes}, C{storage_errors},
        C{storage_queries}, C{storage_restored}, C{storage_deletes},
        C{storage_heartbeats}.
    """

    def __init__(
        self,
        handler: IStorageHandler,
        sessions: SessionService,
        clock: Any,
        timeout: float = 2.0,
        heartbeat_interval: float = 60.0,
        retry_interval: float = 5.0,
    ) -> None:
        self.handler = handler
        self.sessions = sessions
        self.clock = clock
        self.timeout = timeout
        self.metrics: Counter[str] = Counter()
        self._changed: dict[int, Session] = {}
        self._waiters: list[Deferred[None]] = []
        self._flush_call: Any = None
        self._dirty: dict[str, Session] = {}
        self._unrestored: dict[str, Session] = {}
        self.healthy = True
        self._heartbeats = LoopingCall(self._heartbeat)
        self._heartbeats.clock = clock
        self._heartbeat_interval = heartbeat_interval
        self._retries = LoopingCall(self._retry)
        self._retries.clock = clock
        self._retry_interval = retry_interval

    def startService(self) -> None:
        """
        Start the heartbeats and retries.
        """
        super().startService()
        self._heartbeats.start(self._heartbeat_interval, now=False)
        self._retries.start(self._retry_interval, now=False)

    def stopService(self) -> Deferred[None]:  # type: ignore[override]
        """
        Stop, after one last write of what changed.
        """
        super().stopService()
        for call in (self._heartbeats, self._retries):
            if call.running:
                call.stop()
        return self._flush()

    def _bounded(self, d: Any) -> Deferred[Any]:
        return maybeDeferred(lambda: d).addTimeout(self.timeout, self.clock)

    def _failed(self, failure: Failure, what: str, uid: str | None) -> None:
        self.metrics["storage_errors"] += 1
        if self.healthy:
            self.healthy = False
            log.warn("storage is failing ({what} for {uid}: {error}); sessions go on from memory and "
                     "changes are written when it answers again", what=what, uid=uid,
                     error=failure.getErrorMessage())

    def _answered(self) -> None:
        if not self.healthy:
            self.healthy = True
            log.info("storage answers again")

    async def restore(self, session: Session) -> None:
        """
        Merge the stored settings of the session's uid under its live ones,
        then store the result. With the storage down, the query is owed and
        retried later.
        """
        uid = session.uid
        assert uid is not None
        if not self.healthy:
            self._unrestored[uid] = session
            return
        if await self._query(session, uid):
            self.changed(session)

    async def _query(self, session: Session, uid: str) -> bool:
        self.metrics["storage_queries"] += 1
        try:
            stored = await self._bounded(self.handler.query(uid))
        except Exception:
            self._failed(Failure(), "query", uid)
            self._unrestored[uid] = session
            return False
        self._answered()
        self._unrestored.pop(uid, None)
        if isinstance(stored, dict) and stored and not session.closed and session.uid == uid:
            self.metrics["storage_restored"] += 1
            for key, value in stored.items():
                session.settings.setdefault(key, value)
        return True

    def changed(self, session: Session) -> Deferred[None]:
        """
        A bound session's settings changed: store them at the end of this turn.

        @return: a Deferred firing once stored, or once the write failed (it
            is then retried), never later than C{timeout}.
        """
        if session.uid is None or session.uid in self._unrestored:
            return succeed(None)
        if not self.healthy:
            self._dirty[session.uid] = session
            return succeed(None)
        self._changed[session.id] = session
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        if self._flush_call is None:
            self._flush_call = self.clock.callLater(0, self._flush)
        return d

    def _flush(self) -> Deferred[None]:
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        changed, self._changed = list(self._changed.values()), {}
        waiters, self._waiters = self._waiters, []
        d = Deferred.fromCoroutine(self._store_all(changed))
        return d.addCallback(lambda _: [waiter.callback(None) for waiter in waiters] and None)

    async def _store_all(self, sessions: list[Session]) -> None:
        writes = [(session, self._store(session)) for session in sessions if session.uid is not None]
        for _, d in writes:
            await d

    def _store(self, session: Session) -> Deferred[None]:
        uid = session.uid
        assert uid is not None
        self.metrics["storage_writes"] += 1
        d = self._bounded(self.handler.storage(session))

        def stored(_: Any) -> None:
            self._answered()
            if self._dirty.get(uid) is session:
                del self._dirty[uid]

        def failed(failure: Failure) -> None:
            self._failed(failure, "write", uid)
            self._dirty[uid] = session

        return d.addCallbacks(stored, failed)

    def forget(self, session: Session, uid: str) -> Deferred[None]:
        """
        The session unbound C{uid} (a logout): delete its record.
        """
        self._dirty.pop(uid, None)
        self._unrestored.pop(uid, None)
        self.metrics["storage_deletes"] += 1
        return self._bounded(self.handler.delete(_Record(uid, session))).addErrback(self._failed, "delete", uid)

    def _heartbeat(self) -> None:
        if not self.healthy:
            return
        for session in self.sessions:
            if session.uid is not None:
                self.metrics["storage_heartbeats"] += 1
                self._bounded(self.handler.heartbeat(session)).addErrback(self._failed, "heartbeat", session.uid)

    def _retry(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._pay_debts())

    async def _pay_debts(self) -> None:
        for uid, session in list(self._unrestored.items()):
            if session.uid != uid or session.closed:
                del self._unrestored[uid]
            elif await self._query(session, uid):
                self._dirty[uid] = session
            else:
                return
        for uid, session in list(self._dirty.items()):
            if session.uid == uid:
                await self._store(session)
                if not self.healthy:
                    return
            else:
                del self._dirty[uid]


class _Record:
    """
    What C{delete} gets: the session as it was bound (its uid is gone from
    the live session by then).
    """

    __slots__ = ("uid", "id", "frontend_id", "settings")

    def __init__(self, uid: str, session: Session) -> None:
        self.uid = uid
        self.id = session.id
        self.frontend_id = session.frontend_id
        self.settings = dict(session.settings)
