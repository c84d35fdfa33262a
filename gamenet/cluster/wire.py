"""
What crosses a node link: batches of calls and of results, packed as bytes.

Perspective Broker moves one bytes argument several times faster than the
same data as nested lists and dicts (jelly and banana walk every item in
Python), so a batch is one bytes value: a run of records
C{id (4 bytes) | kind or status (1 byte) | length (4 bytes) | payload}.
"""

from __future__ import annotations

import struct
from typing import Any, Iterator

from ..protocol import serializer

_HEAD = struct.Struct(">IBI")
HEAD_SIZE = _HEAD.size

# Call kinds
FORWARD = 1  # a client request for another server type: route, session, body
NOTIFY = 2  # the same for a notify: no result is sent back
RPC = 3  # app.rpc: remote route and arguments
SYS = 4  # a frontend's sys remote: session and channel operations
PING = 5  # link health: answered with an empty result
DRAIN = 6  # the caller is stopping: route no new calls to it (answered once earlier calls have reached it)

# Result statuses
OK = 0
ERROR = 1


class WireError(ValueError):
    """
    A batch that does not parse.
    """


def pack(records: list[tuple[int, int, bytes]]) -> bytes:
    """
    Pack C{(id, kind or status, payload)} records into one batch.
    """
    out = []
    for id, kind, payload in records:
        out.append(_HEAD.pack(id, kind, len(payload)))
        out.append(payload)
    return b"".join(out)


def unpack(batch: bytes) -> Iterator[tuple[int, int, bytes]]:
    """
    The records of a batch.

    @raise WireError: a truncated record.
    """
    offset = 0
    end = len(batch)
    while offset < end:
        if end - offset < HEAD_SIZE:
            raise WireError("truncated record head")
        id, kind, size = _HEAD.unpack_from(batch, offset)
        offset += HEAD_SIZE
        if end - offset < size:
            raise WireError("truncated record payload")
        yield id, kind, batch[offset : offset + size]
        offset += size


def encode_forward(route: str, session: dict[str, Any], body: bytes) -> bytes:
    """
    A forwarded client message: its route, the session's export, the body as received.
    """
    route_bytes = route.encode("utf-8")
    session_bytes = serializer.dumps(session)
    return struct.pack(">BI", len(route_bytes), len(session_bytes)) + route_bytes + session_bytes + body


def decode_forward(payload: bytes) -> tuple[str, dict[str, Any], bytes]:
    """
    The route, session export and body of a forwarded client message.

    @raise WireError: it does not parse.
    """
    try:
        route_size, session_size = struct.unpack_from(">BI", payload)
        start = 5 + route_size
        route = payload[5:start].decode("utf-8")
        session = serializer.loads(payload[start : start + session_size])
    except (struct.error, ValueError) as e:
        raise WireError(f"bad forwarded message: {e}") from None
    if not isinstance(session, dict):
        raise WireError("bad forwarded message: session is not an object")
    return route, session, payload[start + session_size :]


def encode_call(name: str, args: Any) -> bytes:
    """
    An RPC or sys call: a name and JSON arguments.
    """
    return serializer.dumps([name, args])


def decode_call(payload: bytes) -> tuple[str, list[Any]]:
    """
    @raise WireError: not C{[name, [args...]]}.
    """
    try:
        name, args = serializer.loads(payload)
    except (ValueError, TypeError) as e:
        raise WireError(f"bad call: {e}") from None
    if not isinstance(name, str) or not isinstance(args, list):
        raise WireError("bad call: expected [name, [args]]")
    return name, args
