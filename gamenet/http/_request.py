"""
One HTTP request as handlers and hooks see it. Tested in C{tests/test_http.py}.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from ..errors import BadRequest

_FORM = "application/x-www-form-urlencoded"


class HttpRequest:
    """
    An HTTP request on its way through the hooks and the handler: what came
    (method, path, host, headers, route values, query, form and JSON body),
    the Application it came to, and the answer as it is made.

    @ivar app: the L{gamenet.app.Application}: C{app.rpc}, C{app.channels},
        C{app.backend_sessions}, C{app.sessions}...
    @ivar raw: the L{twisted.web.server.Request}.
    @ivar method: C{"GET"}, C{"POST"}...
    @ivar path: the path, percent-decoded.
    @ivar host: the host name asked for, lower-cased, without its port.
    @ivar params: the values of the pattern's named parts.
    @ivar query: the query string's fields (the last value of a repeated one).
    @ivar form: a C{application/x-www-form-urlencoded} body's fields, else empty.
    @ivar json: a JSON body, decoded; C{None} when there is no body or it is not JSON.
    @ivar body: the body as received.
    @ivar status: the status to answer with; 200 unless set.
    @ivar response: the value to answer, once a hook or the handler gave one.
    @ivar error: the exception that failed the request, if one did.
    @ivar answered: whether a hook or the handler has answered.
    """

    def __init__(self, app: Any, raw: Any, method: str, path: str, host: str) -> None:
        self.app = app
        self.raw = raw
        self.method = method
        self.path = path
        self.host = host
        self.params: dict[str, Any] = {}
        query = raw.uri.partition(b"?")[2].decode("utf-8", "replace")
        self.query: dict[str, str] = dict(parse_qsl(query, keep_blank_values=True))
        self.body: bytes = raw.content.read() if raw.content is not None else b""
        self.form: dict[str, str] = {}
        self.json: Any = None
        self.status = 200
        self.response: Any = None
        self.error: BaseException | None = None
        self.answered = False
        self._decode()

    def _decode(self) -> None:
        """
        Read the body by its content type: a form's fields, or JSON (the
        default when no type is given).

        @raise BadRequest: a JSON body that does not decode.
        """
        kind = (self.header("content-type") or "").split(";")[0].strip().lower()
        if kind == _FORM:
            self.form = dict(parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))
        elif self.body.strip() and (kind in ("", "application/json") or kind.endswith("+json")):
            try:
                self.json = json.loads(self.body)
            except ValueError as e:
                raise BadRequest(f"the body is not JSON: {e}") from None

    def header(self, name: str) -> str | None:
        """
        A request header's value, or C{None}.
        """
        value = self.raw.getHeader(name)
        return None if value is None else value.decode("latin-1") if isinstance(value, bytes) else value

    def get(self, name: str, default: Any = None) -> Any:
        """
        A value by name, as GoFrame's C{Request.Get}: from the route values,
        else the JSON object body, else the form, else the query.
        """
        for source in (self.params, self.json if isinstance(self.json, dict) else {}, self.form, self.query):
            if name in source:
                return source[name]
        return default

    def set_header(self, name: str, value: str) -> None:
        """
        Set a response header.
        """
        self.raw.setHeader(name.encode("latin-1"), value.encode("latin-1"))

    def respond(self, value: Any, status: int | None = None) -> None:
        """
        Answer now (e.g. from a C{BeforeServe} hook); the handler, and
        C{BeforeServe} hooks not yet run, are skipped.
        """
        self.response = value
        if status is not None:
            self.status = status
        self.answered = True

    @property
    def peer(self) -> str:
        """
        The client's address.
        """
        return getattr(self.raw.getClientAddress(), "host", "?")
