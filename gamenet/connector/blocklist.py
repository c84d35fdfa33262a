"""
Client addresses a frontend refuses at connect: single IPv4 or IPv6
addresses and networks in CIDR notation. Pure: no I/O, no reactor.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable, Iterator, Union

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


def parse_network(entry: str) -> Network:
    """
    One block list entry as a network: C{"203.0.113.7"} is C{/32},
    C{"2001:db8::1"} is C{/128}, C{"198.51.100.0/24"} and C{"2001:db8::/32"}
    are networks.

    @raise ValueError: not an address or a network; the message is a
        sentence naming the entry (and the network meant, when only host
        bits are wrong).
    """
    if not isinstance(entry, str):
        raise ValueError(f"{entry!r} is not an address or a network (expected text such as 203.0.113.0/24)")
    text = entry.strip()
    try:
        return ipaddress.ip_network(text)
    except ValueError:
        pass
    try:
        meant = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"{entry!r} is not an IPv4 or IPv6 address or network "
                         "(expected e.g. 203.0.113.7, 198.51.100.0/24 or 2001:db8::/32)") from None
    raise ValueError(f"{entry!r} has host bits set: the network is {meant}")


class Blocklist:
    """
    A set of networks; L{blocks} tells whether a peer address is in one.

    An IPv6 peer that is an IPv4-mapped address (C{::ffff:203.0.113.7}, as a
    dual-stack socket reports an IPv4 client) is matched as its IPv4
    address too.
    """

    def __init__(self, entries: Iterable[str] = ()) -> None:
        """
        @raise ValueError: an entry is not an address or a network (see
            L{parse_network}).
        """
        networks = {parse_network(entry) for entry in entries}
        self._v4 = tuple(sorted(n for n in networks if n.version == 4))
        self._v6 = tuple(sorted(n for n in networks if n.version == 6))

    def __len__(self) -> int:
        return len(self._v4) + len(self._v6)

    def __iter__(self) -> Iterator[str]:
        """
        The entries in canonical form (C{"203.0.113.7/32"}), IPv4 first, sorted.
        """
        return (str(network) for network in (*self._v4, *self._v6))

    def blocks(self, host: str) -> bool:
        """
        Whether the peer address C{host} is blocked. A host that is not an
        IP address (a UNIX socket's, an empty one) is not.
        """
        if not self._v4 and not self._v6:
            return False
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if address.version == 6:
            mapped = address.ipv4_mapped  # type: ignore[union-attr]
            if mapped is not None and any(mapped in network for network in self._v4):
                return True
            return any(address in network for network in self._v6)
        return any(address in network for network in self._v4)
