"""
The admin API's HTTP plumbing: the token check, JSON bodies and answers, and
every error turned into its status, in one place. Tested in
C{tests/test_admin.py}.
"""

from __future__ import annotations

import hmac
import json
import re
from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import IResource, Resource
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from ..errors import GamenetError

log = Logger()

# The paths answered without the token: the dashboard's files, which hold
# no data. Matched on the raw path, before any decoding or slash merging, so
# that no spelling of an API path (C{//api/...}, C{/%61pi/...}) passes.
_OPEN = re.compile(rb"/|/dashboard/[A-Za-z0-9_-][A-Za-z0-9._-]*")


def read_json(request: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    """
    A request's body as a JSON object; an empty body is an empty object.

    @param keys: the keys it may have.
    @raise GamenetError: 400, the body is not a JSON object or has another key.
    """
    raw = request.content.read() if request.content is not None else b""
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as e:
        raise GamenetError(f"the body is not JSON: {e}", 400) from None
    if not isinstance(body, dict):
        raise GamenetError("the body is not a JSON object", 400)
    for key in body:
        if key not in keys:
            raise GamenetError(f"unknown key {key!r} (keys: {', '.join(keys)})", 400)
    return body


def answer(request: Any, value: Any, code: int = 200) -> bytes:
    """
    Answer C{value} as JSON with the status C{code}; never cached (the
    figures are live, and the token guards them).
    """
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(value).encode("utf-8") + b"\n"


def failed(request: Any, failure: Failure) -> bytes:
    """
    Answer an error as C{{"error": sentence}}: a L{GamenetError} with its
    code, an unknown path 404, a method the path does not take 405 (with
    C{Allow}); anything else is logged and answered 500 without details.
    """
    error = failure.value
    method, path = request.method.decode("ascii", "replace"), request.path.decode("utf-8", "replace")
    if isinstance(error, GamenetError):
        return answer(request, {"error": error.message}, error.code)
    if isinstance(error, MethodNotAllowed):
        allowed = [m for m in error.valid_methods or () if m != "HEAD"]
        request.setHeader(b"allow", ", ".join(allowed).encode("ascii"))
        return answer(request, {"error": f"{path} does not take {method} (it takes {', '.join(allowed)})"}, 405)
    if isinstance(error, NotFound):
        return answer(request, {"error": f"not found: {path}"}, 404)
    if isinstance(error, HTTPException):
        return answer(request, {"error": error.description or error.name}, error.code or 400)
    log.failure("admin API: {method} {path} failed", failure, method=method, path=path)
    return answer(request, {"error": "internal error (see the master's log)"}, 500)


class _Guard(Resource):
    """
    The admin API behind its token: every request is answered 401 unless
    it carries C{Authorization: Bearer TOKEN}, but for the dashboard's files
    (C{/} and C{/dashboard/NAME}, spelled exactly so). Refusals and calls
    that change something are logged with the peer's address.
    """

    isLeaf = True

    def __init__(self, inner: IResource, token: str) -> None:
        super().__init__()
        self.inner = inner
        self.token = token.encode("utf-8")

    def render(self, request: Any) -> Any:
        path = request.path
        if not _OPEN.fullmatch(path):
            refusal = self._refusal(request.getHeader(b"authorization"))
            call = {"method": request.method.decode("ascii", "replace"), "path": path.decode("utf-8", "replace"),
                    "peer": getattr(request.getClientAddress(), "host", "?")}
            if refusal is not None:
                log.warn("admin API: refused {method} {path} from {peer}: {reason}", reason=refusal, **call)
                request.setHeader(b"www-authenticate", b'Bearer realm="gamenet"')
                return answer(request, {"error": refusal}, 401)
            if request.method not in (b"GET", b"HEAD"):
                log.info("admin API: {method} {path} from {peer}", **call)
        return self.inner.render(request)

    def _refusal(self, header: bytes | None) -> str | None:
        if header is None:
            return "missing admin token (send the header Authorization: Bearer TOKEN)"
        scheme, _, given = header.strip().partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.token):
            return "wrong admin token"
        return None


def guarded(inner: IResource, token: str) -> IResource:
    """
    C{inner} (a leaf resource, such as a Klein app's) behind the admin
    token: see L{_Guard}.
    """
    return _Guard(inner, token)
