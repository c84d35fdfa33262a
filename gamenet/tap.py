"""
C{twistd gamenet}: options and the service they make.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.application.service import IService, MultiService
from twisted.python import usage

from .app import Application
from .config import ClusterConfig, ConfigError, load
from .connector import ListenError
from .plugins import PluginError, add_paths, discover


class Options(usage.Options):
    """
    C{twistd gamenet [--config FILE] [--server ID] [--env ENV]}.
    """

    synopsis = "[--config FILE] [--server ID] [--env ENV]"
    longdesc = (
        "Runs gamenet servers described by a cluster file. With --server, runs "
        "that one server; without it, runs every server of the file in this process."
    )
    optParameters = [
        ["config", "c", "etc/cluster.ini", "The cluster file."],
        ["server", "s", None, "Run only the server with this id."],
        ["env", "e", None, "The environment name, overriding [cluster] env."],
    ]

    cluster: ClusterConfig

    def postOptions(self) -> None:
        try:
            self.cluster = load(self["config"])
        except ConfigError as e:
            raise SystemExit(f"gamenet: invalid cluster file:\n{e}") from None
        server = self["server"]
        if server is not None:
            try:
                self.cluster.server(server)
            except KeyError:
                known = ", ".join(s.id for s in self.cluster.servers)
                raise SystemExit(f"gamenet: no server {server!r} in {self['config']} (servers: {known})") from None


class ClusterService(MultiService):
    """
    The servers this process runs; a port that cannot be opened ends the
    process with the reason instead of a traceback.
    """

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except (ListenError, PluginError, TypeError, ValueError) as e:
            raise SystemExit(f"gamenet: {e}") from None


def build(cluster: ClusterConfig, server_ids: list[str], env: str | None = None, reactor: Any = None) -> ClusterService:
    """
    The service running C{server_ids} of C{cluster}, with the plugins it names.

    @raise PluginError: a plugin package does not import.
    """
    add_paths(cluster.plugin_path)
    registrations = discover(cluster.plugins)
    top = ClusterService()
    for server_id in server_ids:
        Application(cluster, server_id, registrations, env, reactor).setServiceParent(top)
    return top


def makeService(options: Options) -> IService:
    """
    Make the service C{twistd gamenet} runs.
    """
    cluster = options.cluster
    server_ids = [options["server"]] if options["server"] else [s.id for s in cluster.servers]
    try:
        return build(cluster, server_ids, options["env"])
    except PluginError as e:
        print(f"gamenet: {e}", file=sys.stderr)
        raise SystemExit(1) from None
