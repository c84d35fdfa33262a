"""
Serving one HTTP request: the hooks, the route, the handler through
L{settle}, and the answer as JSON; every error becomes its status in one
place. Tested in C{tests/test_http.py}.
"""

from __future__ import annotations

import json
from typing import Any, Callable
from urllib.parse import unquote

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from .._settle import settle
from ..errors import GamenetError, RouteNotFound
from ._registry import HttpRoutes
from ._request import HttpRequest

log = Logger()


class MethodNotAllowed(GamenetError):
    """
    The path is served, but not for this method.

    @ivar allowed: the methods it takes.
    """

    code = 405

    def __init__(self, path: str, method: str, allowed: set[str]) -> None:
        self.allowed = sorted(allowed)
        super().__init__(f"{path} does not take {method} (it takes {', '.join(self.allowed)})")


class HttpResource(Resource):
    """
    The resource serving a server's L{HttpRoutes}: for each request,

     1. the body is decoded (a bad JSON body is answered 400);
     2. the C{BeforeServe} hooks run in registration order, until one answers
        (L{HttpRequest.respond}) or raises;
     3. the route is found in GoFrame's order (404, or 405 with C{Allow}) and
        its handler called with the L{HttpRequest}; it may answer a value, a
        Deferred or a coroutine;
     4. the C{AfterServe} hooks run, then the C{BeforeOutput} hooks, which may
        change C{request.response}, C{status} or C{error};
     5. the answer is written: bytes as they are, anything else as JSON; an
        error as C{{"code", "message"}} with its status (a L{GamenetError}
        code from 400 to 599, else 500, logged at info level; any other
        exception 500, its traceback logged, its details not shown);
     6. the C{AfterOutput} hooks run.

    A hook that raises in steps 4 to 6 fails the request as a handler would
    (in step 6, it is only logged: the answer is out).
    """

    isLeaf = True

    def __init__(self, routes: HttpRoutes, server_id: str) -> None:
        super().__init__()
        self.routes = routes
        self.server_id = server_id

    def render(self, raw: Any) -> Any:
        gone: list[Failure] = []
        raw.notifyFinish().addErrback(gone.append)
        Deferred.fromCoroutine(self._serve(raw, gone)).addErrback(
            lambda f: log.failure("HTTP request failed on {server_id}", f, server_id=self.server_id))
        return NOT_DONE_YET

    async def _serve(self, raw: Any, gone: list[Failure]) -> None:
        method = raw.method.decode("ascii", "replace").upper()
        path = unquote(raw.path.decode("latin-1"), errors="replace")
        host = raw.getRequestHostname().decode("ascii", "replace").lower()
        try:
            request = HttpRequest(self.routes.app, raw, method, path, host)
        except GamenetError as e:
            self._refused(raw, method, e)
            if not gone:
                body = json.dumps(e.body()).encode("utf-8")
                raw.setResponseCode(e.code)
                raw.setHeader(b"content-type", b"application/json")
                raw.setHeader(b"content-length", b"%d" % len(body))
                raw.write(body)
                raw.finish()
            return
        hooks = self.routes.hooks_for(method, host, path)
        try:
            for hook in hooks.before_serve:
                await settle(hook(request))
                if request.answered:
                    break
            if not request.answered:
                await self._handle(request)
        except Exception as e:
            self._failed(request, e)
        await self._run(hooks.after_serve, request)
        await self._run(hooks.before_output, request)
        if gone:
            return
        body = self._output(request)
        if isinstance(request.error, GamenetError):
            self._refused(raw, method, request.error)
        raw.setHeader(b"content-length", b"%d" % len(body))
        raw.write(body)
        raw.finish()
        for hook in hooks.after_output:
            try:
                await settle(hook(request))
            except Exception:
                log.failure("HTTP AfterOutput hook of {method} {path} failed on {server_id}", method=method,
                            path=path, server_id=self.server_id)

    async def _handle(self, request: HttpRequest) -> None:
        found = self.routes.match(request.method, request.host, request.path)
        if found is None:
            raise RouteNotFound(f"not found: {request.path}")
        if isinstance(found, set):
            raise MethodNotAllowed(request.path, request.method, found)
        endpoint, request.params = found
        request.response = await settle(endpoint(request))
        request.answered = True

    async def _run(self, hooks: tuple[Callable[..., Any], ...], request: HttpRequest) -> None:
        for hook in hooks:
            try:
                await settle(hook(request))
            except Exception as e:
                self._failed(request, e)

    def _failed(self, request: HttpRequest, error: Exception) -> None:
        request.error = error
        if not isinstance(error, GamenetError):
            log.failure("HTTP {method} {path} failed on {server_id}", Failure(error), method=request.method,
                        path=request.path, server_id=self.server_id)

    def _refused(self, raw: Any, method: str, error: GamenetError) -> None:
        """
        Log an error answered to the client (a bad body, a route not found, a
        refusal of a hook or handler), as the game's dispatch logs its own;
        the path as it came, percent-encoded, and the reason escaped, so that
        neither can forge a line.
        """
        log.info("HTTP {method} {path} answered {code} ({reason}) to {peer} on {server_id}", method=method,
                 path=raw.path.decode("latin-1"), code=error.code,
                 reason=error.message.encode("unicode_escape").decode("ascii"),
                 peer=getattr(raw.getClientAddress(), "host", "?"), server_id=self.server_id)

    def _output(self, request: HttpRequest) -> bytes:
        """
        Set the status and headers of C{request}'s answer; its body.
        """
        raw = request.raw
        if request.error is None and isinstance(request.response, bytes):
            raw.setResponseCode(request.status)
            if not raw.responseHeaders.hasHeader(b"content-type"):
                raw.setHeader(b"content-type", b"application/octet-stream")
            return request.response
        raw.setHeader(b"content-type", b"application/json")
        if request.error is None:
            try:
                body = json.dumps(request.response).encode("utf-8")
            except (TypeError, ValueError) as e:
                self._failed(request, e)
            else:
                raw.setResponseCode(request.status)
                return body
        error = request.error
        if isinstance(error, MethodNotAllowed):
            raw.setHeader(b"allow", ", ".join(error.allowed).encode("ascii"))
        if isinstance(error, GamenetError):
            raw.setResponseCode(error.code if 400 <= error.code <= 599 else 500)
            return json.dumps(error.body()).encode("utf-8")
        raw.setResponseCode(500)
        return json.dumps(GamenetError().body()).encode("utf-8")
