"""
C{twistd gamenet}: options and the service they make.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import attrs

from twisted.application.service import IService, MultiService, Service
from twisted.logger import Logger
from twisted.python import usage

from .app import Application
from .cluster import MasterService
from .config import ClusterConfig, ConfigError, load, server_from_spec
from .connector import ListenError
from .plugins import PluginError, add_paths, discover

log = Logger()


class Options(usage.Options):
    """
    C{twistd gamenet [--config FILE] [--server ID | --server-spec JSON] [--env ENV]}.
    """

    synopsis = "[--config FILE] [--server ID | --server-spec JSON | --all] [--env ENV]"
    longdesc = (
        "Runs the gamenet servers described by a cluster file. Without --server, "
        "runs the master, which starts each server of the file whose host is this "
        "machine as a child process and restarts it if it dies. With --server, "
        "runs that one server. With --all, runs every server of the file in this "
        "one process (for development)."
    )
    optFlags = [
        ["all", "a", "Run every server of the file in this process, without a master."],
    ]
    optParameters = [
        ["config", "c", "etc/cluster.ini", "The cluster file."],
        ["server", "s", None, "Run only the server with this id."],
        ["env", "e", None, "The environment name, overriding [cluster] env."],
        ["server-spec", None, None,
         "Run the server this JSON object describes (a server section's keys and its id), "
         "added to the file's servers or replacing the one of that id; the master starts "
         "servers added at run time so."],
    ]

    cluster: ClusterConfig

    def postOptions(self) -> None:
        try:
            self.cluster = load(self["config"])
        except ConfigError as e:
            raise SystemExit(f"gamenet: invalid cluster file:\n{e}") from None
        if self["server-spec"] is not None:
            self._add_spec(self["server-spec"])
        server = self["server"]
        if server is not None and self["all"]:
            raise SystemExit("gamenet: --server and --all do not go together")
        if server is not None:
            try:
                self.cluster.server(server)
            except KeyError:
                known = ", ".join(s.id for s in self.cluster.servers)
                raise SystemExit(f"gamenet: no server {server!r} in {self['config']} (servers: {known})") from None

    def _add_spec(self, text: str) -> None:
        try:
            server = server_from_spec(json.loads(text), self.cluster)
        except ValueError as e:
            raise SystemExit(f"gamenet: --server-spec is not JSON: {e}") from None
        except ConfigError as e:
            raise SystemExit(f"gamenet: invalid --server-spec:\n{e}") from None
        if self["server"] not in (None, server.id):
            raise SystemExit(f"gamenet: --server {self['server']} and --server-spec of {server.id} do not go together")
        others = tuple(s for s in self.cluster.servers if s.id != server.id)
        self.cluster = attrs.evolve(self.cluster, servers=(*others, server))
        self["server"] = server.id


class ClusterService(MultiService):
    """
    The servers this process runs; a port that cannot be opened, or a
    mistake found while the servers are made (a crons file's action that
    names no cron method, a C{load_config} file that cannot be read), ends
    the process with the reason instead of a traceback, and a server whose
    start fails (a component's C{init} raising, say) is logged and stops
    the process.

    @ivar path: the cluster file.
    """

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except ListenError as e:
            raise SystemExit(f"gamenet: {self.path} {e}") from None
        except (PluginError, ConfigError, TypeError, ValueError, OSError) as e:
            raise SystemExit(f"gamenet: {e}") from None

    def startService(self) -> None:
        Service.startService(self)
        for app in self:
            app.startService().addErrback(self._failed, app)

    def _failed(self, failure: Any, app: Application) -> None:
        log.failure("{server_id} could not start; stopping", failure, server_id=app.server_id)
        app.reactor.stop()


def build(
    cluster: ClusterConfig, server_ids: list[str], env: str | None = None, reactor: Any = None,
    use_master: bool = False,
) -> ClusterService:
    """
    The service running C{server_ids} of C{cluster}, with the plugins it names.

    @param use_master: log in to the cluster's master for membership.
    @raise PluginError: a plugin package does not import.
    """
    add_paths(cluster.plugin_path)
    try:
        registrations = discover(cluster.plugins)
    except PluginError as e:
        raise PluginError(f"{cluster.path} [cluster] plugins: {e}") from e
    top = ClusterService(cluster.path)
    for server_id in server_ids:
        Application(cluster, server_id, registrations, env, reactor, use_master=use_master).setServiceParent(top)
    return top


def makeService(options: Options) -> IService:
    """
    Make the service C{twistd gamenet} runs: one server, all of them, or the master.
    """
    cluster = options.cluster
    if not options["server"] and not options["all"]:
        return MasterService(cluster, options["env"])
    server_ids = [options["server"]] if options["server"] else [s.id for s in cluster.servers]
    try:
        return build(cluster, server_ids, options["env"], use_master=bool(options["server"]))
    except (PluginError, OSError, ValueError) as e:
        print(f"gamenet: {e}", file=sys.stderr)
        raise SystemExit(1) from None
