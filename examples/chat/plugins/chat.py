"""
The chat servers: a room is a channel, and a whole room lives on one chat
server, chosen by the room name as Pomelo's demo does.

Rooms follow routing: the connectors' sessions say who is in which room (the
setting C{rid}), so the rooms are declared rebuildable, keyed by C{rid}
(L{gamenet.cluster.recovery}): a chat server asked about a room it does not
hold rebuilds it from them first, and drops the rooms that route to another
chat server whenever the chat servers available change. A chat server that
stops or dies costs its rooms nothing: they move to the other one and come
back. When a connector dies, its users are dropped from every room and the
others are told they left, with C{onLeave}.

Every minute a cron (C{examples/chat/config/crons.json}) tells the members
of each room how many users are in it, with C{onRoomStats}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, gatherResults

from gamenet import Component, GamenetError, Handler, Remote, configure, cron_handler, handler, remote
from gamenet.channel import Channel

from ..dispatcher import dispatch


def by_room(route_param: Any, servers: list[Any]) -> Any:
    """
    The chat server of a room, chosen by the room id as the demo does:
    C{route_param} is a session (its C{rid} setting) or a room id.
    """
    rid = route_param if isinstance(route_param, str) else route_param.get("rid")
    return dispatch(str(rid), servers)


def room(app: Any, rid: str) -> Deferred[Channel]:
    """
    Room C{rid} as this chat server holds it, rebuilt first from the
    connectors' sessions whose C{rid} is C{rid} when it holds none.
    """
    return app.recovery.get("rid", rid)


def gone(channel: Channel, uids: list[str]) -> None:
    """
    Tell the rest of a room that users whose connector died have left,
    with C{onLeave}, as if each had closed its connection.
    """
    for uid in uids:
        channel.push_message("onLeave", {"route": "onLeave", "user": uid.split("*")[0]})


def held(app: Any) -> list[Channel]:
    """
    The rooms this chat server holds with someone in them; a room no chat
    server has been asked about since it moved here is held by none until it is.
    """
    rooms = (app.channels.get_channel(name) for name in app.channels.channels)
    return [channel for channel in rooms if channel is not None and channel.user_count]


def names(channel: Channel) -> list[str]:
    """
    The names of a room's members, in join order.
    """
    return [uid.split("*")[0] for uid in channel.get_members()]


class ChatHandler(Handler):
    """
    C{chat.chatHandler.*}.
    """

    async def send(self, msg: dict[str, Any], session: Any) -> dict[str, Any]:
        """
        Send C{content} to everyone in the room (C{target} C{"*"}) or to one
        member by name; pushes C{onChat} C{{"msg", "from", "target"}}.
        """
        rid = session.get("rid")
        if session.uid is None or rid is None:
            raise GamenetError("not in a room", 500)
        channel = await room(self.app, rid)
        username = session.uid.split("*")[0]
        param = {"msg": msg.get("content"), "from": username, "target": msg.get("target")}
        if msg.get("target") == "*":
            channel.push_message("onChat", param)
        else:
            member = channel.get_member(f"{msg.get('target')}*{rid}")
            if member is None:
                raise GamenetError(f"{msg.get('target')} is not in the room", 500)
            self.app.channels.push_message_by_uids("onChat", param, [member])
        return {}


class ChatRemote(Remote):
    """
    C{chat.chatRemote.*}, called by the connectors.
    """

    async def add(self, uid: str, frontend_id: str, name: str) -> list[str]:
        """
        Put a user in room C{name}, made or rebuilt when missing, telling the
        others with C{onAdd}; returns the names in the room, the newcomer
        last. The connector sets the session's C{rid} before calling, so a
        rebuild may already count the newcomer: it is added once, and told
        of nobody.
        """
        channel = await room(self.app, name)
        channel.leave(uid)
        channel.push_message("onAdd", {"route": "onAdd", "user": uid.split("*")[0]})
        channel.add(uid, frontend_id)
        return names(channel)

    async def get(self, name: str) -> list[str]:
        """
        The names of the users in room C{name}, in join order.
        """
        return names(await room(self.app, name))

    def rooms(self) -> dict[str, int]:
        """
        The rooms this chat server holds (see L{held}), with how many are in each.
        """
        return {channel.name: channel.user_count for channel in held(self.app)}

    async def announce(self, name: str, text: str) -> int:
        """
        Push C{onChat} C{{"msg": text, "from": "system", "target": "*"}} to
        everyone in room C{name}, made or rebuilt when missing; how many it
        reached.
        """
        channel = await room(self.app, name)
        missing = await channel.push_message("onChat", {"msg": text, "from": "system", "target": "*"})
        return channel.user_count - len(missing)

    async def kick(self, uid: str, frontend_id: str, name: str) -> None:
        """
        Take a user out of room C{name} and tell the others with C{onLeave}.
        A room rebuilt for this call no longer counts the user (its session
        has closed), but the others still learn that it left.
        """
        rebuilt = self.app.channels.get_channel(name) is None
        channel = await room(self.app, name)
        if channel.leave(uid, frontend_id) or rebuilt:
            channel.push_message("onLeave", {"route": "onLeave", "user": uid.split("*")[0]})


class RoomCron(Component):
    """
    C{roomCron.*}: the chat servers' crons, scheduled by
    C{examples/chat/config/crons.json}.
    """

    def stats(self) -> Deferred[Any]:
        """
        Push C{onRoomStats} C{{"rid", "users"}} to the members of each room
        this chat server holds (see L{held}): how many users are in it. A
        room lives on one chat server, so each member hears it once.
        """
        return gatherResults([
            channel.push_message("onRoomStats", {"rid": channel.name, "users": channel.user_count})
            for channel in held(self.app)
        ], consumeErrors=True)


chat_handler = handler(ChatHandler, "chat")
chat_remote = remote(ChatRemote, "chat")
room_cron = cron_handler(RoomCron, "chat")
routes = configure(lambda app: app.route("chat", by_room))
rooms = configure(lambda app: app.recovery.declare("rid", "connector", left=gone), "chat")
