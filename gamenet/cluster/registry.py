"""
The servers of the cluster as one server knows them: those of the cluster file
to begin with, changed at run time by discovery or by C{app.add_servers}.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

from ..config import ServerConfig

Listener = Callable[[list[ServerConfig], list[ServerConfig]], Any]


class ServerRegistry:
    """
    Server configurations by id, in the order they became known.

    @ivar listeners: called as C{listener(added, removed)} after each change;
        a server whose configuration changed is in both lists.
    """

    def __init__(self, servers: Iterable[ServerConfig] = ()) -> None:
        self._servers: dict[str, ServerConfig] = {server.id: server for server in servers}
        self.listeners: list[Listener] = []

    def __contains__(self, server_id: object) -> bool:
        return server_id in self._servers

    def __iter__(self) -> Any:
        return iter(list(self._servers.values()))

    @property
    def servers(self) -> Mapping[str, ServerConfig]:
        """
        Every server by id (a copy).
        """
        return dict(self._servers)

    def get(self, server_id: str) -> ServerConfig | None:
        """
        A server by id, or C{None}.
        """
        return self._servers.get(server_id)

    def by_type(self, server_type: str) -> list[ServerConfig]:
        """
        The servers of one type.
        """
        return [server for server in self._servers.values() if server.type == server_type]

    def add(self, servers: Iterable[ServerConfig]) -> None:
        """
        Add servers, or update those whose configuration changed.
        """
        added, removed = [], []
        for server in servers:
            old = self._servers.get(server.id)
            if old == server:
                continue
            if old is not None:
                removed.append(old)
            self._servers[server.id] = server
            added.append(server)
        self._tell(added, removed)

    def remove(self, server_ids: Iterable[str]) -> None:
        """
        Forget servers.
        """
        removed = [self._servers.pop(server_id) for server_id in server_ids if server_id in self._servers]
        self._tell([], removed)

    def replace(self, servers: Iterable[ServerConfig]) -> None:
        """
        Make the registry hold exactly C{servers}.
        """
        servers = list(servers)
        keep = {server.id for server in servers}
        self.remove([server_id for server_id in self._servers if server_id not in keep])
        self.add(servers)

    def _tell(self, added: list[ServerConfig], removed: list[ServerConfig]) -> None:
        if added or removed:
            for listener in list(self.listeners):
                listener(added, removed)


class ServerCalls:
    """
    The Application's calls on the servers it knows, answered by its
    C{registry}. Mixed into L{gamenet.app.Application}; they use nothing
    else of it but its own configuration.

    @ivar registry: the servers it knows now.
    @ivar server: its own configuration.
    """

    registry: ServerRegistry
    server: ServerConfig

    @property
    def servers(self) -> dict[str, ServerConfig]:
        """
        Every server of the cluster by id, as this server knows them now.
        """
        return dict(self.registry.servers)

    def servers_by_type(self, server_type: str) -> list[ServerConfig]:
        """
        The servers of one type.
        """
        return self.registry.by_type(server_type)

    def server_by_id(self, server_id: str) -> ServerConfig | None:
        """
        A server by id, or C{None}.
        """
        return self.registry.get(server_id)

    def add_servers(self, servers: list[ServerConfig]) -> None:
        """
        Add servers to the cluster at run time (or update their
        configuration); links to them are made at once.
        """
        self.registry.add(servers)

    def remove_servers(self, server_ids: list[str]) -> None:
        """
        Remove servers from the cluster at run time; their links are closed.
        """
        self.registry.remove(server_ids)

    def replace_servers(self, servers: list[ServerConfig]) -> None:
        """
        Make the cluster exactly C{servers} (this server stays).
        """
        self.registry.replace([*servers, *([] if any(s.id == self.server.id for s in servers) else [self.server])])
