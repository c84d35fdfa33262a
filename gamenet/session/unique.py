"""
One session per uid across the frontends of a type (C{unique_session =
cluster}; doc/sessions.md, "Unique sessions across the cluster").

A bind of such a frontend is a claim, decided before the session is bound:
granted, the session binds; refused (C{unique_session_policy = refuse},
while another session holds the uid) or undecidable (the one who decides
cannot be reached), the bind's Deferred fails with a L{GamenetError} saying
why, and the session stays unbound. With C{kick_old} every other session of
the uid is kicked C{"logged in elsewhere"}, and the claim is granted only
once those kicks are done (their connections closed): at no moment are two
sessions of one uid bound and working.

Who decides (the I{decider} of a claim):

 - static discovery: an arbiter per uid, the frontend of the type first in
   the uid's rendezvous order (L{Arbiters.decider}) that is not gone. It
   keeps no table: for each claim it asks every frontend of the type which
   sessions hold the uid now (the live sessions are the truth, as design
   decision 13 has it), kicks or refuses, and grants. Claims of one uid are
   decided one after the other, in one process, so two claims never both win;
   see L{Arbiters} for an arbiter that dies or changes.
 - Redis discovery: an atomic claim in Redis (L{gamenet.session.unique_redis}).

Whoever decides may ask this frontend, over the node links (sys calls, see
L{UniqueSessions.sys_calls}), which sessions hold a uid and to kick one.
A session whose claim is under way counts as a holder for such questions,
except at the arbiter deciding it, which knows whether it granted it.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable, Protocol

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, DeferredLock, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..cluster.node import RemoteError
from ..errors import GamenetError, Unavailable

if TYPE_CHECKING:
    from ..app import Application
    from ..cluster.service import ClusterNode
    from .service import SessionService
    from .session import Session

log = Logger()

KICK_REASON = "logged in elsewhere"


class HeldElsewhere(GamenetError):
    """
    A bind refused because another session holds the uid
    (C{unique_session_policy = refuse}).
    """

    code = 409


class Claims(Protocol):
    """
    What decides the claims of one frontend.
    """

    sys_calls: dict[str, Callable[..., Any]]
    """Sys calls it serves for other frontends (besides L{UniqueSessions}' own)."""

    def decider(self, uid: str) -> str:
        """
        Who decides a claim of C{uid} now.
        """

    def claim(self, decider: str, session: Session, uid: str) -> Deferred[None]:
        """
        Claim C{uid} for C{session}; fires once granted, fails with a
        L{GamenetError} when refused or undecidable.
        """

    def release(self, session: Session, uid: str) -> None:
        """
        C{session} holds C{uid} no longer (unbound, closed, or closed while its claim was decided).
        """

    def adopt(self, session: Session, uid: str) -> None:
        """
        C{session} holds C{uid} without having claimed it: it was resumed here.
        """

    def start(self) -> None:
        """
        The frontend starts.
        """

    def stop(self) -> Deferred[None]:
        """
        The frontend stops, its clients gone: fires when what the claims
        hold is let go.
        """


class _Pending:
    """
    A claim under way: its uid, decider and the binds waiting for it.
    """

    __slots__ = ("uid", "decider", "waiting")

    def __init__(self, uid: str, decider: str) -> None:
        self.uid = uid
        self.decider = decider
        self.waiting: list[Deferred[None]] = []

    def wait(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.waiting.append(d)
        return d

    def fire(self, result: Any) -> None:
        for d in self.waiting:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)


class UniqueSessions(Service):
    """
    A frontend's binds with C{unique_session = cluster}, and its answers to
    other frontends' claims.

    @ivar claims: the L{Claims} that decide.
    @ivar sys_calls: the sys calls other frontends make here, by name.
    """

    def __init__(self, sessions: SessionService, claims: Claims) -> None:
        self.sessions = sessions
        self.claims = claims
        self._pending: dict[int, _Pending] = {}
        self.sys_calls: dict[str, Callable[..., Any]] = {
            "unique_holders": self.holders, "unique_kick": self.kick, **claims.sys_calls,
        }

    def bind(self, session: Session, uid: str) -> Deferred[None]:
        """
        Bind C{session} to C{uid} once the claim is granted (see the module).
        A second bind of the session while one is under way waits for it
        when it is to the same uid, and fails otherwise.
        """
        pending = self._pending.get(session.id)
        if pending is not None:
            if pending.uid != uid:
                return fail(GamenetError(f"the session is being bound to {pending.uid}"))
            return pending.wait()
        decider = self.claims.decider(uid)
        pending = self._pending[session.id] = _Pending(uid, decider)
        waited = pending.wait()
        self.claims.claim(decider, session, uid).addCallbacks(
            self._granted, self._failed, (session, pending), None, (session, pending))
        return waited

    def _granted(self, _: Any, session: Session, pending: _Pending) -> None:
        del self._pending[session.id]
        if session.closed or self.sessions.get(session.id) is not session:
            self.claims.release(session, pending.uid)
            pending.fire(Failure(GamenetError("session is closed")))
            return
        self.sessions._bound(session, pending.uid).addBoth(pending.fire)

    def _failed(self, failure: Failure, session: Session, pending: _Pending) -> None:
        del self._pending[session.id]
        if not failure.check(GamenetError):
            log.failure("claim of {uid} failed on {server_id}", failure, uid=pending.uid,
                        server_id=self.sessions.frontend_id)
            failure = Failure(Unavailable(f"cannot bind {pending.uid} now"))
        pending.fire(failure)

    def adopted(self, session: Session) -> None:
        """
        A session bound here without a bind: one resumed from another
        frontend of the type. It keeps its uid; the claims learn of it.
        """
        if session.uid is not None:
            self.claims.adopt(session, session.uid)

    def released(self, session: Session) -> None:
        """
        A bound session is unbound or closed.
        """
        if session.uid is not None:
            self.claims.release(session, session.uid)

    # What deciders ask of this frontend

    def holders(self, uid: str) -> list[list[Any]]:
        """
        The live sessions here that hold C{uid}: C{[session id, ""]} for a
        bound one, C{[session id, its decider]} for one whose claim is under
        way (an arbiter asking knows which of its own it has granted).
        """
        found: list[list[Any]] = [[session.id, ""] for session in self.sessions.get_by_uid(uid) if not session.closed]
        for session_id, pending in self._pending.items():
            session = self.sessions.get(session_id)
            if pending.uid == uid and session is not None and not session.closed:
                found.append([session_id, pending.decider])
        return found

    def kick(self, uid: str, session_id: int, reason: str) -> Deferred[bool]:
        """
        Kick session C{session_id} with C{reason} when it holds C{uid} (bound
        or claiming it); fires once its connection is closed, with whether it
        was kicked.
        """
        session = self.sessions.get(session_id)
        pending = self._pending.get(session_id)
        if session is None or not (session.uid == uid or (pending is not None and pending.uid == uid)):
            return succeed(False)
        return session.kick(reason).addCallback(lambda _: True)

    def stopService(self) -> Deferred[None]:  # type: ignore[override]
        super().stopService()
        return self.claims.stop()

    def startService(self) -> None:
        super().startService()
        self.claims.start()


class Peers:
    """
    Which frontends of the type are gone, their sessions with them, as this
    one can tell: as L{Recovery.gone <gamenet.cluster.recovery.Recovery.gone>}
    says (its link is down and membership does not count it), except within
    the RPC timeout after this frontend started, when a peer whose link is
    not up may simply not be linked yet: none is gone then, so that a bind
    that needs one fails with 503 rather than miss its sessions.
    """

    def __init__(self, node: ClusterNode, timeout: float, clock: Any) -> None:
        self.node = node
        self.timeout = timeout
        self.clock = clock
        self._settled_at = math.inf

    def start(self) -> None:
        self._settled_at = self.clock.seconds() + self.timeout

    def gone(self, server_id: str) -> bool:
        return self.clock.seconds() >= self._settled_at and self.node.recovery.gone(server_id)


def rendezvous(uid: str, server_ids: list[str]) -> list[str]:
    """
    C{server_ids} in the uid's rendezvous order (highest random weight
    first): every server computes the same order, and removing one server
    moves only the uids it came first for.
    """
    return sorted(server_ids, key=lambda server_id: hashlib.sha1(f"{server_id}\n{uid}".encode()).digest(),
                  reverse=True)


class Arbiters:
    """
    Static discovery's claims: each uid's arbiter is the frontend of the
    type first in its L{rendezvous} order that is not gone (L{Peers}). An
    arbiter that is not gone but does not answer fails the claim (fail
    closed): the bind fails with 503 until it answers again or is gone.

    Serving a claim, the arbiter asks every frontend of the type for the
    sessions holding the uid (L{UniqueSessions.holders}): one that is gone
    holds none; one that does not answer fails the claim. The claims of one
    uid are decided one at a time, so a session whose claim waits here is
    no holder yet; one it granted is, until its frontend has applied the
    grant (kept for twice the RPC timeout, after which the claimant has
    either bound or given up). Since nothing is kept beyond that, an arbiter
    that restarts, or a new arbiter when the first is gone, decides from the
    live sessions at once. Two frontends that disagree on whether an arbiter
    is gone ask different arbiters; each of them counts a session claiming
    through the other as a holder, so that the two claims kick (or refuse)
    each other rather than both winning.
    """

    def __init__(self, node: ClusterNode, peers: Peers, server_type: str, policy: str, timeout: float,
                 clock: Any) -> None:
        self.node = node
        self.peers = peers
        self.server_type = server_type
        self.policy = policy
        self.timeout = timeout
        self.clock = clock
        self._locks: dict[str, DeferredLock] = {}
        self._granted: OrderedDict[str, tuple[str, int, float]] = OrderedDict()
        self.sys_calls: dict[str, Callable[..., Any]] = {"unique_claim": self.serve}

    @property
    def me(self) -> str:
        return self.node.app.server_id

    def _frontends(self) -> list[str]:
        return [server.id for server in self.node.app.servers_by_type(self.server_type)]

    def decider(self, uid: str) -> str:
        for server_id in rendezvous(uid, self._frontends()):
            if not self.peers.gone(server_id):
                return server_id
        return self.me

    def claim(self, decider: str, session: Session, uid: str) -> Deferred[None]:
        d = self.node.sys_call(decider, "unique_claim", [uid, session.frontend_id, session.id])
        if decider == self.me:
            return d
        return d.addCallbacks(lambda _: None, self._undecided, errbackArgs=(uid, decider))

    @staticmethod
    def _undecided(failure: Failure, uid: str, decider: str) -> Failure:
        if failure.check(RemoteError):
            return failure  # the arbiter's own answer
        raise Unavailable(f"cannot bind {uid}: its arbiter {decider} does not answer ({failure.getErrorMessage()})")

    def release(self, session: Session, uid: str) -> None:
        pass  # nothing is kept: the live sessions are asked

    def adopt(self, session: Session, uid: str) -> None:
        pass  # the same

    def start(self) -> None:
        self.peers.start()

    def stop(self) -> Deferred[None]:
        return succeed(None)

    # The arbiter's side

    def serve(self, uid: str, frontend_id: str, session_id: int) -> Deferred[None]:
        """
        Decide one claim (the sys call C{unique_claim}); fires when granted.
        """
        return Deferred.fromCoroutine(self._serve(str(uid), str(frontend_id), int(session_id)))

    async def _serve(self, uid: str, frontend_id: str, session_id: int) -> None:
        lock = self._locks.setdefault(uid, DeferredLock())
        await lock.acquire()
        try:
            await self._decide(uid, frontend_id, session_id)
        finally:
            lock.release()
            if not lock.locked and not lock.waiting:
                self._locks.pop(uid, None)

    async def _decide(self, uid: str, frontend_id: str, session_id: int) -> None:
        frontends = self._frontends()
        answers = await DeferredList([self._ask(f, "unique_holders", [uid]) for f in frontends],
                                     consumeErrors=True)
        granted = self._granted.get(uid)
        if granted is not None and granted[2] < self.clock.seconds() - 2 * self.timeout:
            granted = None
        holders = []
        for server_id, (ok, value) in zip(frontends, answers):
            if not ok:
                self._unless_gone(server_id, uid, "does not answer", value)
                continue
            for held, decider in value:
                if (server_id, held) == (frontend_id, session_id):
                    continue
                if decider == self.me and (granted is None or granted[:2] != (server_id, held)):
                    continue  # its claim waits its turn here
                holders.append((server_id, held))
        if holders and self.policy == "refuse":
            raise HeldElsewhere(f"cannot bind {uid}: it is logged in elsewhere")
        kicks = await DeferredList([self._ask(f, "unique_kick", [uid, held, KICK_REASON]) for f, held in holders],
                                   consumeErrors=True)
        for (server_id, _), (ok, value) in zip(holders, kicks):
            if not ok:
                self._unless_gone(server_id, uid, "could not kick its session", value)
        self._grant(uid, frontend_id, session_id)

    def _ask(self, server_id: str, name: str, args: list[Any]) -> Deferred[Any]:
        # Within a third of the RPC timeout, so that the claimant hears
        # this arbiter's answer, which names who did not answer, before its
        # own call to the arbiter times out.
        return self.node.sys_call(server_id, name, args).addTimeout(self.timeout / 3, self.clock)

    def _unless_gone(self, server_id: str, uid: str, what: str, failure: Failure) -> None:
        if not self.peers.gone(server_id):
            raise Unavailable(f"cannot bind {uid}: {server_id} {what} ({failure.getErrorMessage()})")

    def _grant(self, uid: str, frontend_id: str, session_id: int) -> None:
        now = self.clock.seconds()
        self._granted.pop(uid, None)
        self._granted[uid] = (frontend_id, session_id, now)
        while self._granted:
            oldest = next(iter(self._granted.values()))
            if oldest[2] > now - 2 * self.timeout:
                break
            self._granted.popitem(last=False)


def attach(app: Application) -> UniqueSessions | None:
    """
    Make a frontend's binds unique across its type when its options say
    C{unique_session = cluster}: build the claims of its discovery, hand
    them to its sessions and attach them to the app (so that Redis claims
    stop with it).

    @return: the L{UniqueSessions}, or C{None} when the frontend keeps
        today's per-frontend behaviour (or is a backend).
    """
    options = app.server.options
    if app.sessions is None or options is None or options.unique_session != "cluster":
        return None
    claims: Claims
    if app.cluster.discovery == "redis":
        from .unique_redis import RedisClaims

        claims = RedisClaims(app.cluster, app.server, options.unique_session_policy, app.node, app.sessions,
                             app.reactor)
    else:
        peers = Peers(app.node, app.cluster.rpc_timeout, app.reactor)
        claims = Arbiters(app.node, peers, app.server_type, options.unique_session_policy,
                          app.cluster.rpc_timeout, app.reactor)
    unique = app.sessions.unique = UniqueSessions(app.sessions, claims)
    unique.setName("unique_sessions")
    unique.setServiceParent(app)
    return unique
