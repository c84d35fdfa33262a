"""
A private C{redis-server} for a test.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from typing import Sequence

from ._ports import free_ports


class RedisServer:
    """
    A private C{redis-server} for a test, on a free port of 127.0.0.1 (or of
    C{host}), keeping nothing on disk. It can be killed and started again on
    the same port.

    @ivar port: its port.
    @ivar host: the address it listens on.
    """

    def __init__(self, executable: str = "redis-server", host: str = "127.0.0.1",
                 prefix: Sequence[str] = (), arguments: Sequence[str] = ()) -> None:
        """
        @param prefix: the start of its command line, before C{redis-server}
            (for example C{ip netns exec NAME}, to run it in a network namespace).
        @param arguments: more arguments of C{redis-server}, after its own
            (for example C{("--requirepass", "secret")}).
        """
        path = shutil.which(executable)
        if path is None:
            raise RuntimeError("redis-server is not installed (scripts/test installs it)")
        self.executable = path
        self.host = host
        self.prefix = list(prefix)
        self.arguments = list(arguments)
        self.port = free_ports(1)[0]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        """
        Start it and wait until it answers PING.
        """
        self.process = subprocess.Popen(
            [*self.prefix, self.executable, "--port", str(self.port), "--bind", self.host, "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning", *self.arguments],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    # A server with a password answers, refusing the PING.
                    if s.recv(16).startswith((b"+PONG", b"-NOAUTH")):
                        return
            except OSError:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        """
        Kill it (SIGKILL: what it had is gone) and wait until it has exited.
        """
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10)

    def command(self, *args: str) -> bytes:
        """
        Run one command with a plain socket and return the raw reply (for
        tests that look at Redis from outside gamenet).
        """
        parts = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            data = arg.encode("utf-8")
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        with socket.create_connection((self.host, self.port), timeout=2) as s:
            s.sendall(b"".join(parts))
            return s.recv(65536)
