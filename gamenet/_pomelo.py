"""
Pomelo's Application calls that the gamenet Application answers from what it
already has: the reserved settings of C{app.get}, C{load_config}, the server
types, the master, C{is_frontend}/C{is_backend} of any server, C{rpc_filter},
Pomelo's names of the services, and its names of their calls (C{add_crons},
C{remove_crons}, C{transaction}). Mixed into L{gamenet.app.Application}, so
that C{app.py} keeps only the server's own work. Tested in
C{tests/test_pomelo_api.py}; the whole table is C{doc/pomelo-api.md}.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any, Callable, Mapping

from twisted.internet.defer import Deferred

from .cluster.master import MASTER_ID
from .config import ConfigError, ServerConfig

if TYPE_CHECKING:
    from .app import Application


RESERVED: dict[str, Callable[[Application], Any]] = {
    "serverId": lambda app: app.server_id,
    "serverType": lambda app: app.server_type,
    "env": lambda app: app.env,
    "base": lambda app: app.base,
    "main": lambda app: os.path.abspath(app.cluster.path),
    "curServer": lambda app: app.current_server,
    "sessionService": lambda app: app.sessions,
    "channelService": lambda app: app.channels,
    "backendSessionService": lambda app: app.backend_sessions,
    "master": lambda app: app.master,
}
"""
Pomelo's reserved settings, which C{app.get} answers from the server itself
unless the game has C{set} one of them.
"""


class ServerCheck:
    """
    C{app.is_frontend} and C{app.is_backend}: true or false for this server,
    as the property they used to be, and callable for any server, as
    Pomelo's C{isFrontend(server)}: C{app.is_frontend(server)} takes a
    L{ServerConfig}, a server id, or a Pomelo server record (a mapping with
    C{"frontend"}, C{true} or C{"true"}); C{None} is this server. An id
    no server has is neither frontend nor backend.
    """

    __slots__ = ("_app", "_frontend")

    def __init__(self, app: Application, frontend: bool) -> None:
        self._app = app
        self._frontend = frontend

    def __call__(self, server: ServerConfig | str | Mapping[str, Any] | None = None) -> bool:
        if server is None:
            return self._app.server.frontend == self._frontend
        if isinstance(server, str):
            found = self._app.server_by_id(server)
            return found is not None and found.frontend == self._frontend
        if isinstance(server, Mapping):
            return (server.get("frontend") in (True, "true")) == self._frontend
        return bool(server.frontend) == self._frontend

    def __bool__(self) -> bool:
        return self()

    def __repr__(self) -> str:
        return repr(self())


class PomeloApplication:
    """
    The Pomelo-compatibility half of L{gamenet.app.Application}.
    """

    @property
    def is_frontend(self: Application) -> ServerCheck:  # type: ignore[misc]
        """
        Whether clients connect to this server (C{app.is_frontend}), or to
        another (C{app.is_frontend(server)}): see L{ServerCheck}.
        """
        return ServerCheck(self, True)

    @property
    def is_backend(self: Application) -> ServerCheck:  # type: ignore[misc]
        """
        Whether this server (or C{app.is_backend(server)}, another) only serves other servers.
        """
        return ServerCheck(self, False)

    @property
    def is_master(self) -> bool:
        """
        C{False}: Pomelo's master runs an application too, gamenet's is the
        supervisor (L{gamenet.cluster.master.MasterService}) and runs none,
        so no Application is the master.
        """
        return False

    @property
    def master(self: Application) -> ServerConfig | None:  # type: ignore[misc]
        """
        Where the cluster's master listens for its servers (id and type
        C{master}), or C{None} when the cluster file sets no C{master_port}.
        """
        cluster = self.cluster
        if not cluster.master_port:
            return None
        return ServerConfig(MASTER_ID, MASTER_ID, cluster.master_host, cluster.master_port)

    @property
    def server_types(self: Application) -> list[str]:  # type: ignore[misc]
        """
        Every server type of the cluster, in the order this server learnt of them.
        """
        return list(dict.fromkeys(server.type for server in self.registry))

    @property
    def base(self: Application) -> str:  # type: ignore[misc]
        """
        The directory of the cluster file: what relative paths in it, and
        those given to L{load_config}, start from (Pomelo's C{getBase}).
        """
        return os.path.dirname(os.path.abspath(self.cluster.path))

    def load_config(self: Application, key: str, path: str) -> Application:  # type: ignore[misc]
        """
        Read a JSON file into setting C{key} (Pomelo's C{loadConfig}): when
        the file holds an object with a member named after this server's
        environment, that member is the value, else the whole file.

        @param path: relative to L{base} unless absolute.
        @raise ConfigError: the file cannot be read or is not JSON; one line
            naming the file.
        """
        path = os.path.join(self.base, path)
        try:
            with open(path, encoding="utf-8") as f:
                value = json.load(f)
        except OSError as e:
            raise ConfigError([f"{path}: cannot read {key}: {e.strerror}"]) from None
        except ValueError as e:
            raise ConfigError([f"{path}: {key} is not JSON: {e}"]) from None
        if isinstance(value, dict) and value.get(self.env):
            value = value[self.env]
        return self.set(key, value)

    def rpc_filter(self: Application, filter: Any, pattern: str = "*") -> Application:  # type: ignore[misc]
        """
        An object whose C{before} and C{after} are an RPC filter each
        (Pomelo's C{rpcFilter}); see L{rpc_before}.
        """
        return self.rpc_before(filter, pattern).rpc_after(filter, pattern)

    def add_crons(self: Application, crons: list[Any]) -> Any:  # type: ignore[misc]
        """
        Pomelo's C{addCrons}: schedule cron records at run time (see L{gamenet.cron.CronService.add}).
        """
        return self.crons.add(crons)

    def remove_crons(self: Application, crons: list[Any]) -> list[str]:  # type: ignore[misc]
        """
        Pomelo's C{removeCrons}: cancel crons by id (see L{gamenet.cron.CronService.remove}).
        """
        return self.crons.remove(crons)

    def transaction(self: Application, name: str, conditions: Any, handlers: Any,  # type: ignore[misc]
                    retry: int = 1) -> Deferred[Any]:
        """
        Pomelo's C{transaction}: run and log one (see L{gamenet.transaction.Transactions.run}).
        """
        return self.transactions.run(name, conditions, handlers, retry)

    @property
    def session_service(self: Application) -> Any:  # type: ignore[misc]
        """
        Pomelo's name for C{sessions}.
        """
        return self.sessions

    @property
    def channel_service(self: Application) -> Any:  # type: ignore[misc]
        """
        Pomelo's name for C{channels}.
        """
        return self.channels

    @property
    def backend_session_service(self: Application) -> Any:  # type: ignore[misc]
        """
        Pomelo's name for C{backend_sessions}.
        """
        return self.backend_sessions
