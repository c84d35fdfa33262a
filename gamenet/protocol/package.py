"""
The Pomelo package layer: C{type (1 byte) | body length (3 bytes, big-endian) | body}.
"""

from __future__ import annotations

from .errors import ProtocolError

HANDSHAKE = 0x01
HANDSHAKE_ACK = 0x02
HEARTBEAT = 0x03
DATA = 0x04
KICK = 0x05

HEAD_SIZE = 4
MAX_BODY = 0xFFFFFF

_NAMES = {
    HANDSHAKE: "handshake",
    HANDSHAKE_ACK: "handshake-ack",
    HEARTBEAT: "heartbeat",
    DATA: "data",
    KICK: "kick",
}

HEARTBEAT_PACKAGE = b"\x03\x00\x00\x00"
HANDSHAKE_ACK_PACKAGE = b"\x02\x00\x00\x00"


def type_name(package_type: int) -> str:
    """
    @return: a readable name for a package type, for logs and errors.
    """
    return _NAMES.get(package_type, f"unknown(0x{package_type:02x})")


def encode(package_type: int, body: bytes = b"") -> bytes:
    """
    Frame C{body} as one package.

    @raise ValueError: the body does not fit a 3-byte length.
    """
    size = len(body)
    if size > MAX_BODY:
        raise ValueError(f"package body of {size} bytes exceeds {MAX_BODY}")
    return bytes((package_type, size >> 16, (size >> 8) & 0xFF, size & 0xFF)) + body


class PackageDecoder:
    """
    Incremental package decoder: feed it bytes split anywhere, get whole packages.

    @ivar max_body: the largest body accepted; a longer declared length is a
        L{ProtocolError} as soon as the head is seen, before any body arrives.
    """

    __slots__ = ("max_body", "_buffer")

    def __init__(self, max_body: int = MAX_BODY) -> None:
        self.max_body = max_body
        self._buffer = b""

    @property
    def pending(self) -> int:
        """
        The number of bytes held back waiting for the rest of a package.
        """
        return len(self._buffer)

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """
        Add bytes and return every package they complete, as C{(type, body)}.

        @raise ProtocolError: a type byte outside 1..5 or a declared length
            over C{max_body}; its C{packages} are those completed before the
            bad head. The decoder must not be used after that.
        """
        buffer = self._buffer + data if self._buffer else data
        packages = []
        offset = 0
        end = len(buffer)
        max_body = self.max_body
        while end - offset >= HEAD_SIZE:
            package_type = buffer[offset]
            if not HANDSHAKE <= package_type <= KICK:
                raise ProtocolError(f"bad package type 0x{package_type:02x}", packages)
            size = (buffer[offset + 1] << 16) | (buffer[offset + 2] << 8) | buffer[offset + 3]
            if size > max_body:
                raise ProtocolError(
                    f"{type_name(package_type)} package of {size} bytes exceeds the limit of {max_body}", packages
                )
            start = offset + HEAD_SIZE
            if end - start < size:
                break
            offset = start + size
            packages.append((package_type, buffer[start:offset]))
        self._buffer = bytes(buffer[offset:]) if offset < end else b""
        return packages
