"""
Dispatch inside one server: route lookup, filters and hooks, the handler, the response.

A route with no hooks takes a fast path: decode, call, encode, write, with no
Deferred unless the handler returns one. Every failure becomes an error
response with a code (see L{gamenet.errors}), is logged with the route,
session id and server id (up to a L{LogQuota}: a flood of them is counted,
not written line by line), and leaves the connection usable.
"""

from __future__ import annotations

import inspect
from time import perf_counter
from typing import TYPE_CHECKING, Any, Callable, Container, Protocol

import attrs
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._quota import LogQuota
from ._settle import settle
from .errors import BadRequest, GamenetError, RouteNotFound
from .hooks import HookRegistry, RouteHooks
from .protocol import serializer
from .protocol.message import NOTIFY, REQUEST, Message

if TYPE_CHECKING:
    from .metrics import Metrics, RouteStats
    from .session import Session

log = Logger()

# The types of plain answers, which are neither Deferreds nor coroutines:
# telling them by type skips the ABC check of isinstance(result, Deferred)
# (Deferred is an Awaitable) for the common answer.
_PLAIN = frozenset({dict, list, str, bytes, int, float, bool, type(None)})

UNREAD: Any = object()
"""L{Dispatcher.dispatch}'s C{value} when the body is still to be read."""


class Responder(Protocol):
    """
    Where a request's answer goes: a client connection, or (for a request
    forwarded from another server) the node call that carried it.
    """

    def respond(self, id: int, value: Any, error: GamenetError | None = None) -> None:
        """
        Write the answer to request C{id}: C{value}, or C{error} when set.
        """


class Request:
    """
    One client request or notify on its way through the hooks and the handler.

    @ivar route: the full route.
    @ivar id: the request id; 0 for a notify.
    @ivar body: the body as received.
    @ivar msg: the decoded body (after the C{route} hooks).
    @ivar session: the client's session.
    @ivar response: the handler's answer, once there is one.
    @ivar error: the exception that failed the request, if one did.
    @ivar answered: whether a hook or the handler has answered.
    """

    __slots__ = ("route", "id", "body", "msg", "session", "response", "error", "answered")

    def __init__(self, route: str, id: int, body: bytes, session: Session) -> None:
        self.route = route
        self.id = id
        self.body = body
        self.msg: Any = None
        self.session = session
        self.response: Any = None
        self.error: BaseException | None = None
        self.answered = False

    @property
    def is_notify(self) -> bool:
        """
        Whether the client expects no answer.
        """
        return self.id == 0

    def respond(self, value: Any) -> None:
        """
        Answer now; the handler (and filters not yet run) are skipped.
        """
        self.response = value
        self.answered = True


class _Plan:
    __slots__ = ("handler", "hooks", "fast", "raw", "takes_request", "stats")

    def __init__(self, handler: Callable[..., Any] | None, hooks: RouteHooks, stats: RouteStats | None) -> None:
        self.handler = handler
        self.hooks = hooks
        self.takes_request = bool(getattr(handler, "takes_request", False))
        self.fast = handler is not None and not hooks.request_hooks and not self.takes_request
        self.raw = bool(getattr(handler, "raw", False))
        self.stats = stats



