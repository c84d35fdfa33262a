"""
Components and how a game registers them.

A game module declares registrations at module level, so that plugin discovery
finds them, or passes them to L{gamenet.app.Application.register}::

    class EntryHandler(Handler):
        def enter(self, msg, session): ...

    entry = handler(EntryHandler, "connector")            # shared object, all public methods
    room = controller(RoomController, "area")             # a new instance per request
    echo = route_handler("connector.echo.echo", echo_fn)  # one function under one route

Each server gets its own instance of a shared component: the class is called
with the server's L{Application}.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable

import attrs
from twisted.plugin import IPlugin
from zope.interface import implementer

from ._settle import settle
from .interfaces import IHandler, IRegistration, IRemote

LIFECYCLE = frozenset({"init", "after_init", "before_shutdown", "shutdown"})

HANDLER = "handler"
REMOTE = "remote"
SESSION_LEARNER = "session_learner"
CONFIGURE = "configure"
STORAGE = "storage"
HTTP = "http"
CRON = "cron"


class Component:
    """
    A convenient base: keeps the application and has no-op lifecycle methods.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    def init(self) -> None:
        """
        Set up.
        """

    def after_init(self) -> None:
        """
        Every component has run C{init}.
        """

    def before_shutdown(self) -> None:
        """
        The server is about to stop.
        """

    def shutdown(self) -> None:
        """
        The server has stopped serving.
        """


@implementer(IHandler)
class Handler(Component):
    """
    Base class for handlers.
    """


@implementer(IRemote)
class Remote(Component):
    """
    Base class for remotes.
    """


def public_methods(target: Any) -> list[str]:
    """
    The names of a class's or object's public methods, lifecycle methods excepted.
    """
    names = []
    for name in dir(target):
        if name.startswith("_") or name in LIFECYCLE or name == "app":
            continue
        value = inspect.getattr_static(target, name)
        if isinstance(value, (staticmethod, classmethod)) or inspect.isfunction(value):
            names.append(name)
        elif not isinstance(target, type) and callable(value) and not isinstance(value, type):
            names.append(name)
    return sorted(names)


def default_name(target: Any) -> str:
    """
    A component's default route name: its class name with the first letter
    lower-cased (C{EntryHandler} serves C{entryHandler}).
    """
    cls = target if isinstance(target, type) else type(target)
    name = cls.__name__
    return name[:1].lower() + name[1:]


@attrs.frozen
class Bound:
    """
    A registration made for one server.

    @ivar registration: what it was made from.
    @ivar instance: the component object whose lifecycle methods gamenet calls,
        or C{None} for controllers and single functions.
    @ivar methods: route method name to a callable taking C{(msg, session)} (or,
        for remotes, the call's arguments).
    """

    registration: Registration
    instance: Any
    methods: dict[str, Callable[..., Any]]


def _controller_call(controller: Any, name: str) -> Callable[[Any], Any] | None:
    # A controller built on Component has its no-argument lifecycle init,
    # which is not GoFrame's init(request).
    found = getattr(type(controller), name, None)
    if found is None or found is getattr(Component, name, None):
        return None
    return getattr(controller, name)  # type: ignore[no-any-return]


@attrs.frozen
class _PerRequest:
    """
    Calls one method on a new controller instance, as GoFrame does: the
    controller's C{init(request)} first, then the method, then its
    C{shut(request)}, which runs even when C{init} or the method raised.
    C{request} is the L{gamenet.dispatch.Request} that hooks see; the
    dispatcher gives it because of L{takes_request}.
    """

    factory: Callable[[Any], Any]
    app: Any
    method: str
    takes_request = True

    async def __call__(self, msg: Any, session: Any, request: Any) -> Any:
        controller = self.factory(self.app)
        init, shut = _controller_call(controller, "init"), _controller_call(controller, "shut")
        try:
            if init is not None:
                await settle(init(request))
            return await settle(getattr(controller, self.method)(msg, session))
        finally:
            if shut is not None:
                await settle(shut(request))


@implementer(IPlugin, IRegistration)
@attrs.frozen
class Registration:
    """
    A component to make for each server of C{server_type}.

    @ivar kind: L{HANDLER}, L{REMOTE}, L{SESSION_LEARNER}, L{CONFIGURE}, L{STORAGE},
        L{HTTP} (see L{gamenet.http.http_handler}) or L{CRON} (see L{cron_handler}).
    @ivar target: a class (called with the app), an object (used as it is), or a function.
    @ivar mode: C{"shared"}, C{"controller"} or C{"function"}.
    @ivar only: the Python method names to expose, or C{None} for all public ones.
    @ivar name_func: renames methods for routes (Pitaya's C{WithNameFunc}).
    """

    kind: str
    server_type: str | None
    name: str
    target: Any
    mode: str = "shared"
    only: tuple[str, ...] | None = None
    name_func: Callable[[str], str] | None = None
    env: str | None = None

    def _python_names(self) -> list[str]:
        if self.mode == "function":
            return [self.function_method]
        names = public_methods(self.target)
        if self.only is not None:
            missing = set(self.only) - set(names)
            if missing:
                raise ValueError(f"{self.name}: no public method {', '.join(sorted(missing))}")
            names = [name for name in names if name in self.only]
        return names

    @property
    def function_method(self) -> str:
        """
        For a single function, the method name its route ends with.
        """
        return self.only[0] if self.only else ""

    def _route_name(self, python_name: str) -> str:
        if self.mode == "function" or self.name_func is None:
            return python_name
        return self.name_func(python_name)

    def method_names(self) -> list[str]:
        """
        The method names as they appear in routes.
        """
        return [self._route_name(name) for name in self._python_names()]

    def bind(self, app: Any) -> Bound:
        """
        Make the component for one server.
        """
        if self.mode == "function":
            return Bound(self, None, {self.function_method: self.target})
        names = self._python_names()
        if self.mode == "controller":
            methods = {self._route_name(n): _PerRequest(self.target, app, n) for n in names}
            return Bound(self, None, methods)
        instance = self.target(app) if isinstance(self.target, type) else self.target
        return Bound(self, instance, {self._route_name(n): getattr(instance, n) for n in names})


