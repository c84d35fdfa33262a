"""
The HTTP route table: GoFrame's registration modes on URI patterns, domains,
and hook events, kept per server as C{app.http}; C{_plugins} declares the same
registrations as plugins. Tested in C{tests/test_http.py} and
C{tests/test_http_goframe.py}.

The modes reuse the game's: L{gamenet.component.public_methods} finds an
object's methods, a class is instantiated with the app as for game handlers,
plugins are L{Registration}s of kind C{HTTP} (see C{_plugins}), and hooks
live in a L{HookRegistry} (its events restricted to the four of HTTP, its patterns URI
patterns).
"""

from __future__ import annotations

import inspect
import re
from typing import Any, Callable, Iterable

import attrs
from werkzeug.routing import MapAdapter

from .._settle import settle
from ..component import Bound, Registration, _controller_call, public_methods
from ..hooks import HookRegistry, RouteHooks
from ._patterns import Pattern, match, parse

VERBS = ("get", "post", "put", "delete", "patch", "head", "options")
EVENTS = {"BeforeServe": "before_serve", "AfterServe": "after_serve",
          "BeforeOutput": "before_output", "AfterOutput": "after_output"}
CONTROLLER_CALLS = frozenset({"init", "shut"})
_WORD = re.compile(r"(?<=[^_])(?=[A-Z])")


def uri_name(name: str) -> str:
    """
    A method's name in a URI, GoFrame's default style: lower case, words
    joined by C{-}, a word starting at each C{_} or capital letter
    (C{Name} serves C{.../name}, C{show_list} and C{ShowList} C{.../show-list}).
    """
    return _WORD.sub("-", name).replace("_", "-").lower()


def _fits(function: Any, *leading: Any) -> bool:
    """
    Whether C{function(*leading, request)} is a call its signature allows
    (one it does not show, as some builtins, is taken on trust).
    """
    try:
        inspect.signature(function).bind(*leading, None)
    except TypeError:
        return False
    except ValueError:
        return True
    return True


def takes_request(pattern: str, function: Any, what: str = "") -> None:
    """
    Refuse, as GoFrame does at registration, a handler or hook registered on
    C{pattern} that cannot be called with the request.

    @param what: how to name it, before its repr (C{"the BeforeServe hook "}).
    @raise TypeError: naming the pattern and the function.
    """
    if not callable(function) or not _fits(function):
        raise TypeError(f"{pattern}: {what}{function!r} must take one argument, the request")


def _check(pattern: str, target: Any, names: Iterable[str], controller: bool = False) -> None:
    """
    L{takes_request} for methods of C{target}, an object or a controller class.

    @raise TypeError: naming the methods that cannot take the request.
    """
    wrong = [name for name in names
             if not _fits(getattr(target, name), *((None,) if controller and inspect.isfunction(
                 inspect.getattr_static(target, name)) else ()))]
    if wrong:
        raise TypeError(f"{pattern}: {', '.join(wrong)} of {target!r} must take one argument, the request "
                        f"(a method that serves no URI starts with _)")


def _names(methods: str | Iterable[str] | None) -> tuple[str, ...] | None:
    if methods is None:
        return None
    if isinstance(methods, str):
        methods = methods.split(",")
    return tuple(m.strip() for m in methods if m.strip())


@attrs.frozen
class _Controller:
    """
    One method of a new controller per request: C{init(request)}, the method,
    then C{shut(request)}, which runs even when C{init} or the method raises
    (as game controllers do; a C{Component}'s own no-argument C{init} is not
    called, as there).
    """

    cls: type
    app: Any
    method: str

    async def __call__(self, request: Any) -> Any:
        controller = self.cls(self.app)
        init, shut = _controller_call(controller, "init"), _controller_call(controller, "shut")
        try:
            if init is not None:
                await settle(init(request))
            return await settle(getattr(controller, self.method)(request))
        finally:
            if shut is not None:
                await settle(shut(request))


@attrs.frozen
class _Route:
    pattern: Pattern
    adapter: MapAdapter
    order: int


@attrs.frozen
class HttpBinding:
    """
    What a plugin registers (see L{http_handler}): a C{bind_*} call of
    L{HttpRoutes} made for each server.
    """

    call: str
    pattern: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = attrs.field(factory=dict)


