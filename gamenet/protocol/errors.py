"""
Errors raised while decoding the Pomelo wire protocol and its bodies.
"""


class ProtocolError(ValueError):
    """
    Bytes from a peer that do not follow the Pomelo wire protocol.

    The message is short and safe to send back as a kick reason.

    @ivar packages: packages decoded from the same bytes before the error,
        which the reader should still act on (an ack, say) before closing.
    """

    def __init__(self, message: str, packages: list[tuple[int, bytes]] | None = None) -> None:
        super().__init__(message)
        self.packages = packages or []


class ProtobufError(ValueError):
    """
    A schema, a value or bytes that do not follow Pomelo's protobuf format.
    The message is short and safe to send to a client.
    """
