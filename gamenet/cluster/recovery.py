"""
Backend state recovery: what a backend holds that the frontends' live
sessions can give back after a crash (design decision 13), and members of
a frontend that died, dropped from every channel.

A frontend's sessions say who is where: the chat example's connectors keep
each user's room in the session setting C{rid}. A backend that declares its
groups keyed by such a setting (L{Recovery.declare}) gets them with
L{Recovery.get}: a group it does not hold (it has just started after a
crash, or the group has just come to route to it) is rebuilt first, as a
channel whose members are the live sessions with that setting, and with the
game's own state for it (C{rebuild}), kept as the channel's C{state}. The
groups follow routing: they are dropped where they no longer route (see
L{ChannelService.follow_routing <gamenet.channel.ChannelService.follow_routing>}),
and their state with them. Nothing is written anywhere on each change: the
sessions are the record.

The other side: a frontend is gone when this server's node link to it is
down and membership no longer counts it (the master announced that it left;
without a master, or with Redis discovery, membership is the links
themselves), or when it left the registry. From then on no channel of this
server holds a member on it, so that no push tries it again; each declared
group whose members were dropped is told (C{left}). A frontend restarted with
the same id holds new sessions: its users are members again only once they
enter again (or a group is rebuilt).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable
from weakref import WeakKeyDictionary

import attrs
from twisted.internet.defer import Deferred
from twisted.logger import Logger

if TYPE_CHECKING:
    from ..channel import Channel, ChannelService
    from ..config import ServerConfig
    from .backend import BackendSession
    from .service import ClusterNode

log = Logger()


@attrs.frozen
class Rebuildable:
    """
    A backend's groups keyed by a session setting, declared with
    L{Recovery.declare}.

    @ivar key: the setting of a member's session that names its group (the
        chat example's C{rid}); a group's channel is named by its value.
    @ivar frontend_type: the frontends asked for the sessions; C{None}, every
        frontend.
    @ivar rebuild: C{rebuild(channel, sessions)}, the game's state for a
        group, made from its members' live sessions (every uid in
        C{channel} has its session in C{sessions}) and kept as
        C{channel.state}; C{None} keeps none. Synchronous: what it returns
        is the state; when it raises, the calls waiting for the group fail
        with its error and the group is not kept.
    @ivar left: C{left(channel, uids)}, called after members of C{channel}
        were dropped because their frontend is gone (the frontend could not
        say they left); C{None} when the game needs no telling.
    """

    key: str
    frontend_type: str | None = None
    rebuild: Callable[[Channel, list[BackendSession]], Any] | None = None
    left: Callable[[Channel, list[str]], Any] | None = None


class Recovery:
    """
    A server's state that the frontends' live sessions rebuild (owned by its
    L{ClusterNode}, as C{node.recovery}; C{app.recovery} for game code).
    """

    def __init__(self, node: ClusterNode, channels: ChannelService) -> None:
        self._node = node
        self._channels = channels
        self._declared: dict[str, Rebuildable] = {}
        # The declaration of each channel got by get, to tell its game when
        # a frontend is gone; forgotten with the channel.
        self._groups: WeakKeyDictionary[Channel, Rebuildable] = WeakKeyDictionary()
        node.app.on("remove_servers", lambda server_ids: self.sweep())

    def declare(self, key: str, frontend_type: str | None = None,
                rebuild: Callable[[Channel, list[BackendSession]], Any] | None = None,
                left: Callable[[Channel, list[str]], Any] | None = None) -> Rebuildable:
        """
        Declare groups keyed by the session setting C{key} (see
        L{Rebuildable} for the arguments), got with L{get}; from now on
        this server's channels follow routing: the server type's route
        function, given a group's name, must pick the server that holds it.
        Declare from a C{configure} callback of the backend's type, before
        it starts. The names of every declared key share the channels'
        one namespace.

        @raise ValueError: C{key} is declared already.
        """
        if key in self._declared:
            raise ValueError(f"the groups keyed by {key!r} are declared already on {self._node.app.server_id}")
        declared = self._declared[key] = Rebuildable(key, frontend_type, rebuild, left)
        self._channels.follow_routing()
        return declared

    def get(self, key: str, name: str) -> Deferred[Channel]:
        """
        Group C{name} of the groups keyed by C{key}: its channel as this
        server holds it, rebuilt first from the live sessions whose setting
        C{key} is C{name} when it holds none, with its C{state} (see
        L{ChannelService.rebuild <gamenet.channel.ChannelService.rebuild>},
        whose sharing, ordering and failures this keeps).

        @raise KeyError: C{key} is not declared.
        """
        declared = self._declared[key]
        return self._channels.rebuild(name, key, name, declared.frontend_type,
                                      lambda channel, sessions: self._made(declared, channel, sessions))

    def _made(self, declared: Rebuildable, channel: Channel, sessions: list[BackendSession]) -> None:
        self._groups[channel] = declared
        # A frontend may have gone while the query ran: its sessions too.
        self._drop_gone(channel, tell=False)
        if declared.rebuild is not None:
            channel.state = declared.rebuild(channel, sessions)

    # Frontends gone

    def start(self) -> None:
        """
        Watch the links for frontends that go (membership is watched from
        the start, L{sweep} acting only while the node runs): called by the
        node once it has linked to every server.
        """
        self._node.app.registry.listeners.append(self._servers_changed)
        self._watch_links()

    def stop(self) -> None:
        """
        Stop watching: a server that stops keeps its channels as they are.
        """
        if self._servers_changed in self._node.app.registry.listeners:
            self._node.app.registry.listeners.remove(self._servers_changed)

    def _servers_changed(self, added: list[ServerConfig], removed: list[ServerConfig]) -> None:
        self._watch_links()
        self.sweep()

    def _watch_links(self) -> None:
        for link in self._node.links.values():
            if self._link_changed not in link.listeners:
                link.listeners.append(self._link_changed)

    def _link_changed(self, peer_id: str, available: bool) -> None:
        if not available:
            self.sweep()

    def gone(self, frontend_id: str) -> bool:
        """
        Whether the server C{frontend_id} is gone, with its sessions: it is
        not this server, its link is down (or it has none: it left the
        registry) and membership does not count it.
        """
        node = self._node
        if frontend_id == node.app.server_id or frontend_id in node.membership:
            return False
        link = node.links.get(frontend_id)
        return link is None or not link.up

    def sweep(self) -> None:
        """
        Drop from every channel of this server the members whose frontend
        is L{gone}, telling each declared group that lost some.
        """
        if not self._node.running:
            return
        for name in self._channels.channels:
            channel = self._channels.get_channel(name)
            if channel is not None:
                self._drop_gone(channel, tell=True)

    def _drop_gone(self, channel: Channel, tell: bool) -> None:
        dropped: dict[str, list[str]] = {}
        for uid in channel.get_members():
            member = channel.get_member(uid)
            if member is not None and self.gone(member[1]):
                channel.leave(uid)
                dropped.setdefault(member[1], []).append(uid)
        for frontend_id, uids in dropped.items():
            log.info("{count} members on {frontend_id}, gone, dropped from channel {name} on {server_id}",
                     count=len(uids), frontend_id=frontend_id, name=channel.name,
                     server_id=self._node.app.server_id)
        declared = self._groups.get(channel)
        if tell and dropped and declared is not None and declared.left is not None:
            try:
                declared.left(channel, [uid for uids in dropped.values() for uid in uids])
            except Exception:
                log.failure("left of channel {name} failed on {server_id}", name=channel.name,
                            server_id=self._node.app.server_id)
