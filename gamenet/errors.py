"""
Errors that reach clients as error responses with a code.
"""

from __future__ import annotations

from typing import Any


class GamenetError(Exception):
    """
    An error a client sees as a response C{{"code": code, "message": message}}.

    Raise it (or a subclass) from a handler or a filter to answer with that code;
    any other exception from a handler answers C{500} with a generic message, and
    the traceback goes to the log only.
    """

    code: int = 500
    default_message = "internal server error"

    def __init__(self, message: str | None = None, code: int | None = None) -> None:
        self.message = message or self.default_message
        if code is not None:
            self.code = code
        super().__init__(self.message)

    def body(self, pitaya: bool = False) -> dict[str, Any]:
        """
        The response body: Pomelo clients get C{{"code": 404, "message": ...}},
        Pitaya clients C{{"code": "PIT-404", "msg": ...}} with the error bit set.
        """
        if pitaya:
            return {"code": f"PIT-{self.code}", "msg": self.message}
        return {"code": self.code, "message": self.message}


class BadRequest(GamenetError):
    """
    The request body could not be read.
    """

    code = 400
    default_message = "bad request"


class Refused(GamenetError):
    """
    A filter or hook refused the request.
    """

    code = 403
    default_message = "refused"


class RouteNotFound(GamenetError):
    """
    No handler serves the route.
    """

    code = 404
    default_message = "route not found"


class Unavailable(GamenetError):
    """
    No server can take the request now.
    """

    code = 503
    default_message = "service unavailable"


class Timeout(GamenetError):
    """
    A call did not answer in time.
    """

    code = 504
    default_message = "timed out"
