"""
URI patterns as GoFrame writes them, matched by werkzeug's routing, ordered
by GoFrame's priority rules. Pure: no I/O. Tested in C{tests/test_http.py}
and C{tests/test_http_goframe.py}.

A pattern is C{[METHOD:]/path[@domain,...]}. A part of the path is static
text, or holds:

 - C{:name}, the whole part: any characters but C{/}, at least one;
 - C{{name}}, anywhere in a part, several per part (C{/list/{page}.html}):
   any characters but C{/}, at least one;
 - C{*name}, the rest of the path, slashes included, possibly empty: a
   trailing C{/files/*path} serves C{/files} too.

Each pattern compiles to a werkzeug L{Rule} in a L{Map} of its own, whose
converters are the three kinds above; werkzeug matches the path, the values
and the method. Which pattern is asked first is GoFrame's order
(L{Pattern.priority}), not werkzeug's, which would prefer the leftmost
static part over a deeper pattern.
"""

from __future__ import annotations

import re
from typing import Any

import attrs
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import BaseConverter, Map, MapAdapter, Rule

METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE")

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_FIELD = re.compile(r"\{([^{}]*)\}")


class _Field(BaseConverter):
    regex = r"[^/]+"
    part_isolating = True


class _Named(BaseConverter):
    regex = r"[^/]+"
    part_isolating = True  # werkzeug would guess otherwise from the / in the regex


class _Any(BaseConverter):
    regex = r".*"
    part_isolating = False


CONVERTERS = {"gffield": _Field, "gfname": _Named, "gfany": _Any}


@attrs.frozen
class Pattern:
    """
    A parsed pattern.

    @ivar text: as it was written.
    @ivar method: the one method it serves, or C{None} for every method
        (written C{ALL:} or with no method).
    @ivar path: the path part.
    @ivar domains: the host names it serves, lower-cased; empty for every host.
    @ivar rule: the path as a werkzeug rule.
    @ivar depth: how many parts the path has.
    @ivar static: how many characters of the path's parts are static text
        (named parts and slashes left out).
    @ivar fields: how many C{{name}}; C{named}: how many C{:name}; C{rest}:
        how many C{*name}.
    @ivar rest_name: the name of a trailing C{*name}, else C{None}.
    @ivar prefix: the static text the path starts with (up to its first named
        part): a path that does not start with it cannot match, which is
        cheaper to tell than asking werkzeug.
    """

    text: str
    method: str | None
    path: str
    domains: tuple[str, ...]
    rule: str
    depth: int
    static: int
    fields: int
    named: int
    rest: int
    rest_name: str | None
    prefix: str

    @property
    def priority(self) -> tuple[Any, ...]:
        """
        The sort key of GoFrame's order, first served first: a deeper path
        first; at the same depth, more static text (C{/admin-goods-{page}}
        before C{/admin-{page}}); then fewer named parts; then more
        C{{field}}, then more C{:name} (so C{{field}} before C{:name} before
        C{*any}); then one method before every method; then (gamenet's own
        rule) a pattern bound to domains before one for every host.
        """
        return (-self.depth, -self.static, self.fields + self.named + self.rest, -self.fields, -self.named,
                self.method is None, not self.domains)

    def with_path(self, path: str) -> Pattern:
        """
        The same method and domains on another path.
        """
        return parse(f"{self.method + ':' if self.method else ''}{path}"
                     f"{'@' + ','.join(self.domains) if self.domains else ''}")

    def map(self, endpoints: dict[str | None, Any]) -> MapAdapter:
        """
        A werkzeug map of this pattern's path alone, one rule per method of
        C{endpoints} (C{None}: every method, or this pattern's own).
        """
        rules = []
        for method, endpoint in endpoints.items():
            methods = [method] if method else [self.method] if self.method else None
            rules.append(Rule(self.rule, endpoint=endpoint, methods=methods))
            if self.rest_name is not None:
                bare = self.rule[: self.rule.rindex("/")] or "/"
                rules.append(Rule(bare, endpoint=endpoint, methods=methods, defaults={self.rest_name: ""}))
        return Map(rules, converters=CONVERTERS, strict_slashes=False, merge_slashes=False,
                   redirect_defaults=False).bind("gamenet.invalid")


def parse(text: str) -> Pattern:
    """
    Parse C{[METHOD:]/path[@domain,...]}.

    @raise ValueError: a sentence naming what is wrong.
    """
    rest, domains = text, ()
    if "@" in rest:
        rest, _, hosts = rest.rpartition("@")
        domains = tuple(h.strip().lower() for h in hosts.split(",") if h.strip())
        if not domains:
            raise ValueError(f"pattern {text!r}: no domain after @")
    method = None
    if not rest.startswith("/"):
        head, colon, path = rest.partition(":")
        if not colon or head.upper() not in (*METHODS, "ALL"):
            raise ValueError(f"pattern {text!r}: expected [METHOD:]/path, METHOD one of ALL, {', '.join(METHODS)}")
        method, rest = (None if head.upper() == "ALL" else head.upper()), path
    if not rest.startswith("/"):
        raise ValueError(f"pattern {text!r}: the path must start with /")
    if any(c in rest for c in "<>"):
        raise ValueError(f"pattern {text!r}: < and > are not allowed in a path")
    names: set[str] = set()
    parts: list[str] = []
    counts = {"fields": 0, "named": 0, "rest": 0}
    rest_name = None
    segments = rest.split("/")[1:]
    for i, segment in enumerate(segments):
        if segment[:1] in (":", "*"):
            kind = "named" if segment[0] == ":" else "rest"
            name = _claim(text, segment[1:], names)
            counts[kind] += 1
            parts.append(f"<{'gfname' if kind == 'named' else 'gfany'}:{name}>")
            if kind == "rest" and i == len(segments) - 1:
                rest_name = name
            continue
        def field(match: re.Match[str]) -> str:
            counts["fields"] += 1
            return f"<gffield:{_claim(text, match.group(1), names)}>"
        converted = _FIELD.sub(field, segment)
        if "{" in converted or "}" in converted:
            raise ValueError(f"pattern {text!r}: unbalanced braces in {segment!r}")
        parts.append(converted)
    prefix = re.split(r"[:*{]", rest, maxsplit=1)[0]
    if rest_name is not None and prefix == rest[: -len(rest_name) - 1]:
        prefix = prefix[:-1]  # a trailing *name serves the path without its slash too
    static = sum(len(_FIELD.sub("", s)) for s in segments if s[:1] not in (":", "*"))
    return Pattern(text, method, rest, domains, "/" + "/".join(parts), len([s for s in segments if s]), static,
                   counts["fields"], counts["named"], counts["rest"], rest_name, prefix)


def _claim(text: str, name: str, names: set[str]) -> str:
    if not _NAME.match(name):
        raise ValueError(f"pattern {text!r}: {name!r} is not a name (letters, digits and _)")
    if name in names:
        raise ValueError(f"pattern {text!r}: the name {name} appears twice")
    names.add(name)
    return name


def match(adapter: MapAdapter, path: str, method: str) -> tuple[Any, dict[str, Any]] | set[str] | None:
    """
    Ask one pattern's map about a request.

    @return: C{(endpoint, values)} when it serves it; the methods it would
        take when only the method differs; C{None} when the path does not match.
    """
    try:
        rule, values = adapter.match(path, method, return_rule=True)
    except MethodNotAllowed as e:
        return set(e.valid_methods or ())
    except NotFound:
        return None
    return rule.endpoint, values
