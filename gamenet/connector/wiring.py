"""
A frontend's client side, wired into its Application: the L{Frontend} its
connections share, the L{Resumer} of their sessions, the L{SettingsKeeper}
of their settings in the storage the cluster file names, the client ports
and, with C{web_port}, the static web files. Each part is built from what it
uses; the Application makes one call. Tested through C{tests/test_app.py},
C{tests/test_server.py}, C{tests/test_resume.py} and C{tests/test_storage.py}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable

from ..interfaces import IRegistration
from ..session.keeper import SettingsKeeper
from ..session.suspend import Resumer
from ..storage import choose_storage
from ..storage.blocked import block_store
from .frontend import Frontend
from .listener import ClientListener
from .web import WebListener

if TYPE_CHECKING:
    from ..app import Application


def attach(app: Application, registrations: Iterable[IRegistration],
           handshake_validators: list[Callable[..., Any]]) -> Frontend:
    """
    Make a frontend's client side and attach its services to C{app} in
    dependency order, so that they stop first to last in reverse: the
    settings keeper, the client ports (the child named C{clients}), then
    the web files.

    @param registrations: the game's, among which its storage plugin, when
        the cluster file names one.
    @param handshake_validators: the list C{app.handshake} adds to; the
        frontend checks each handshake with those in it then.
    @return: the L{Frontend}.
    @raise TypeError: the storage plugin does not provide L{IStorageHandler}
        (see L{choose_storage}).
    @raise ValueError: no storage has the name the cluster file gives.
    """
    sessions, options, cluster, reactor = app.sessions, app.server.options, app.cluster, app.reactor
    assert sessions is not None and options is not None
    frontend = Frontend(app.server_id, options, app.dictionary, app.dispatcher, sessions, app.hooks, reactor)
    frontend.handshake_validators = handshake_validators
    resumer = Resumer(sessions, cluster.secret, options.resume_window, options.resume_buffer, reactor,
                      lambda i: getattr(app.server_by_id(i), "type", None) == app.server_type,
                      app.node.sys_call, app.channels.move_everywhere)
    resumer.encode, resumer.metrics = frontend.session_push, frontend.metrics
    sessions.keeper = SettingsKeeper(choose_storage(cluster, registrations, app, reactor), sessions, reactor,
                                     cluster.storage_timeout, cluster.storage_heartbeat)
    sessions.keeper.setServiceParent(app)
    listener = ClientListener(app.server, frontend, reactor, blocked=block_store(cluster, reactor))
    listener.setName("clients")
    listener.setServiceParent(app)
    if options.web_port:
        WebListener(app.server_id, options.web_root, app.server.host, options.web_port, reactor).setServiceParent(app)
    return frontend
