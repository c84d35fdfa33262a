"""
Channels that follow routing: a server keeps only the channels whose name
routes to it, drops the others whenever which servers are available may
have changed, and tells the server a dropped copy now routes to when that
copy's members changed meanwhile, so that it rebuilds its own from the live
sessions. Mixed into L{gamenet.channel.ChannelService}, which keeps the
channels and rebuilds them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.logger import Logger

from .errors import Unavailable

if TYPE_CHECKING:
    from .channel import ChannelService
    from .config import ServerConfig

log = Logger()

FORGET_ROUTE = "sys.channels.forget"
"""The remote every server serves with L{FollowsRouting.forget}."""


class FollowsRouting:
    """
    The following half of L{ChannelService<gamenet.channel.ChannelService>}.
    """

    def follow_routing(self: ChannelService) -> None:
        """
        From now on, keep only the channels whose name routes to this
        server: the route function of this server's type, given a channel's
        name as route parameter, must pick the server that holds that
        channel (the chat example's C{by_room} does). Whenever which servers
        are available may have changed (a node link to another server
        became available or stopped being so, servers were added or
        removed), every channel routing elsewhere is destroyed. Together with
        L{rebuild<gamenet.channel.ChannelService.rebuild>}, a channel
        follows routing: the server it moves to rebuilds it from the live
        sessions, the one it left drops its copy, so that a stale copy never
        serves when the channel comes back.

        Routing is each server's own view, so for a moment two servers may
        both serve a channel. A copy dropped after members joined or left
        through it tells the server the channel now routes to (L{forget}),
        which rebuilds its own copy from the live sessions, so that those
        changes are not lost there.

        A peer leaving routing while its link stays up (a peer that drains
        before it stops) may change routing without any of these events,
        which is safe: channels only move to this server then, none away
        from it.
        """
        if self._following:
            return
        self._following = True
        if self.app.running:
            self._watch()
        else:
            self.app.on("start_server", lambda server_id: self._watch())

    def forget(self: ChannelService, name: str, from_id: str) -> bool:
        """
        Server C{from_id} dropped its copy of channel C{name}, which routes
        to this server now, after members joined or left through it: this
        server's copy may lack those changes. When following routing, the
        copy held is destroyed, so that the next call rebuilds it from the
        live sessions; a copy being rebuilt now (whose query may have run
        before those changes) serves the calls waiting for it and is then
        destroyed. A server not following routing keeps its channels.

        @return: whether a copy was (or will be) destroyed.
        """
        if not self._following:
            return False
        if name in self._rebuilding:
            self._stale.add(name)
        elif name in self._channels:
            self.destroy_channel(name)
        else:
            return False
        log.info("channel {name} changed on {from_id} while it routed there: dropped on {server_id}, "
                 "to be rebuilt from the live sessions", name=name, from_id=from_id, server_id=self.app.server_id)
        return True

    def _watch(self: ChannelService) -> None:
        self.app.on("add_servers", lambda servers: self._sweep())
        self.app.on("remove_servers", lambda server_ids: self._sweep())
        # Appended after the node's own listener (added when it started), so
        # the links of added servers exist when it runs.
        self.app.registry.listeners.append(self._servers_changed)
        self._watch_links()
        # Calls may have come, and links changed, before the server said it started.
        self._sweep()

    def _servers_changed(self: ChannelService, added: list[ServerConfig], removed: list[ServerConfig]) -> None:
        self._watch_links()
        self._sweep()

    def _watch_links(self: ChannelService) -> None:
        for link in self.app.node.links.values():
            if self._link_changed not in link.listeners:
                link.listeners.append(self._link_changed)

    def _link_changed(self: ChannelService, peer_id: str, available: bool) -> None:
        self._sweep()

    def _owns(self: ChannelService, name: str) -> bool:
        return self._owner(name) == self.app.server_id

    def _owner(self: ChannelService, name: str) -> str | None:
        """
        The server channel C{name} routes to now; C{None} when none is available.
        """
        try:
            return self.app.node.pick(self.app.server_type, name).id
        except Unavailable:
            return None

    def _sweep(self: ChannelService) -> None:
        for name in [name for name in self._channels if not self._owns(name)]:
            log.info("channel {name} now routes away from {server_id}: dropped", name=name,
                     server_id=self.app.server_id)
            self._drop(name)

    def _drop(self: ChannelService, name: str) -> None:
        """
        Destroy the copy of channel C{name}, which routes elsewhere; when
        members joined or left through it, tell the server it routes to.
        """
        channel = self._channels.get(name)
        self.destroy_channel(name)
        owner = self._owner(name)
        if channel is None or not channel.changed or owner is None:
            return
        self.app.node.call_remote(owner, FORGET_ROUTE, [name, self.app.server_id]).addErrback(
            lambda f: log.warn("{owner} was not told that channel {name} changed on {server_id}: {error}",
                               owner=owner, name=name, server_id=self.app.server_id, error=f.getErrorMessage()))
