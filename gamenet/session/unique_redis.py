"""
Redis discovery's claims of unique sessions (see L{gamenet.session.unique}).

Each held uid has one key, C{gamenet:<cluster>:unique:<frontend type>:<uid>},
holding C{[frontend id, session id]} of its holder as JSON. A claim is one
Lua script, so Redis decides it atomically: it sets the key when it is
absent, already the claimant's, or still the holder the claimant has just
dealt with, and otherwise answers the holder. The claimant then deals with
that holder over the node links, as an arbiter does: with C{kick_old} it
kicks it and waits for its connection to close; with C{refuse} it asks its
frontend whether it still holds the uid (a key left by a session whose
release was lost holds nothing), and refuses if so. Then it claims again,
expecting that holder; a claim that keeps losing to newer ones fails after
L{ATTEMPTS}.

A key lives C{discovery_ttl}, as the frontend's own registration does, and
its frontend renews every key it holds every C{discovery_ttl / 3}; a close or
an unbind deletes it (only while it is still the session's). The keys of a
frontend that died lapse within C{discovery_ttl}; until then a claim that
finds one fails with 503, as does one whose holder's frontend does not
answer while Redis still counts it (it is in the registry): a frontend cut
off from its peers but not from Redis may still serve that session. One
that left the registry holds nothing. A renewal that finds its key taken by
another session (this frontend could not renew for longer than the key
lived) kicks its own session C{"logged in elsewhere"}.

A session resumed here from another frontend (doc/sessions.md) claims its
uid anew: L{UniqueSessions.adopted
<gamenet.session.unique.UniqueSessions.adopted>}, or the next renewal, which
claims for every bound session that has no key.

Every call is bounded by C{storage_timeout}; a claim that Redis does not
answer fails the bind with 503 (never binds without a claim).
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any, Callable

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from .. import redis
from ..errors import GamenetError, Unavailable
from .unique import KICK_REASON, HeldElsewhere

if TYPE_CHECKING:
    from ..cluster.service import ClusterNode
    from ..config import ClusterConfig, ServerConfig
    from .service import SessionService
    from .session import Session

log = Logger()

ATTEMPTS = 3
RENEW_CHUNK = 500

# KEYS[1]: the uid's key; ARGV: the claimant, the key's life in ms, the holder
# the claimant has dealt with (or ""). Answers "" when claimed, else the holder.
CLAIM = """
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[1] and current ~= ARGV[3] then
  return current
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ''
"""

# KEYS[1]: the uid's key; ARGV[1]: the holder it is deleted for.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: keys held here; ARGV[1]: their life in ms, then each key's holder.
# Answers the places (from 1) of the keys another holder has taken.
RENEW = """
local lost = {}
for i, key in ipairs(KEYS) do
  local current = redis.call('GET', key)
  if current and current ~= ARGV[i + 1] then
    table.insert(lost, i)
  else
    redis.call('SET', key, ARGV[i + 1], 'PX', ARGV[1])
  end