class Dispatcher:
    """
    Serves the routes of one server.

    @ivar handlers: route to callable taking C{(msg, session)}, or, when it
        has a true C{takes_request} attribute (controllers), C{(msg,
        session, request)} with the L{Request}.
    @ivar fallback: asked for a callable when no local handler serves a route,
        e.g. to forward it to another server; C{None} answers 404. A callable
        with a true C{raw} attribute is called with the undecoded
        L{Message} instead of the body, and may answer with bytes.
    @ivar known_routes: the routes the cluster serves (the route
        dictionary's); a forwarded route outside them is served but its
        plan is not cached.
    @ivar metrics: counts each route's requests, latency and error answers
        (see L{gamenet.metrics}); C{None} counts nothing.
    """

    def __init__(self, server_id: str, hooks: HookRegistry, clock: Any = None) -> None:
        """
        @param clock: the time for the quotas of logged error answers and
            failures (L{LogQuota}); the global reactor when C{None}.
        """
        if clock is None:
            from twisted.internet import reactor as clock
        self.server_id = server_id
        self.hooks = hooks
        self._answers_logged = LogQuota(clock)
        self._failures_logged = LogQuota(clock)
        self.handlers: dict[str, Callable[..., Any]] = {}
        self.fallback: Callable[[str], Callable[..., Any] | None] | None = None
        self._plans: dict[str, _Plan] = {}
        self.known_routes: Container[str] = ()
        self.metrics: Metrics | None = None
        hooks.changed.append(self._plans.clear)

    def add(self, route: str, handler: Callable[..., Any]) -> None:
        """
        Serve C{route} with C{handler}.

        @raise ValueError: the route is served already.
        """
        if route in self.handlers:
            raise ValueError(f"route {route} is registered twice")
        self.handlers[route] = handler
        self._plans.clear()

    def _plan(self, route: str) -> _Plan:
        plan = self._plans.get(route)
        if plan is None:
            handler = self.handlers.get(route)
            forwarded = handler is None and self.fallback is not None
            if forwarded:
                handler = self.fallback(route)  # type: ignore[misc]
            # A forwarded route the cluster does not serve is one a client
            # made up: its plan is not kept, so that a flood of them cannot
            # grow the caches.
            cache = handler is not None and (not forwarded or route in self.known_routes)
            hooks = self.hooks.for_route(route, cache=cache)
            if getattr(handler, "raw", False):
                # Handler filters run where the handler runs; a forwarded
                # route meets only the global ones here.
                hooks = attrs.evolve(hooks, before_serve=(), after_serve=())
            metrics = self.metrics
            stats = metrics.route_stats(route, forwarded and handler is not None) if metrics is not None else None
            plan = _Plan(handler, hooks, stats)
            if cache:
                self._plans[route] = plan
        return plan

    def dispatch(self, responder: Responder, session: Session, message: Message, value: Any = UNREAD) -> None:
        """
        Serve one request or notify; the answer goes to C{responder.respond}.

        @param value: the body already read (a frontend's protobuf request),
            handed to a plain handler as it is; a forwarded route, or one
            with request hooks, gets it as JSON in C{message.body}, as every body.
        """
        plan = self._plans.get(message.route) or self._plan(message.route)
        if value is not UNREAD and (plan.raw or not plan.fast):
            message.body = serializer.dumps(value)
        if not plan.fast:
            request = Request(message.route, message.id if message.type == REQUEST else 0, message.body, session)
            Deferred.fromCoroutine(self._serve(responder, request, plan))
            return
        id = message.id if message.type == REQUEST else 0
        stats = plan.stats
        start = perf_counter() if stats is not None else 0.0
        if plan.raw:
            msg: Any = message
        elif value is not UNREAD:
            msg = value
        else:
            try:
                msg = serializer.loads(message.body)
            except ValueError:
                self._fail(responder, message.route, id, session, BadRequest("body is not JSON"), None, stats, start)
                return
        try:
            result = plan.handler(msg, session)  # type: ignore[misc]
        except Exception as e:
            self._fail(responder, message.route, id, session, e, None, stats, start)
            return
        if type(result) not in _PLAIN and (isinstance(result, Deferred) or inspect.iscoroutine(result)):
            d = result if isinstance(result, Deferred) else Deferred.fromCoroutine(result)
            d.addCallbacks(
                self._answer, self._failed, callbackArgs=(responder, id, stats, start),
                errbackArgs=(responder, message.route, id, session, stats, start),
            )
            return
        if id:
            responder.respond(id, result)
        if stats is not None:
            stats.served(id, perf_counter() - start)

    def _answer(self, result: Any, responder: Responder, id: int, stats: RouteStats | None, start: float) -> None:
        if id:
            responder.respond(id, result)
        if stats is not None:
            stats.served(id, perf_counter() - start)

    def _failed(self, failure: Failure, responder: Responder, route: str, id: int, session: Session,
                stats: RouteStats | None, start: float) -> None:
        self._fail(responder, route, id, session, failure.value, failure, stats, start)

    def _fail(
        self,
        responder: Responder,
        route: str,
        id: int,
        session: Session,
        error: BaseException,
        failure: Failure | None = None,
        stats: RouteStats | None = None,
        start: float | None = None,
    ) -> None:
        """
        Log C{error} and answer it; count it in C{stats}, and (with C{start},
        when the request ends here) the request too.
        """
        if isinstance(error, GamenetError):
            held = self._answers_logged.take()
            if held:
                log.info("{count} more error answers on {server_id} were not logged", count=held,
                         server_id=self.server_id)
            if held is not None:
                log.info(
                    "{route} answered {code} ({message}) to session {session_id} on {server_id}",
                    route=route, code=error.code, message=error.message,
                    session_id=session.id, server_id=self.server_id,
                )
            answer = error
        else:
            held = self._failures_logged.take()
            if held:
                log.critical("{count} more failures of handlers or hooks on {server_id} were not logged",
                             count=held, server_id=self.server_id)
            if held is not None:
                log.failure(
                    "{route} failed for session {session_id} on {server_id}",
                    failure or Failure(error),
                    route=route, session_id=session.id, server_id=self.server_id,
                )
            answer = GamenetError()
        if id:
            responder.respond(id, None, answer)
        if stats is not None:
            if id:
                stats.failed(answer.code)
            if start is not None:
                stats.served(id, perf_counter() - start)

    async def _serve(self, responder: Responder, request: Request, plan: _Plan) -> None:
        hooks = plan.hooks
        stats = plan.stats
        start = perf_counter() if stats is not None else 0.0
        try:
            try:
                await self._run(hooks.route, request)
                if not request.answered:
                    try:
                        request.msg = serializer.loads(request.body)
                    except ValueError:
                        raise BadRequest("body is not JSON") from None
                    await self._run(hooks.global_before, request)
                    await self._run(hooks.before_serve, request)
                if not request.answered:
                    if plan.handler is None:
                        raise RouteNotFound(f"no handler for {request.route}")
                    argument = (
                        Message(REQUEST if request.id else NOTIFY, request.id, request.route, request.body)
                        if plan.raw else request.msg
                    )
                    request.response = await settle(
                        plan.handler(argument, request.session, request) if plan.takes_request
                        else plan.handler(argument, request.session))
                    request.answered = True
            except Exception as e:
                request.error = e
            for hook in (*hooks.after_serve, *hooks.global_after):
                try:
                    await settle(hook(request))
                except Exception as e:
                    request.error = e
            if request.is_notify:
                if request.error is not None:
                    self._fail(responder, request.route, 0, request.session, request.error)
                return
            try:
                await self._run(hooks.before_output, request, stop_on_answer=False)
            except Exception as e:
                request.error = e
            if request.error is not None:
                self._fail(responder, request.route, request.id, request.session, request.error, None, stats)
            else:
                responder.respond(request.id, request.response)
            for hook in hooks.after_output:
                await self._guarded(hook, request)
        finally:
            if stats is not None:
                stats.served(request.id, perf_counter() - start)
            for hook in hooks.close:
                await self._guarded(hook, request)

    @staticmethod
    async def _run(hooks: tuple[Callable[..., Any], ...], request: Request, stop_on_answer: bool = True) -> None:
        for hook in hooks:
            if stop_on_answer and request.answered:
                return
            await settle(hook(request))

    async def _guarded(self, hook: Callable[..., Any], request: Request) -> None:
        try:
            await settle(hook(request))
        except Exception:
            log.failure(
                "hook {hook!r} failed on {route} for session {session_id} on {server_id}",
                hook=hook, route=request.route, session_id=request.session.id, server_id=self.server_id,
            )
