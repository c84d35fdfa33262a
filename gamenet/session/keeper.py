"""
Keeping bound sessions' settings in an L{IStorageHandler}, with mqant's
semantics made right.

 - On bind, the stored settings of the uid are merged into the session, the
   live session's keys winning, then the result is stored.
 - After every committed change (C{push}, C{push_all}, C{set} or C{delete} on
   the frontend, a backend's C{set} or C{delete}), the settings are stored;
   changes made in one reactor turn are stored once.
 - Every C{heartbeat_interval} seconds, each bound session's record is told
   to live on.
 - On unbind (an explicit logout), the record is deleted.

The storage is never in the way of a player: every call is bounded by
C{timeout}, and once a call has failed the storage counts as down, so later
calls do not wait for it at all. Every C{retry_interval} seconds the keeper
pays what it owes, oldest kind first: deletes of logged-out uids, queries of
sessions whose stored settings could not be read (such a session is not
written before its query succeeds, so that its record is never overwritten
by a partial one; nor is any session while its bind's query is out), then
the last settings of every session whose write failed, closed sessions
included; with nothing owed it probes the storage with one heartbeat. On
stop it pays once more and logs what it could not. So nothing a session
committed is lost while the frontend runs and the storage comes back.

A value the storage refuses (C{TypeError} or C{ValueError}: one that cannot
be serialized, say) is not an outage: it is logged and counted as
C{storage_rejected}, and not retried; a refused query counts as no record.

An owed delete or write is known to its frontend only: a player who logs in
on another frontend meanwhile may see the old record, or have a newer one
overwritten by the owed write. Keep the storage up; these windows are as
long as its outage.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, Callable

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

_REJECTED = (TypeError, ValueError)
OK, REFUSED, DOWN = "ok", "refused", "down"


class SettingsKeeper(Service):
    """
    Stores the settings of one frontend's bound sessions; a service of its
    application, stopped after the clients are gone so that it writes last.

    @ivar healthy: whether the storage answered its last call.
    @ivar metrics: counters C{storage_writes}, C{storage_errors},
        C{storage_rejected}, C{storage_queries}, C{storage_restored},
        C{storage_deletes}, C{storage_heartbeats}.
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
        self.healthy = True
        self.metrics: Counter[str] = Counter()
        self._changed: dict[int, Session] = {}
        self._waiters: list[Deferred[None]] = []
        self._flush_call: Any = None
        self._dirty: dict[str, Session] = {}
        self._unrestored: dict[str, Session] = {}
        self._restoring: set[str] = set()
        self._deletes: dict[str, _Record] = {}
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
        Stop, after one last write of what changed, and close the storage if it can be.
        """
        super().stopService()
        for call in (self._heartbeats, self._retries):
            if call.running:
                call.stop()
        return Deferred.fromCoroutine(self._last_writes())

    async def _last_writes(self) -> None:
        await self._flush()
        if self._deletes or self._unrestored or self._dirty:
            await self._pay_debts()
        owed = self.owed
        if owed:
            log.error("stopping with {owed} storage calls owed: the storage did not answer", owed=owed)
        close = getattr(self.handler, "close", None)
        if close is not None:
            close()

    @property
    def owed(self) -> int:
        """
        The storage calls owed until the storage answers again: deletes,
        queries and writes.
        """
        return len(self._deletes) + len(self._unrestored) + len(self._dirty)

    # Calls to the storage

    async def _call(self, what: str, uid: str, method: Callable[..., Any], *args: Any) -> tuple[str, Any]:
        """
        One bounded call: C{(OK, result)}, C{(REFUSED, None)} when the storage
        refused the value, or C{(DOWN, None)} after counting and logging the
        failure.
        """
        try:
            result = await maybeDeferred(method, *args).addTimeout(self.timeout, self.clock)
        except _REJECTED as e:
            self.metrics["storage_rejected"] += 1
            log.error("storage refused the {what} for {uid}: {error}", what=what, uid=uid, error=e)
            return REFUSED, None
        except Exception:
            self._down(Failure(), what, uid)
            return DOWN, None
        if not self.healthy:
            self.healthy = True
            log.info("storage answers again")
        return OK, result

    def _down(self, failure: Failure, what: str, uid: str) -> None:
        self.metrics["storage_errors"] += 1
        if self.healthy:
            self.healthy = False
            log.warn("storage is failing ({what} for {uid}: {error}); sessions go on from memory and "
                     "changes are written when it answers again", what=what, uid=uid,
                     error=failure.getErrorMessage())

    # Bind: query and merge

    async def restore(self, session: Session) -> None:
        """
        Merge the stored settings of the session's uid under its live ones,
        then store the result. With the storage down, the query is owed.
        """
        uid = session.uid
        assert uid is not None
        if not self.healthy:
            self._unrestored[uid] = session
            return
        # Changes made while the query is out are written once it has been
        # merged: a write before that would store a partial record.
        self._restoring.add(uid)
        try:
            restored = await self._query(session, uid)
        finally:
            self._restoring.discard(uid)
        if restored:
            self.changed(session)

    async def _query(self, session: Session, uid: str) -> bool:
        # A logout whose delete is still owed must not bring its settings back.
        if uid in self._deletes and not await self._delete(uid):
            self._unrestored[uid] = session
            return False
        self.metrics["storage_queries"] += 1
        status, stored = await self._call("query", uid, self.handler.query, uid)
        if status == DOWN:
            self._unrestored[uid] = session
            return False
        self._unrestored.pop(uid, None)
        if isinstance(stored, dict) and stored and session.uid == uid:
            self.metrics["storage_restored"] += 1
            for key, value in stored.items():
                session.settings.setdefault(key, value)
        return True

    # Changes: coalesced writes

    def changed(self, session: Session) -> Deferred[None]:
        """
        A bound session's settings changed: store them at the end of this turn.

        @return: a Deferred firing once stored, or once the write failed (it
            is then owed), never later than C{timeout}.
        """
        uid = session.uid
        if uid is None or uid in self._unrestored or uid in self._restoring:
            return succeed(None)
        if not self.healthy:
            self._dirty[uid] = session
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
        writes = [Deferred.fromCoroutine(self._store(s)) for s in sessions if s.uid is not None]
        for d in writes:
            await d

    async def _store(self, session: Session) -> bool:
        uid = session.uid
        assert uid is not None
        self.metrics["storage_writes"] += 1
        status, _ = await self._call("write", uid, self.handler.storage, session)
        if status != DOWN:
            # Written, or refused for its value: nothing more to owe.
            if self._dirty.get(uid) is session:
                del self._dirty[uid]
            return True
        self._dirty[uid] = session
        return False

    # Logout: delete

    def forget(self, session: Session, uid: str) -> Deferred[None]:
        """
        The session unbound C{uid} (a logout): delete its record, now or,
        with the storage down, as soon as it answers.
        """
        self._dirty.pop(uid, None)
        self._unrestored.pop(uid, None)
        self._deletes[uid] = _Record(uid, session)
        if not self.healthy:
            return succeed(None)
        return Deferred.fromCoroutine(self._delete(uid)).addCallback(lambda _: None)

    async def _delete(self, uid: str) -> bool:
        record = self._deletes[uid]
        self.metrics["storage_deletes"] += 1
        status, _ = await self._call("delete", uid, self.handler.delete, record)
        if status != DOWN and self._deletes.get(uid) is record:
            del self._deletes[uid]
        return status != DOWN

    # Heartbeats and retries

    def _heartbeat(self) -> None:
        if not self.healthy:
            return
        for session in self.sessions:
            if session.uid is not None:
                self.metrics["storage_heartbeats"] += 1
                Deferred.fromCoroutine(self._call("heartbeat", session.uid, self.handler.heartbeat, session))

    def _retry(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._pay_debts())

    async def _pay_debts(self) -> None:
        for uid in list(self._deletes):
            if not await self._delete(uid):
                return
        for uid, session in list(self._unrestored.items()):
            # A session closed since is still written: its changes were committed.
            if session.uid != uid:
                del self._unrestored[uid]
            elif await self._query(session, uid):
                self._dirty[uid] = session
            else:
                return
        for uid, session in list(self._dirty.items()):
            if session.uid != uid:
                del self._dirty[uid]
            elif not await self._store(session):
                return
        if not self.healthy:
            await self._probe()

    async def _probe(self) -> None:
        # Nothing is owed, but the storage counts as down: one heartbeat
        # tells whether it answers again (with no bound session, there is
        # nothing to protect until the next call).
        session = next((s for s in self.sessions if s.uid is not None), None)
        if session is None:
            self.healthy = True
        else:
            await self._call("heartbeat", session.uid, self.handler.heartbeat, session)


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
