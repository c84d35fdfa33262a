"""
The interfaces a game implements, and the ones gamenet's parts provide.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


class IComponent(Interface):
    """
    Anything gamenet instantiates for one server: handlers, remotes, session learners.

    gamenet calls the lifecycle methods in this order: every component's
    C{init}, then every C{after_init}, the server starts listening; on shutdown
    every C{before_shutdown}, the server stops, then every C{shutdown}. Each may
    return a Deferred or be C{async def}; gamenet waits for it.
    """

    app = Attribute("The L{gamenet.app.Application} of the server this component runs in.")

    def init():
        """
        Set up; other components may not be ready yet.
        """

    def after_init():
        """
        Every component of the server has run C{init}.
        """

    def before_shutdown():
        """
        The server is about to stop; clients are still connected.
        """

    def shutdown():
        """
        The server has stopped serving; release what is left.
        """


class IHandler(IComponent):
    """
    A client-facing handler. Its public methods (or the subset its registration
    names) are routes C{serverType.handlerName.methodName}, called as
    C{method(msg, session)} with the decoded body and the session. A request's
    answer is the return value (a value, a Deferred or a coroutine); a notify's
    return value is discarded.
    """


class IRemote(IComponent):
    """
    A server-to-server service. Its public methods are callable from other
    servers as C{app.rpc.<serverType>.<remoteName>.<method>(route_param, *args)}.
    """


class ISessionLearner(Interface):
    """
    Told when a client session opens and closes on a frontend (mqant's SessionLearner).
    """

    def on_connect(session):
        """
        A client finished the handshake; C{session} is its new session.
        """

    def on_disconnect(session, reason):
        """
        The session closed; C{reason} is a short text such as C{"client closed"}
        or C{"heartbeat timeout"}.
        """


class IStorageHandler(Interface):
    """
    Persists a bound session's settings so that a user who logs in again gets
    them back (mqant's StorageHandler, with C{delete} actually called).
    """

    def storage(session):
        """
        Save the settings of a bound session after a committed change.

        @return: a Deferred that fires when stored.
        """

    def delete(session):
        """
        Forget the stored settings of the session's uid (explicit logout or unbind).

        @return: a Deferred.
        """

    def query(uid):
        """
        @return: a Deferred firing with the stored settings of C{uid} as a
            C{dict}, or C{None} when nothing is stored.
        """

    def heartbeat(session):
        """
        Extend the life of the stored record of a session still in play.

        @return: a Deferred.
        """


class IFilter(Interface):
    """
    A handler filter (Pomelo's C{before}/C{after}), run around matching requests.
    Either method may be left out of an implementation registered with
    C{app.before} or C{app.after} only.
    """

    def before(request):
        """
        Called before the handler with a L{gamenet.dispatch.Request}. Raise a
        L{gamenet.errors.GamenetError} to refuse, or call C{request.respond(value)}
        to answer without the handler. May return a Deferred.
        """

    def after(request):
        """
        Called after the handler; C{request.response} or C{request.error} is
        set. May replace C{request.response}. May return a Deferred.
        """


class IRouter(Interface):
    """
    Picks the server of a type that serves a call (Pomelo's C{app.route}).
    """

    def route(server_type, route_param, servers):
        """
        @param server_type: the type called.
        @param route_param: the session, uid or other value the caller routes by.
        @param servers: the servers of that type that are available, sorted by id.
        @return: one of C{servers}, or its id.
        """


class IRegistration(Interface):
    """
    What plugin discovery finds in a game's package: a component to make for
    each server of its type. Build one with L{gamenet.component.handler},
    L{gamenet.component.controller}, L{gamenet.component.route_handler},
    L{gamenet.component.remote} or L{gamenet.component.session_learner}.
    """

    kind = Attribute("C{'handler'}, C{'remote'}, C{'session_learner'}, C{'configure'} or C{'storage'}.")
    server_type = Attribute("The server type it serves, or C{None} for every frontend (learners only).")
    name = Attribute("The component name used in routes.")

    def method_names():
        """
        @return: the method names this component serves, as they appear in routes.
        """

    def bind(app):
        """
        Make the component for one server.

        @return: a L{gamenet.component.Bound}.
        """
