"""
Errors raised while decoding the Pomelo wire protocol.
"""


class ProtocolError(ValueError):
    """
    Bytes from a peer that do not follow the Pomelo wire protocol.

    The message is short and safe to send back as a kick reason.
    """
