"""
The membership channel of Redis discovery (see L{gamenet.cluster.discovery}):
C{gamenet:<cluster>:db<redis_db>:membership}, on which each server announces
its join and its leave as C{{"event": "join"|"leave", "server": {record}}}.
Tested through C{tests/test_discovery.py}.

txredisapi does not subscribe again after a reconnection, so the
subscription subscribes from its protocol's C{connectionMade}, on the first
connection and on each one after.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from .. import redis
from ..config import ClusterConfig, ServerConfig
from .records import decode_server

log = Logger()

JOIN = "join"
LEAVE = "leave"
STOPPED = "discovery is stopped"


def dumps(value: Any) -> str:
    """
    C{value} as compact JSON with sorted keys, as discovery writes it.
    """
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def text_of(value: Any) -> str:
    """
    A Redis reply as text.
    """
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def announcement(event: str, record: dict[str, Any]) -> str:
    """
    The message announcing C{event} (L{JOIN} or L{LEAVE}) of the server of
    C{record}.
    """
    return dumps({"event": event, "server": record})


def _protocol(subscription: MembershipSubscription) -> Any:
    import txredisapi

    class MembershipSubscriber(txredisapi.SubscriberProtocol):  # type: ignore[misc]
        def connectionMade(self) -> Any:
            d = super().connectionMade()
            d.addCallback(lambda _: subscription._connected(self) if self._ready else None)
            return d

        def messageReceived(self, pattern: Any, channel: Any, message: Any) -> None:
            subscription._received(message)

        def connectionLost(self, why: Any) -> None:
            super().connectionLost(why)
            subscription._lost(self, why)

    return MembershipSubscriber


class MembershipSubscription:
    """
    This server's subscription to the membership channel, made again on
    every connection; each change (subscribed, lost) is logged once.

    @ivar channel: the channel.
    @ivar subscribed: whether the subscription is up now.
    @ivar redis: its client (no C{SELECT}: pub/sub is not per database).
    """

    def __init__(self, cluster: ClusterConfig, clock: Any, reactor: Any, server_id: str, channel: str, *,
                 heard: Callable[[str, ServerConfig], object], subscribed: Callable[[], object],
                 failed: Callable[[str], object], lost: Callable[[], object]) -> None:
        """
        @param heard: called with the event and the server of each
            well-formed message (a bad one is logged and dropped).
        @param subscribed: called each time the subscription is made.
        @param failed: called with the reason when subscribing failed (the
            connection is dropped, to subscribe again on the next one).
        @param lost: called when the subscriber's connection is lost.
        """
        self.server_id = server_id
        self.channel = channel
        self.subscribed = False
        self.redis = redis.RedisClient(cluster, clock, "discovery", reactor=reactor, select=False,
                                       protocol=_protocol(self), max_delay=cluster.discovery_ttl / 3,
                                       closed=STOPPED)
        self._heard = heard
        self._on_subscribed = subscribed
        self._failed = failed
        self._on_lost = lost
        self._subscriber: Any = None
        self._ever = False
        self._active = False

    def start(self) -> None:
        """
        Connect, and subscribe on every connection.
        """
        self._active = True
        self._ever = False
        self.redis.connect()

    def stop(self) -> Deferred[None]:
        """
        Stop subscribing; fires once the connection is closed (within
        C{storage_timeout}, or fails).
        """
        self._active = False
        self._subscriber = None
        self.subscribed = False
        return self.redis.bound(self.redis.close(STOPPED), "disconnect")

    def _connected(self, protocol: Any) -> None:
        if not self._active:
            protocol.transport.loseConnection()
            return
        self._subscriber = protocol
        d = self.redis.bound(protocol.subscribe(self.channel), "SUBSCRIBE")
        d.addCallbacks(self._made, self._refused, callbackArgs=(protocol,), errbackArgs=(protocol,))

    def _made(self, _: Any, protocol: Any) -> None:
        if not self._active or protocol is not self._subscriber:
            return
        again, self._ever = self._ever, True
        self.subscribed = True
        log.info("{server_id}: {what} to {channel}", server_id=self.server_id,
                 what="subscribed again" if again else "subscribed", channel=self.channel)
        self._on_subscribed()

    def _refused(self, failure: Any, protocol: Any) -> None:
        if not self._active:
            return
        self._failed(f"subscribing to {self.channel}: {failure.getErrorMessage()}")
        if protocol.transport is not None:
            protocol.transport.loseConnection()  # reconnects and subscribes again

    def _lost(self, protocol: Any, why: Any) -> None:
        if protocol is self._subscriber:
            self._subscriber = None
        if not self._active:
            return
        self._on_lost()
        if self.subscribed:
            self.subscribed = False
            log.warn("{server_id}: lost the subscription to {channel} ({reason}); subscribing again when redis "
                     "is back", server_id=self.server_id, channel=self.channel,
                     reason=why.getErrorMessage() if hasattr(why, "getErrorMessage") else why)

    def _received(self, raw: Any) -> None:
        if not self._active:
            return
        try:
            message = json.loads(text_of(raw))
            event = message["event"]
            server = decode_server(message["server"])
        except (ValueError, KeyError, TypeError) as e:
            log.warn("{server_id}: ignoring a bad message on {channel}: {error}", server_id=self.server_id,
                     channel=self.channel, error=e)
            return
        self._heard(event, server)
