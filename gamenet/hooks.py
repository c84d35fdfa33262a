"""
Hooks and filters: one registry of callables by event and route pattern.

Events, in the order a request meets them:

 - C{route}: may take the request over before normal dispatch (mqant's
   C{RouteHandler.OnRoute}) by calling C{request.respond(value)}.
 - C{global_before}: the frontend's global filters (Pomelo's C{globalBefore}).
 - C{before_serve}: handler filters (Pomelo's C{before}).
 - C{after_serve}: handler filters (Pomelo's C{after}).
 - C{global_after}: the frontend's global after-filters.
 - C{before_output}: the response is about to be encoded; may replace it.
 - C{after_output}: the response has been written.
 - C{close}: the request is finished, whatever its outcome.

Each of these is called with the L{gamenet.dispatch.Request}. The C{send}
event is different: its hooks see every outgoing push as
C{hook(session, route, msg)} and return the message to send (rewritten or not)
or L{DROP} (mqant's C{SendMessageHook}).

The C{rpc_before} and C{rpc_after} events are Pomelo's RPC filters: their
hooks see each outgoing C{app.rpc} call as a L{gamenet.cluster.rpc.RpcCall},
matched against the remote's route C{serverType.remoteName.method}; a before
hook may change C{call.args} or raise to fail the call, an after hook sees
C{call.result} or C{call.error}.

Hooks for a route run in registration order; a pattern is matched against the
whole route with shell-style wildcards (C{connector.*}, C{*.entryHandler.enter}).
HTTP services keep their hooks in a registry of their own kind, with URI
patterns and only the four serve and output events (see L{gamenet.http}).
L{HookCalls} are the Application's calls that add hooks (C{app.before}...).
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any, Callable, Self

import attrs

REQUEST_EVENTS = (
    "route",
    "global_before",
    "before_serve",
    "after_serve",
    "global_after",
    "before_output",
    "after_output",
    "close",
)
RPC_EVENTS = ("rpc_before", "rpc_after")
EVENTS = (*REQUEST_EVENTS, "send", *RPC_EVENTS)

DROP = object()
"""
Returned by a C{send} hook to drop the message.
"""


@attrs.frozen
class RouteHooks:
    """
    The hooks of every event for one route, resolved once.
    """

    route: tuple[Callable[..., Any], ...] = ()
    global_before: tuple[Callable[..., Any], ...] = ()
    before_serve: tuple[Callable[..., Any], ...] = ()
    after_serve: tuple[Callable[..., Any], ...] = ()
    global_after: tuple[Callable[..., Any], ...] = ()
    before_output: tuple[Callable[..., Any], ...] = ()
    after_output: tuple[Callable[..., Any], ...] = ()
    close: tuple[Callable[..., Any], ...] = ()
    send: tuple[Callable[..., Any], ...] = ()
    rpc_before: tuple[Callable[..., Any], ...] = ()
    rpc_after: tuple[Callable[..., Any], ...] = ()

    @property
    def request_hooks(self) -> bool:
        """
        Whether any request event has a hook; when none has, dispatch takes its fast path.
        """
        return any(getattr(self, event) for event in REQUEST_EVENTS)


NO_HOOKS = RouteHooks()


class HookRegistry:
    """
    Hooks by event and route pattern, with the resolution per route cached.

    @ivar changed: called with no argument whenever a hook is added, so that
        caches built on this registry can be dropped.
    """

    def __init__(self, events: tuple[str, ...] = EVENTS,
                 match: Callable[[str, str], bool] = fnmatchcase) -> None:
        """
        @param events: the events hooks may be registered for.
        @param match: whether a route matches a pattern, given C{(route, pattern)};
            shell-style wildcards by default.
        """
        self.events = events
        self._match = match
        self._hooks: list[tuple[str, str, Callable[..., Any]]] = []
        self._cache: dict[str, RouteHooks] = {}
        self.changed: list[Callable[[], None]] = []

    def add(self, event: str, pattern: str, hook: Callable[..., Any]) -> None:
        """
        Register C{hook} for C{event} on routes matching C{pattern}.

        @raise ValueError: an unknown event.
        """
        if event not in self.events:
            raise ValueError(f"unknown hook event {event!r}; one of {', '.join(self.events)}")
        if not callable(hook):
            raise TypeError(f"{hook!r} is not callable")
        self._hooks.append((event, pattern, hook))
        self._cache.clear()
        for callback in self.changed:
            callback()

    def for_route(self, route: str, cache: bool = True) -> RouteHooks:
        """
        The hooks that apply to C{route}.

        @param cache: keep the answer; pass C{False} for routes a client made
            up, so that they cannot grow the cache.
        """
        hooks = self._cache.get(route)
        if hooks is None:
            if not self._hooks:
                hooks = NO_HOOKS
            else:
                found: dict[str, list[Callable[..., Any]]] = {event: [] for event in EVENTS}
                for event, pattern, hook in self._hooks:
                    if pattern == "*" or self._match(route, pattern):
                        found[event].append(hook)
                hooks = RouteHooks(**{event: tuple(found[event]) for event in EVENTS})
            if cache:
                self._cache[route] = hooks
        return hooks


class HookCalls:
    """
    The Application's calls that add filters and hooks to its C{hooks}
    registry, each returning the app so that calls chain. Mixed into
    L{gamenet.app.Application}; they use nothing else of it.

    @ivar hooks: the registry they add to.
    """

    hooks: HookRegistry

    def hook(self, event: str, pattern: str, fn: Callable[..., Any]) -> Self:
        """
        Register a hook for C{event} on routes matching C{pattern} (see L{gamenet.hooks}).
        """
        self.hooks.add(event, pattern, fn)
        return self

    def before(self, filter: Any, pattern: str = "*") -> Self:
        """
        A handler filter run before the handler: an L{IFilter} or a function of the request.
        """
        return self.hook("before_serve", pattern, getattr(filter, "before", filter))

    def after(self, filter: Any, pattern: str = "*") -> Self:
        """
        A handler filter run after the handler.
        """
        return self.hook("after_serve", pattern, getattr(filter, "after", filter))

    def filter(self, filter: Any, pattern: str = "*") -> Self:
        """
        An L{IFilter} run both before and after the handler.
        """
        return self.before(filter, pattern).after(filter, pattern)

    def global_before(self, filter: Any, pattern: str = "*") -> Self:
        """
        A frontend filter run before any handler, local or forwarded.
        """
        return self.hook("global_before", pattern, getattr(filter, "before", filter))

    def global_after(self, filter: Any, pattern: str = "*") -> Self:
        """
        A frontend filter run after any handler, local or forwarded.
        """
        return self.hook("global_after", pattern, getattr(filter, "after", filter))

    def global_filter(self, filter: Any, pattern: str = "*") -> Self:
        """
        An L{IFilter} run as both global before and after filter.
        """
        return self.global_before(filter, pattern).global_after(filter, pattern)

    def route_hook(self, pattern: str, fn: Callable[..., Any]) -> Self:
        """
        A hook that may take a request over before dispatch by calling C{request.respond}.
        """
        return self.hook("route", pattern, fn)

    def send_hook(self, pattern: str, fn: Callable[..., Any]) -> Self:
        """
        A hook C{fn(session, route, msg)} that may rewrite an outgoing push or drop
        it by returning L{gamenet.hooks.DROP}.
        """
        return self.hook("send", pattern, fn)

    def rpc_before(self, filter: Any, pattern: str = "*") -> Self:
        """
        An RPC filter run before each outgoing C{app.rpc} call (see
        L{gamenet.hooks}): a function of the L{RpcCall}, or an object's C{before}.
        """
        return self.hook("rpc_before", pattern, getattr(filter, "before", filter))

    def rpc_after(self, filter: Any, pattern: str = "*") -> Self:
        """
        An RPC filter run after each outgoing C{app.rpc} call: a function, or an object's C{after}.
        """
        return self.hook("rpc_after", pattern, getattr(filter, "after", filter))
