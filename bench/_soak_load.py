"""
The chat load of bench/soak.py: users that enter rooms of the chat example
through its gate, send messages, leave and come back, and the ledger that
says, for every message acknowledged, who had to hear it and who did.

A user is a member of its room from the moment its C{enter} is answered
with the room's names until it decides to leave or its connection ends. A
message is acknowledged when its C{chat.chatHandler.send} got C{{}}; its
expected recipients are the room's members when it was sent (the sender
included), each by its connection (a user who comes back is a new
connection). A user leaving first stops being a member, then waits until
every acknowledged message it had to hear came (or C{delivery_timeout}
passed) and only then closes, so that a leave never counts as a loss. A
connection that ends without being closed here is counted C{killed} when its
connector was killed while it was open (the soak's fault), C{lost}
otherwise; its user enters again through the gate.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any, Callable

import attrs
from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.task import deferLater

from gamenet.client import Client, ClientError, ErrorResponse

SEND = "chat.chatHandler.send"
ENTER = "connector.entryHandler.enter"
QUERY = "gate.gateHandler.queryEntry"


@attrs.define(eq=False)
class Message:
    """
    One message sent in a room: C{expected} are the (user, connection)
    pairs that were members when it was sent, C{received} those that got it.
    C{acked} is C{None} until it is answered.
    """

    id: int
    room: str
    sent: float
    expected: set[tuple[str, int]]
    received: set[tuple[str, int]] = attrs.field(factory=set)
    acked: bool | None = None
    done: float | None = None


@attrs.define(eq=False)
class User:
    """
    One chat user: its room, its connection (C{client}, the C{connection}-th
    it opened, to server C{server}), and whether it is a member now.
    """

    name: str
    room: str
    transport: str
    client: Client | None = None
    server: str = ""
    connection: int = 0
    opened: float = 0.0
    member: bool = False
    entering: bool = False
    leaving: bool = False
    closing: bool = False


def kind(error: BaseException | Any) -> str:
    """
    A short name for what went wrong: the text of an error answer (its code
    and message), or the exception's type and text, digits kept (server ids).
    """
    if isinstance(error, ErrorResponse):
        error = error.body
    if isinstance(error, dict):
        return f"{error.get('code')} {error.get('message', error.get('error', ''))}".strip()
    if isinstance(error, TimeoutError):
        return "no answer in time"
    text = str(error).split(":", 1)[0] if isinstance(error, ClientError) else str(error)
    return f"{type(error).__name__}: {text}"[:120]


class ChatLoad:
    """
    The users, the ledger and the counters of one soak.

    @ivar messages: every message sent, by id.
    @ivar completed: per room, the (sent, done) times of acknowledged
        messages every expected recipient got (those of a killed connector
        aside): what the recovery checks read.
    @ivar errors: errors by kind, each prefixed with what was being done.
    @ivar ended: how each connection that ended without being closed here
        ended (C{killed} or C{lost}), by (user, connection).
    @ivar kills: connector id to the times it was killed.
    """

    def __init__(self, reactor: Any, gate_port: int, servers: dict[int, str], rng: random.Random,
                 request_timeout: float = 10.0, delivery_timeout: float = 10.0,
                 transports: tuple[str, ...] = ("tcp", "websocket")) -> None:
        self.reactor = reactor
        self.gate_port = gate_port
        self.servers = servers
        self.rng = rng
        self.request_timeout = request_timeout
        self.delivery_timeout = delivery_timeout
        self.transports = transports
        self.users: dict[str, User] = {}
        self.rooms: dict[str, list[User]] = {}
        self.messages: dict[int, Message] = {}
        self.completed: dict[str, list[tuple[float, float]]] = {}
        self.errors: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        self.ended: dict[tuple[str, int], str] = {}
        self.kills: dict[str, list[float]] = {}
        self.open: Counter[str] = Counter()
        self.running = True
        self._next_user = 0
        self._next_message = 0
        self._expecting: dict[tuple[str, int], set[int]] = {}

    # Users

    def add_user(self, room: str) -> User:
        """
        A new user for C{room}, entering in the background.
        """
        n = self._next_user
        self._next_user += 1
        user = User(f"u{n}", room, self.transports[n % len(self.transports)])
        self.users[user.name] = user
        self.rooms.setdefault(room, []).append(user)
        self.completed.setdefault(room, [])
        Deferred.fromCoroutine(self._enter(user))
        return user

    def members(self, room: str) -> list[User]:
        return [user for user in self.rooms.get(room, ()) if user.member and not user.leaving]

    async def _connect(self, server: str, port: int, transport: str) -> Client:
        client = await Client.connect(self.reactor, "127.0.0.1", port, transport, timeout=self.request_timeout)
        self.open[server] += 1
        client.closed.addBoth(lambda reason: self.open.subtract([server]) or reason)
        return client

    async def _request(self, client: Client, route: str, body: Any) -> Any:
        answer = await client.request(route, body).addTimeout(self.request_timeout, self.reactor)
        if isinstance(answer, dict) and ("message" in answer or answer.get("error")) and "code" in answer:
            raise ErrorResponse(answer)
        return answer

    async def _enter(self, user: User) -> None:
        """
        Ask the gate for a connector and enter there; again every second
        until it works or the run is over.
        """
        user.entering = True
        try:
            await self._entering(user)
        finally:
            user.entering = False

    async def _entering(self, user: User) -> None:
        while self.running and not user.leaving:
            step = "gate"
            try:
                gate = await self._connect("gate-1", self.gate_port, user.transport)
                try:
                    where = await self._request(gate, QUERY, {"uid": user.name})
                finally:
                    gate.close()
                if where.get("code") != 200:
                    raise ErrorResponse(where)
                step = "enter"
                server = self.servers.get(where["port"], f"port {where['port']}")
                client = await self._connect(server, where["port"], user.transport)
                user.connection += 1
                user.client, user.server, user.opened, user.closing = client, server, time.monotonic(), False
                client.on("onChat", lambda body, user=user, n=user.connection: self._heard(user, n, body))
                client.closed.addCallback(lambda reason, user=user, n=user.connection: self._closed(user, n))
                answer = await self._request(client, ENTER, {"username": user.name, "rid": user.room})
                if not self.running or user.leaving:
                    return
                if client.closed.called:
                    raise ClientError("connection closed")
                if user.name not in answer.get("users", ()):
                    raise ErrorResponse({"code": "enter", "message": f"{server} answered {answer}"})
                user.member = True
                self.counts["entered"] += 1
                return
            except Exception as e:
                self.errors[f"{step}: {kind(e)}"] += 1
                if user.client is not None and step == "enter":
                    user.closing = True
                    user.client.close()
                    user.client = None
            await deferLater(self.reactor, 1.0, lambda: None)

    def _closed(self, user: User, connection: int) -> None:
        if user.connection != connection:
            return
        user.member, user.client = False, None
        if user.closing or not self.running:
            return
        killed = any(t >= user.opened for t in self.kills.get(user.server, ()))
        self.ended[(user.name, connection)] = "killed" if killed else "lost"
        self.counts[f"connections {'killed with their connector' if killed else 'lost'}"] += 1
        if not user.leaving and not user.entering:
            Deferred.fromCoroutine(self._enter(user))

    def leave(self, user: User) -> None:
        """
        Stop being a member of the room now, close once every message it had
        to hear came or the delivery timeout passed, and forget the user.
        """
        user.leaving = True
        Deferred.fromCoroutine(self._leave(user))

    async def _leave(self, user: User) -> None:
        deadline = time.monotonic() + self.delivery_timeout
        key = (user.name, user.connection)
        while self._expecting.get(key) and time.monotonic() < deadline:
            await deferLater(self.reactor, 0.1, lambda: None)
        user.closing, user.member = True, False
        if user.client is not None:
            user.client.close()
        self.rooms[user.room].remove(user)
        self.counts["left"] += 1

    # Messages

    def send(self, room: str) -> bool:
        """
        A random member of C{room} sends a message to the room; C{False}
        when it has nobody to send it.
        """
        members = self.members(room)
        if not members:
            return False
        sender = self.rng.choice(members)
        n = self._next_message
        self._next_message += 1
        message = Message(n, room, time.monotonic(), {(u.name, u.connection) for u in members})
        self.messages[n] = message
        for key in message.expected:
            self._expecting.setdefault(key, set()).add(n)
        Deferred.fromCoroutine(self._send(sender, message))
        return True

    async def _send(self, sender: User, message: Message) -> None:
        try:
            assert sender.client is not None
            answer = await self._request(sender.client, SEND, {"content": str(message.id), "target": "*"})
            if answer != {}:
                raise ErrorResponse({"code": "send", "message": f"unexpected answer {answer}"})
        except Exception as e:
            message.acked = False
            self.errors[f"send: {kind(e)}"] += 1
            for key in message.expected:
                self._expecting.get(key, set()).discard(message.id)
            return
        message.acked = True
        self._check(message)

    def _heard(self, user: User, connection: int, body: Any) -> None:
        try:
            message = self.messages[int(body.get("msg"))]
        except (TypeError, ValueError, KeyError):
            self.counts["onChat not sent by the soak"] += 1
            return
        key = (user.name, connection)
        if message.room != user.room:
            self.counts["deliveries to the wrong room"] += 1
        elif key in message.received:
            self.counts["deliveries twice"] += 1
        elif key not in message.expected:
            self.counts["deliveries to users entering at the time (not counted)"] += 1
        else:
            message.received.add(key)
            self._expecting.get(key, set()).discard(message.id)
            self._check(message)

    def _check(self, message: Message) -> None:
        """
        Note when an acknowledged message has reached every expected
        recipient but those of a killed connector.
        """
        if not message.acked or message.done is not None:
            return
        waiting = [key for key in message.expected - message.received if self.ended.get(key) != "killed"]
        if not waiting:
            message.done = time.monotonic()
            self.completed[message.room].append((message.sent, message.done))

    def recheck(self) -> None:
        """
        Look again at the acknowledged messages not complete yet: a
        connection that ended with its connector no longer holds them up.
        """
        for message in self.messages.values():
            if message.acked and message.done is None:
                self._check(message)

    def broken(self, rooms: list[str], since: float, bound: float) -> list[str]:
        """
        Those of C{rooms} (with members now) in which no message sent from
        C{since} on (C{time.monotonic()}) was acknowledged and heard by every
        member (but those of a killed connector) by C{since + bound}.
        """
        self.recheck()
        return [room for room in rooms if self.members(room) and not any(
            sent >= since and done <= since + bound for sent, done in self.completed.get(room, ()))]

    # The end

    async def settle(self, timeout: float) -> None:
        """
        Stop, wait up to C{timeout} seconds for the messages in flight to be
        answered and delivered, then close every connection.
        """
        self.running = False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(
                m.acked is None or (m.acked and m.done is None) for m in self.messages.values()):
            self.recheck()
            await deferLater(self.reactor, 0.2, lambda: None)
        for user in self.users.values():
            if user.client is not None:
                user.closing = True
                user.client.close()

    def tally(self) -> dict[str, Any]:
        """
        The ledger's figures: messages sent, acknowledged, unanswered;
        deliveries expected, made and missing (lost, or counted apart for
        clients of a killed connector); the lost ones (up to 20) by message.
        """
        figures: Counter[str] = Counter()
        losses = []
        for message in self.messages.values():
            figures["sent"] += 1
            if message.acked is None:
                figures["unanswered"] += 1
            if not message.acked:
                continue
            figures["acked"] += 1
            figures["expected"] += len(message.expected)
            figures["delivered"] += len(message.received)
            missing = message.expected - message.received
            apart = {key for key in missing if self.ended.get(key) == "killed"}
            figures["missing_killed_connector"] += len(apart)
            if missing - apart:
                figures["lost"] += len(missing - apart)
                figures["messages_with_losses"] += 1
                if len(losses) < 20:
                    losses.append({"id": message.id, "room": message.room, "sent": message.sent,
                                   "missing": sorted(f"{name}#{n} ({self.ended.get((name, n), 'connected')})"
                                                     for name, n in missing - apart)})
        return {**{key: figures[key] for key in (
            "sent", "acked", "unanswered", "expected", "delivered", "lost", "messages_with_losses",
            "missing_killed_connector")}, "losses": losses}


async def drive(load: ChatLoad, rooms: list[str], rate: float, churn: float, going: Callable[[], bool]) -> None:
    """
    Send C{rate} messages a second in all, each room in turn (so each room
    gets C{rate / len(rooms)}), and C{churn} times a second make a random
    user leave and a new one enter a random room, while C{going()}. A room
    keeps at least two members.
    """
    step = 1.0 / rate
    churn_every = round(rate / churn) if churn > 0 else 0
    tick = 0
    next_at = time.monotonic()
    while going():
        load.send(rooms[tick % len(rooms)])
        tick += 1
        if churn_every and tick % churn_every == 0:
            room = load.rng.choice(rooms)
            members = load.members(room)
            if len(members) > 2:
                load.leave(load.rng.choice(members))
                load.add_user(load.rng.choice(rooms))
        next_at += step
        delay = next_at - time.monotonic()
        if delay < -1.0:
            next_at = time.monotonic()  # behind by more than a second: do not burst to catch up
        await deferLater(load.reactor, max(0.0, delay), lambda: None)
