"""
The route dictionary: routes and their 2-byte codes, sent to clients in the handshake.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Iterable

import attrs

MAX_CODE = 0xFFFF


@attrs.frozen
class RouteDictionary:
    """
    Codes for routes, built as Pomelo builds them: the handler routes sorted and
    numbered from 1, then extra routes (usually push routes) in the order given.

    @ivar route_to_code: route to code.
    @ivar code_to_route: code to route.
    @ivar version: base64 MD5 of the dictionary's JSON, as Pomelo's C{dictVersion}.
    """

    route_to_code: dict[str, int]
    code_to_route: dict[int, str]
    version: str

    @classmethod
    def build(cls, handler_routes: Iterable[str], extra_routes: Iterable[str] = ()) -> RouteDictionary:
        """
        Number C{handler_routes} sorted, then C{extra_routes}; duplicates keep their first code.

        @raise ValueError: more routes than 2-byte codes.
        """
        route_to_code: dict[str, int] = {}
        for route in [*sorted(set(handler_routes)), *extra_routes]:
            if route not in route_to_code:
                route_to_code[route] = len(route_to_code) + 1
        if len(route_to_code) > MAX_CODE:
            raise ValueError(f"{len(route_to_code)} routes do not fit 2-byte codes")
        text = json.dumps(route_to_code, separators=(",", ":"), ensure_ascii=False)
        version = base64.b64encode(hashlib.md5(text.encode("utf-8")).digest()).decode("ascii")
        return cls(route_to_code, {code: route for route, code in route_to_code.items()}, version)

    @classmethod
    def empty(cls) -> RouteDictionary:
        """
        A dictionary with no routes, for servers that do not compress.
        """
        return cls.build(())