class HttpRoutes:
    """
    Registrations on URI patterns (see C{doc/http.md}); one table per server,
    C{app.http}. L{domain} gives a view whose registrations serve only some hosts.
    """

    def __init__(self, app: Any, domains: tuple[str, ...] = (), table: HttpRoutes | None = None) -> None:
        self.app = app
        self.domains = domains
        self._table = table or self
        if table is None:
            self._routes: list[_Route] = []
            self._seen: set[tuple[str | None, str, tuple[str, ...]]] = set()
            self._compiled: dict[str, _Route] = {}
            self.hooks = HookRegistry(tuple(EVENTS.values()), self._hook_matches)
        else:
            self.hooks = table.hooks

    def domain(self, *names: str) -> HttpRoutes:
        """
        A view of this table whose registrations serve only the hosts C{names}.
        """
        return HttpRoutes(self.app, tuple(n.lower() for n in names), self._table)

    # Registration

    def _pattern(self, text: str) -> Pattern:
        pattern = parse(text)
        return attrs.evolve(pattern, domains=self.domains) if self.domains and not pattern.domains else pattern

    def _add(self, pattern: Pattern, endpoints: dict[str | None, Any]) -> None:
        table = self._table
        for method in endpoints:
            key = (method or pattern.method, pattern.path, pattern.domains)
            if key in table._seen:
                raise ValueError(f"pattern {pattern.text!r} is registered twice")
            table._seen.add(key)
        table._routes.append(_Route(pattern, pattern.map(endpoints), len(table._routes)))
        table._routes.sort(key=lambda route: (route.pattern.priority, route.order))

    def bind_handler(self, pattern: str, function: Callable[..., Any]) -> HttpRoutes:
        """
        Serve C{pattern} with C{function(request)} (GoFrame's C{BindHandler});
        a bound method serves as well.
        """
        takes_request(pattern, function)
        self._add(self._pattern(pattern), {None: function})
        return self

    def _methods(self, pattern: str, target: Any, methods: str | Iterable[str] | None,
                 name_func: Callable[[str], str] | None, make: Callable[[str], Any], skip: frozenset[str]) -> None:
        found = [name for name in public_methods(target) if name not in skip]
        only = _names(methods)
        if only is not None:
            missing = set(only) - set(found)
            if missing:
                raise ValueError(f"{pattern}: no public method {', '.join(sorted(missing))}")
            found = [name for name in found if name in only]
        _check(pattern, target, found, isinstance(target, type))
        name_func = name_func or uri_name
        text = pattern.replace("{.struct}", name_func((target if isinstance(target, type) else type(target)).__name__))
        base = self._pattern(text.replace("{.method}", "-"))
        for name in found:
            if "{.method}" in text:
                self._add(self._pattern(text.replace("{.method}", name_func(name))), {None: make(name)})
                continue
            if name == "index":
                self._add(base, {None: make(name)})
            self._add(base.with_path(base.path.rstrip("/") + "/" + name_func(name)), {None: make(name)})

    def bind_object(self, pattern: str, target: Any, methods: str | Iterable[str] | None = None,
                    name_func: Callable[[str], str] | None = None) -> Any:
        """
        Serve each public method C{m} of C{target} on C{pattern/<uri>}, its
        URI name C{name_func(m)} (by default L{uri_name}); or, as in
        GoFrame, where the pattern says C{{.method}} (C{{.struct}} is the
        class's name, named the same way). A method named C{index} also
        serves the pattern itself. (GoFrame's C{BindObject};
        C{BindObjectMethod} is C{methods}, a subset.)

        @param target: an object, or a class instantiated once with the app.
        @return: the object serving.
        """
        obj = target(self.app) if isinstance(target, type) else target
        self._methods(pattern, obj, methods, name_func, lambda name: getattr(obj, name), frozenset())
        return obj

    def bind_object_method(self, pattern: str, target: Any, methods: str | Iterable[str]) -> Any:
        """
        L{bind_object} for some methods, named as C{"show1, show2"} or a list.
        """
        return self.bind_object(pattern, target, methods)

    def bind_object_rest(self, pattern: str, target: Any) -> Any:
        """
        Serve C{pattern} with C{target}'s C{get}, C{post}, C{put}, C{delete},
        C{patch}, C{head} and C{options}, for those methods; any other method
        is answered 405 (C{HEAD} falls to C{get} when there is no C{head}).

        @return: the object serving.
        """
        obj = target(self.app) if isinstance(target, type) else target
        self._rest(pattern, obj, lambda verb: getattr(obj, verb))
        return obj

    def _rest(self, pattern: str, target: Any, make: Callable[[str], Any]) -> None:
        verbs = [verb for verb in VERBS if verb in public_methods(target)]
        if not verbs:
            raise ValueError(f"{pattern}: {target!r} has none of the methods {', '.join(VERBS)}")
        _check(pattern, target, verbs, isinstance(target, type))
        # A head method first: werkzeug lets a GET rule serve HEAD too.
        verbs.sort(key=lambda verb: verb != "head")
        self._add(self._pattern(pattern), {verb.upper(): make(verb) for verb in verbs})

    def bind_controller(self, pattern: str, cls: type, methods: str | Iterable[str] | None = None,
                        name_func: Callable[[str], str] | None = None) -> HttpRoutes:
        """
        As L{bind_object}, but every request gets a new C{cls(app)}, with
        C{init(request)} called before the method and C{shut(request)} after
        it, even when it raises (GoFrame's C{BindController}).
        """
        self._controller_class(cls)
        self._methods(pattern, cls, methods, name_func, lambda name: _Controller(cls, self.app, name),
                      CONTROLLER_CALLS)
        return self

    def bind_controller_method(self, pattern: str, cls: type, methods: str | Iterable[str]) -> HttpRoutes:
        """
        L{bind_controller} for some methods.
        """
        return self.bind_controller(pattern, cls, methods)

    def bind_controller_rest(self, pattern: str, cls: type) -> HttpRoutes:
        """
        L{bind_object_rest} with a new controller per request, as L{bind_controller}.
        """
        self._controller_class(cls)
        self._rest(pattern, cls, lambda verb: _Controller(cls, self.app, verb))
        return self

    @staticmethod
    def _controller_class(cls: Any) -> None:
        if not isinstance(cls, type):
            raise TypeError("a controller is registered as a class")

    def bind_hook(self, pattern: str, event: str, hook: Callable[..., Any]) -> HttpRoutes:
        """
        Call C{hook(request)} at C{event} (C{BeforeServe}, C{AfterServe},
        C{BeforeOutput}, C{AfterOutput}, or in snake case) for every request
        matching C{pattern}, after the hooks registered before it.
        """
        takes_request(pattern, hook, f"the {event} hook ")
        self.hooks.add(EVENTS.get(event, event), self._table._compile(self._pattern(pattern)), hook)
        return self

    def bind_hooks(self, pattern: str, hooks: dict[str, Callable[..., Any]]) -> HttpRoutes:
        """
        L{bind_hook} for each event of C{hooks} (GoFrame's C{BindHookHandlerByMap}).
        """
        for event, hook in hooks.items():
            self.bind_hook(pattern, event, hook)
        return self

    def add(self, registration: Registration) -> Bound:
        """
        Make a plugin's registration (kind C{HTTP}, see C{_plugins}) for this server.

        @return: what the app keeps; its instance, when an object was made,
            gets the lifecycle calls of components.
        """
        binding = registration.target
        made = getattr(self, binding.call)(binding.pattern, *binding.args, **binding.kwargs)
        return Bound(registration, made if binding.call.startswith("bind_object") else None, {})

    # Lookup

    def match(self, method: str, host: str, path: str) -> tuple[Any, dict[str, Any]] | set[str] | None:
        """
        The endpoint serving a request and its route values, in GoFrame's
        order; else the methods the path takes (for a 405), or C{None} (404).
        """
        allowed: set[str] = set()
        for route in self._table._routes:
            pattern = route.pattern
            if not path.startswith(pattern.prefix) or pattern.domains and host not in pattern.domains:
                continue
            found = match(route.adapter, path, method)
            if isinstance(found, tuple):
                return found
            if found:
                allowed |= found
        return allowed or None

    def hooks_for(self, method: str, host: str, path: str) -> RouteHooks:
        """
        The hooks of every event for a request, in registration order.
        """
        return self.hooks.for_route(f"{method} {host}{path}", cache=False)

    def _compile(self, pattern: Pattern) -> str:
        """
        Keep a hook pattern's map; the key the hook registry knows it by.
        """
        key = pattern.text
        if pattern.domains and "@" not in key:
            key += "@" + ",".join(pattern.domains)
        if key not in self._compiled:
            self._compiled[key] = _Route(pattern, pattern.map({None: True}), 0)
        return key

    def _hook_matches(self, route: str, key: str) -> bool:
        method, _, rest = route.partition(" ")
        slash = rest.find("/")
        host, path = rest[:slash], rest[slash:]
        compiled = self._compiled[key]
        if compiled.pattern.domains and host not in compiled.pattern.domains:
            return False
        return isinstance(match(compiled.adapter, path, method), tuple)