end
return lost
"""


class RedisClaims:
    """
    The claims of one frontend in Redis (see the module).

    @ivar redis: its Redis client (one connection, made on the first call).
    """

    sys_calls: dict[str, Callable[..., Any]] = {}

    def __init__(self, cluster: ClusterConfig, server: ServerConfig, policy: str, node: ClusterNode,
                 sessions: SessionService, clock: Any) -> None:
        self.cluster = cluster
        self.server = server
        self.policy = policy
        self.node = node
        self.sessions = sessions
        self.clock = clock
        self.redis = redis.RedisClient(cluster, clock, "unique session", reactor=clock)
        self.life_ms = max(1, math.ceil(cluster.discovery_ttl * 1000))
        # Session id -> (key, holder) of each claim granted here.
        self._held: dict[int, tuple[str, str]] = {}
        self._releasing: set[Deferred[Any]] = set()
        # Sessions being adopted, and those kicked for a claim they lost.
        self._adopting: set[int] = set()
        self._lost: set[int] = set()
        self._renewer = LoopingCall(self.renew)
        self._renewer.clock = clock
        self._failing = False

    def key(self, uid: str) -> str:
        return redis.key(self.cluster, "unique", self.server.type, uid)

    def decider(self, uid: str) -> str:
        return "redis"

    def claim(self, decider: str, session: Session, uid: str) -> Deferred[None]:
        return Deferred.fromCoroutine(self._claim(session, uid, self.policy))

    async def _claim(self, session: Session, uid: str, policy: str) -> None:
        key, mine, dealt = self.key(uid), json.dumps([session.frontend_id, session.id]), ""
        for _ in range(ATTEMPTS):
            try:
                current = await self.redis.call("eval", CLAIM, [key], [mine, self.life_ms, dealt], what="claim")
            except redis.RedisUnavailable as e:
                raise Unavailable(f"cannot bind {uid}: {e}") from None
            if not current:
                self._held[session.id] = (key, mine)
                return
            await self._deal(uid, current, policy)
            dealt = current
        raise Unavailable(f"cannot bind {uid}: other binds of it keep winning; try again")

    async def _deal(self, uid: str, current: str, policy: str) -> None:
        """
        Kick, or refuse to replace, the holder C{current} of C{uid}'s key.
        """
        try:
            frontend_id, session_id = json.loads(current)
        except (ValueError, TypeError):
            return  # not a holder: replaced
        try:
            if policy == "refuse":
                held = await self.node.sys_call(frontend_id, "unique_holders", [uid])
                if any(found == session_id for found, _ in held):
                    raise HeldElsewhere(f"cannot bind {uid}: it is logged in elsewhere")
            else:
                await self.node.sys_call(frontend_id, "unique_kick", [uid, session_id, KICK_REASON])
        except HeldElsewhere:
            raise
        except Exception as e:
            if frontend_id in self.node.app.registry:
                message = e.message if isinstance(e, GamenetError) else str(e)
                raise Unavailable(f"cannot bind {uid}: its holder's frontend {frontend_id} does not answer "
                                  f"({message})") from None

    def adopt(self, session: Session, uid: str) -> None:
        """
        Claim C{uid} for a session bound here without a bind (one resumed
        from another frontend), as C{refuse} does whatever the policy: the
        resumed session is the older login, so one that holds the uid
        elsewhere now wins over it (the resumed one is kicked). One that
        cannot be claimed now is tried again at the next renewal.
        """
        self._adopting.add(session.id)
        d = Deferred.fromCoroutine(self._claim(session, uid, "refuse"))
        d.addBoth(self._adoption_done, session.id)
        d.addCallbacks(self._adopted, self._not_adopted, (session, uid), None, (session, uid))

    def _adoption_done(self, result: Any, session_id: int) -> Any:
        self._adopting.discard(session_id)
        return result

    def _adopted(self, _: Any, session: Session, uid: str) -> None:
        if session.closed or session.uid != uid:
            self.release(session, uid)

    def _not_adopted(self, failure: Any, session: Session, uid: str) -> None:
        if failure.check(HeldElsewhere):
            self._lost.add(session.id)
            session.kick(KICK_REASON)
        else:
            log.info("claim of resumed {uid} failed (tried again): {error}", uid=uid, error=failure.getErrorMessage())

    def release(self, session: Session, uid: str) -> None:
        held = self._held.pop(session.id, None)
        if held is None:
            return
        self._delete(*held)

    def _delete(self, key: str, holder: str) -> None:
        d = self.redis.call("eval", RELEASE, [key], [holder], what="release")
        self._releasing.add(d)
        d.addErrback(lambda f: log.info("release of {key} failed (it lapses): {error}", key=key,
                                        error=f.getErrorMessage()))
        d.addBoth(lambda _: self._releasing.discard(d))

    def start(self) -> None:
        self._renewer.start(self.cluster.discovery_ttl / 3, now=False)

    def stop(self) -> Deferred[None]:
        """
        Stop renewing; once the releases under way are done, close the connection.
        """
        if self._renewer.running:
            self._renewer.stop()
        d = DeferredList(list(self._releasing))
        d.addCallback(lambda _: self.redis.close())
        return d

    def renew(self) -> Deferred[None]:
        """
        Renew every key held here; kick the sessions whose key another has taken.
        """
        return Deferred.fromCoroutine(self._renew()).addErrback(
            lambda f: log.failure("renewal of unique session claims failed on {server_id}", f,
                                  server_id=self.server.id))

    async def _renew(self) -> None:
        self._lost.intersection_update(session.id for session in self.sessions)
        for session in self.sessions:
            if session.uid is not None and session.id not in self._held.keys() | self._adopting | self._lost:
                self.adopt(session, session.uid)
        for session_id, (key, holder) in list(self._held.items()):
            session = self.sessions.get(session_id)
            if session is None or session.closed:
                del self._held[session_id]
                self._delete(key, holder)
        held = list(self._held.items())
        for start in range(0, len(held), RENEW_CHUNK):
            chunk = held[start:start + RENEW_CHUNK]
            try:
                lost = await self.redis.call("eval", RENEW, [key for _, (key, _) in chunk],
                                             [self.life_ms, *(holder for _, (_, holder) in chunk)], what="renewal")
            except redis.RedisUnavailable as e:
                if not self._failing:
                    log.warn("{server_id}: cannot renew unique session claims: {error}",
                             server_id=self.server.id, error=e)
                self._failing = True
                return
            for place in lost or ():
                session_id, (key, holder) = chunk[int(place) - 1]
                if self._held.get(session_id) == (key, holder):
                    del self._held[session_id]
                    self._lost.add(session_id)
                    log.warn("{server_id}: session {session_id} lost its claim; kicking it",
                             server_id=self.server.id, session_id=session_id)
                    self.sessions.kick_by_session_id(session_id, KICK_REASON)
        if self._failing:
            log.info("{server_id}: unique session claims renewed again", server_id=self.server.id)
        self._failing = False