def _methods_registration(
    kind: str,
    mode: str,
    target: Any,
    server_type: str,
    name: str | None,
    methods: Iterable[str] | None,
    name_func: Callable[[str], str] | None,
) -> Registration:
    if name_func is not None and not callable(name_func):
        raise TypeError("name_func must be callable")
    return Registration(
        kind, server_type, name or default_name(target), target, mode,
        tuple(methods) if methods is not None else None, name_func,
    )


def handler(
    target: Any,
    server_type: str,
    *,
    name: str | None = None,
    methods: Iterable[str] | None = None,
    name_func: Callable[[str], str] | None = None,
) -> Registration:
    """
    A shared handler: one instance per server serves every request.

    @param target: a class (instantiated with the app for each server) or an object.
    @param server_type: the server type whose routes it serves.
    @param name: the route name; by default the class name, first letter lower-cased.
    @param methods: the Python method names to expose; by default every public method.
    @param name_func: renames methods for routes, e.g. C{str.lower}.
    """
    return _methods_registration(HANDLER, "shared", target, server_type, name, methods, name_func)


def controller(
    target: type,
    server_type: str,
    *,
    name: str | None = None,
    methods: Iterable[str] | None = None,
    name_func: Callable[[str], str] | None = None,
) -> Registration:
    """
    A controller: a new instance of C{target} (called with the app) for every
    request, so no state is shared between requests. As GoFrame's, its
    C{init(request)} is called before the method and its C{shut(request)}
    after, even when the method raises, when it has them; C{request} is the
    L{gamenet.dispatch.Request} (route, id, msg, session).
    """
    if not isinstance(target, type):
        raise TypeError("a controller is registered as a class")
    return _methods_registration(HANDLER, "controller", target, server_type, name, methods, name_func)


def route_handler(route: str, function: Callable[..., Any]) -> Registration:
    """
    One function serving one route C{serverType.handlerName.methodName}.
    """
    parts = route.split(".")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"route {route!r} is not serverType.handlerName.methodName")
    server_type, name, method = parts
    return Registration(HANDLER, server_type, name, function, "function", (method,))


def remote(
    target: Any,
    server_type: str,
    *,
    name: str | None = None,
    methods: Iterable[str] | None = None,
    name_func: Callable[[str], str] | None = None,
) -> Registration:
    """
    A remote: its public methods are callable from other servers. Its
    arguments are C{handler}'s.
    """
    return _methods_registration(REMOTE, "shared", target, server_type, name, methods, name_func)


def cron_handler(
    target: Any,
    server_type: str | None,
    *,
    name: str | None = None,
    methods: Iterable[str] | None = None,
) -> Registration:
    """
    A cron component (Pomelo's cron handler, C{app/servers/<type>/cron/<name>.js}): one
    instance per server of C{server_type} (every server when C{None}),
    whose public methods, called without arguments, are the actions
    C{"<name>.<method>"} of the crons file and C{app.add_crons} (see
    L{gamenet.cron}). A method may return a Deferred or be C{async def}.
    """
    return _methods_registration(CRON, "shared", target, server_type, name, methods, None)  # type: ignore[arg-type]


def session_learner(target: Any, server_type: str | None = None) -> Registration:
    """
    A session learner on the frontends of C{server_type} (every frontend when C{None}).
    """
    return Registration(SESSION_LEARNER, server_type, default_name(target), target, "shared", ())


def storage_handler(target: Any, name: str) -> Registration:
    """
    A game's own session storage, used when the cluster file says
    C{storage = <name>}: a class called with the app, or an object, providing
    L{gamenet.interfaces.IStorageHandler}.
    """
    return Registration(STORAGE, None, name, target, "shared", ())


def configure(function: Callable[[Any], Any], server_type: str | None = None, env: str | None = None) -> Registration:
    """
    A function run with the app before the server starts, as Pomelo's
    C{app.configure(env, serverType, fn)} in C{app.js}: the place for route
    functions, filters and hooks. C{server_type} and C{env} may be C{None}
    (any) or name several as C{"a|b"}.
    """
    return Registration(CONFIGURE, server_type, getattr(function, "__name__", "configure"), function,
                        "function", ("",), None, env)
