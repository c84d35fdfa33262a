"""
The chat servers: a room is a channel, and a whole room lives on one chat
server, chosen by the room name as Pomelo's demo does.
"""

from __future__ import annotations

from typing import Any

from gamenet import GamenetError, Handler, Remote, configure, handler, remote

from ..dispatcher import dispatch


def by_room(session: Any, servers: list[Any]) -> Any:
    """
    The chat server of a session's room, chosen by the room id as the demo does.
    """
    return dispatch(str(session.get("rid")), servers)


class ChatHandler(Handler):
    """
    C{chat.chatHandler.*}.
    """

    def send(self, msg: dict[str, Any], session: Any) -> dict[str, Any]:
        """
        Send C{content} to everyone in the room (C{target} C{"*"}) or to one
        member by name; pushes C{onChat} C{{"msg", "from", "target"}}.
        """
        rid = session.get("rid")
        channel = self.app.channels.get_channel(rid) if session.uid is not None else None
        if channel is None:
            raise GamenetError("not in a room", 500)
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

    def add(self, uid: str, frontend_id: str, name: str, flag: bool) -> list[str]:
        """
        Put a user in room C{name} (made when C{flag}), telling the others
        with C{onAdd}; returns the names in the room.
        """
        channel = self.app.channels.get_channel(name, flag)
        if channel is not None:
            channel.push_message("onAdd", {"route": "onAdd", "user": uid.split("*")[0]})
            channel.add(uid, frontend_id)
        return self.get(name, flag)

    def get(self, name: str, flag: bool) -> list[str]:
        """
        The names of the users in room C{name}.
        """
        channel = self.app.channels.get_channel(name, flag)
        return [uid.split("*")[0] for uid in channel.get_members()] if channel is not None else []

    def kick(self, uid: str, frontend_id: str, name: str) -> None:
        """
        Take a user out of room C{name} and tell the others with C{onLeave}.
        """
        channel = self.app.channels.get_channel(name)
        if channel is not None and channel.leave(uid, frontend_id):
            channel.push_message("onLeave", {"route": "onLeave", "user": uid.split("*")[0]})


chat_handler = handler(ChatHandler, "chat")
chat_remote = remote(ChatRemote, "chat")
routes = configure(lambda app: app.route("chat", by_room))
