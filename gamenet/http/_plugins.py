"""
HTTP registrations as a game declares them in its plugin packages, beside
its handlers and remotes: L{Registration}s of kind L{HTTP}, each a call of
L{HttpRoutes} made for every server of its type. Tested in C{tests/test_http.py}.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from ..component import HTTP, Registration
from ._patterns import parse
from ._registry import EVENTS, HttpBinding, takes_request


def _registration(call: str, pattern: str, server_type: str | None, *args: Any, **kwargs: Any) -> Registration:
    parse(pattern)
    return Registration(HTTP, server_type, pattern, HttpBinding(call, pattern, args, kwargs), "http", ())


def http_handler(pattern: str, function: Callable[..., Any], server_type: str | None = None) -> Registration:
    """
    A plugin's L{HttpRoutes.bind_handler}, made on every server of
    C{server_type} (every server when C{None}) that serves HTTP.
    """
    takes_request(pattern, function)
    return _registration("bind_handler", pattern, server_type, function)


def http_object(pattern: str, target: Any, server_type: str | None = None, *,
                methods: str | Iterable[str] | None = None, name_func: Callable[[str], str] | None = None,
                rest: bool = False) -> Registration:
    """
    A plugin's L{HttpRoutes.bind_object} (or C{bind_object_rest} when
    C{rest}); a class is instantiated with each server's app, whose
    lifecycle calls (C{init}, C{shutdown}...) it gets as components do.
    """
    if rest:
        return _registration("bind_object_rest", pattern, server_type, target)
    return _registration("bind_object", pattern, server_type, target, methods, name_func)


def http_controller(pattern: str, cls: type, server_type: str | None = None, *,
                    methods: str | Iterable[str] | None = None, name_func: Callable[[str], str] | None = None,
                    rest: bool = False) -> Registration:
    """
    A plugin's L{HttpRoutes.bind_controller} (or C{bind_controller_rest} when C{rest}).
    """
    if not isinstance(cls, type):
        raise TypeError("a controller is registered as a class")
    if rest:
        return _registration("bind_controller_rest", pattern, server_type, cls)
    return _registration("bind_controller", pattern, server_type, cls, methods, name_func)


def http_hook(pattern: str, event: str, hook: Callable[..., Any], server_type: str | None = None) -> Registration:
    """
    A plugin's L{HttpRoutes.bind_hook}.
    """
    if EVENTS.get(event, event) not in EVENTS.values():
        raise ValueError(f"unknown HTTP hook event {event!r}; one of {', '.join(EVENTS)}")
    takes_request(pattern, hook, f"the {event} hook ")
    return _registration("bind_hook", pattern, server_type, event, hook)
