"""
The handshake: the client's first package and the server's answer.

Both Pomelo's request shape (C{sys.type}, C{sys.version}, C{sys.dictVersion},
C{sys.protoVersion}) and Pitaya's (C{sys.platform}, C{sys.libVersion},
C{sys.clientVersion}, C{sys.clientBuildNumber}) are accepted; the answer carries
the union of both servers' fields.
"""

from __future__ import annotations

from typing import Any

import attrs

from . import serializer
from .errors import ProtocolError
from .protobuf import Protos
from .routes import RouteDictionary

CODE_OK = 200
CODE_BAD_REQUEST = 400
CODE_USE_ERROR = 500
CODE_OLD_CLIENT = 501

_PITAYA_KEYS = frozenset(("platform", "libVersion", "clientVersion", "clientBuildNumber"))


@attrs.frozen
class HandshakeRequest:
    """
    A client's handshake.

    @ivar sys: the C{sys} object as sent.
    @ivar user: the C{user} object as sent, for the application's handshake validators.
    """

    sys: dict[str, Any]
    user: Any = None

    @property
    def client_type(self) -> str:
        """
        C{sys.type} (Pomelo) or C{sys.platform} (Pitaya), or an empty string.
        """
        return str(self.sys.get("type") or self.sys.get("platform") or "")

    @property
    def client_version(self) -> str:
        """
        C{sys.version} (Pomelo) or C{sys.libVersion} (Pitaya), or an empty string.
        """
        return str(self.sys.get("version") or self.sys.get("libVersion") or "")

    @property
    def dict_version(self) -> str | None:
        """
        The version of the route dictionary the client already holds.
        """
        version = self.sys.get("dictVersion")
        return version if isinstance(version, str) else None

    @property
    def proto_version(self) -> Any:
        """
        The version of the protobuf schemas the client already holds, as sent.
        """
        return self.sys.get("protoVersion")

    @property
    def pitaya(self) -> bool:
        """
        Whether the client used Pitaya's handshake shape, and so understands
        the error bit.
        """
        return not _PITAYA_KEYS.isdisjoint(self.sys)


def parse_request(body: bytes) -> HandshakeRequest:
    """
    Parse a handshake package body.

    @raise ProtocolError: not a JSON object with a C{sys} object.
    """
    try:
        value = serializer.loads(body)
    except ValueError:
        raise ProtocolError("handshake is not JSON") from None
    if not isinstance(value, dict) or not isinstance(value.get("sys"), dict):
        raise ProtocolError("handshake has no sys object")
    return HandshakeRequest(value["sys"], value.get("user"))


@attrs.frozen
class HandshakeResponder:
    """
    Builds handshake answers for one server; the two common answers are built once.

    @ivar heartbeat: the heartbeat interval in seconds; 0 sends none, and
        clients then send no heartbeats.
    @ivar dictionary: the route dictionary, or C{None} when routes are not compressed.
    @ivar protos: the protobuf schemas, or C{None} when every body is JSON.
    """

    heartbeat: float
    dictionary: RouteDictionary | None
    protos: Protos | None = None
    _answers: dict[tuple[bool, bool], bytes] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        answers = {(d, p): serializer.dumps(self._answer(d, p)) for d in (False, True) for p in (False, True)}
        object.__setattr__(self, "_answers", answers)

    def _answer(self, send_dict: bool, send_protos: bool, user: Any = None) -> dict[str, Any]:
        sys: dict[str, Any] = {"serializer": serializer.NAME}
        if self.heartbeat:
            heartbeat = self.heartbeat
            sys["heartbeat"] = int(heartbeat) if float(heartbeat).is_integer() else heartbeat
        if self.dictionary is not None:
            sys["useDict"] = True
            sys["dictVersion"] = self.dictionary.version
            if send_dict:
                sys["dict"] = self.dictionary.route_to_code
        if self.protos is not None:
            sys["useProto"] = True
            if send_protos:
                sys["protos"] = self.protos.handshake
        answer: dict[str, Any] = {"code": CODE_OK, "sys": sys}
        if user is not None:
            answer["user"] = user
        return answer

    def accept(self, request: HandshakeRequest, user: Any = None) -> bytes:
        """
        The body of a successful answer; the dictionary and the protobuf
        schemas are each left out when the client already has their version.
        """
        send_dict = self.dictionary is not None and request.dict_version != self.dictionary.version
        send_protos = self.protos is not None and request.proto_version != self.protos.version
        if user is not None:
            return serializer.dumps(self._answer(send_dict, send_protos, user))
        return self._answers[send_dict, send_protos]


def refuse(code: int, message: str | None = None) -> bytes:
    """
    The body of a refused handshake: C{{"code": N}}, with a message when given.
    """
    answer: dict[str, Any] = {"code": code}
    if message:
        answer["message"] = message
    return serializer.dumps(answer)
