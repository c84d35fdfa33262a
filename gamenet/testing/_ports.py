"""
Ports for tests that must know them before servers start.
"""

from __future__ import annotations

import fcntl
import os
import socket
import tempfile


def free_ports(count: int) -> list[int]:
    """
    C{count} distinct ports that were free on 127.0.0.1 a moment ago, for
    servers whose ports must be known before they start (node ports).

    They are taken below the kernel's range of ephemeral ports, where no
    socket bound to port 0 and no outgoing connection lands, and handed out
    in turn through a counter file shared by every process of the user (so
    that tests running in parallel never get the same port while one of them
    has not bound it yet). Where that range leaves too little room, they are
    ports the kernel picks.
    """
    low = _ephemeral_low()
    if low - _FIRST_PORT < 1000:
        return _kernel_ports(count)
    ports: list[int] = []
    path = os.path.join(tempfile.gettempdir(), f"gamenet-test-ports-{os.getuid()}")
    with open(path, "a+", encoding="ascii") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        text = f.read().strip()
        port = int(text) if text.isdigit() else _FIRST_PORT + os.getpid() % (low - _FIRST_PORT)
        for _ in range(low - _FIRST_PORT):
            if len(ports) == count:
                break
            port = port + 1 if _FIRST_PORT <= port < low - 1 else _FIRST_PORT
            if _bindable(port):
                ports.append(port)
        f.seek(0)
        f.truncate()
        f.write(str(port))
    if len(ports) < count:
        return _kernel_ports(count)
    return ports


_FIRST_PORT = 10000


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return _FIRST_PORT


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _kernel_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()
