"""
Hosts for a test, made with Linux network namespaces (iproute2's C{ip}):
each host is a namespace of its own with one address on a private bridge,
and this process, in the root namespace, has an address on the bridge too,
so that it reaches every host as a client on another machine would.

The names (namespaces, bridge, veth pairs) hold this process's id and a
random part, and the /24 is one that no address or route of this machine
uses yet, so that a run beside another, or after an aborted one, collides
with nothing. Only what L{Hosts} made is ever changed or removed.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from typing import Iterable

from twisted.trial.unittest import SkipTest, SynchronousTestCase

BRIDGE_HOST = 254
"""
The last byte of this process's address on the bridge.
"""


class CannotMake(Exception):
    """
    Network namespaces cannot be made here; the message says why.
    """


def _ip(*args: str) -> str:
    """
    Run C{ip args} and return its output.

    @raise CannotMake: it failed; the message has the command and its error.
    """
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise CannotMake(f"`ip {' '.join(args)}` failed: {done.stderr.strip() or done.returncode}")
    return done.stdout


def _free_subnet() -> str:
    """
    The first three bytes of a 10.x.y.0/24 that no address or route of this
    namespace uses, chosen from this process's id.
    """
    used = _ip("-4", "-o", "addr", "show") + _ip("-4", "route", "show")
    pid = os.getpid()
    for n in range(256):
        prefix = f"10.{200 + (pid // 256 + n) % 50}.{(pid + n) % 256}"
        if f" {prefix}." not in used and f"\n{prefix}." not in "\n" + used:
            return prefix
    raise CannotMake("no free 10.x.y.0/24 for the test's bridge")


class Hosts:
    """
    Network namespaces on a private bridge, one per host name.

    @ivar addresses: the address of each host, by name.
    @ivar namespaces: the namespace of each host, by name.
    @ivar gateway: this process's address on the bridge.
    """

    def __init__(self, names: Iterable[str]) -> None:
        """
        Name the hosts; nothing is made until L{make}.
        """
        tag = f"{os.getpid() % 100000}{secrets.token_hex(2)}"
        self.bridge = f"gnb{tag}"
        self.names = list(names)
        self.namespaces = {name: f"gamenet-{tag}-{name}" for name in self.names}
        self._veths = {name: f"gnv{tag}{n}" for n, name in enumerate(self.names)}
        self.addresses: dict[str, str] = {}
        self.gateway = ""
        self._made: list[tuple[str, ...]] = []

    def make(self) -> None:
        """
        Make the bridge, with this process's address on it, and each host: a
        namespace with its loopback up and an address on the bridge.

        @raise CannotMake: a step failed; what was made is removed.
        """
        try:
            prefix = _free_subnet()
            self.gateway = f"{prefix}.{BRIDGE_HOST}"
            _ip("link", "add", self.bridge, "type", "bridge")
            self._made.append(("link", "del", self.bridge))
            _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for n, name in enumerate(self.names, 1):
                namespace, veth, address = self.namespaces[name], self._veths[name], f"{prefix}.{n}"
                _ip("netns", "add", namespace)
                self._made.append(("netns", "del", namespace))
                _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", namespace)
                self._made.append(("link", "del", veth))
                _ip("link", "set", veth, "master", self.bridge, "up")
                _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
                _ip("-n", namespace, "link", "set", "eth0", "up")
                _ip("-n", namespace, "link", "set", "lo", "up")
                self.addresses[name] = address
        except BaseException:
            self.remove()
            raise

    def prefix(self, name: str) -> list[str]:
        """
        The start of a command line that runs the rest in host C{name}
        (C{ip netns exec} runs it as the same process).
        """
        return ["ip", "netns", "exec", self.namespaces[name]]

    def pids(self, name: str) -> set[int]:
        """
        The processes in host C{name}'s namespace.
        """
        try:
            return {int(pid) for pid in _ip("netns", "pids", self.namespaces[name]).split()}
        except CannotMake:
            return set()

    def kill(self, name: str, timeout: float = 10.0) -> set[int]:
        """
        SIGKILL every process of host C{name}, again while new ones appear
        (a master may start a child meanwhile), for at most C{timeout}
        seconds; the processes killed.
        """
        killed: set[int] = set()
        deadline = time.monotonic() + timeout
        while (pids := self.pids(name) - {os.getpid()}) and time.monotonic() < deadline:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            killed |= pids
            time.sleep(0.05)
        return killed

    def remove(self) -> None:
        """
        Kill what still runs in each host, then delete the veth pairs, the
        namespaces and the bridge: what L{make} made, in reverse order.
        """
        for name in self.addresses:
            self.kill(name)
        made, self._made = self._made, []
        for args in reversed(made):
            try:
                _ip(*args)
            except CannotMake:
                pass


def make_hosts(test: SynchronousTestCase, names: Iterable[str]) -> Hosts:
    """
    Make L{Hosts} for C{test}, removed at its cleanup (even when it fails).

    @raise SkipTest: namespaces cannot be made here (not root, no C{ip}, or
        making them failed), with the reason.
    """
    if os.geteuid() != 0:
        raise SkipTest("making network namespaces needs root")
    if shutil.which("ip") is None:
        raise SkipTest("making network namespaces needs iproute2's ip command, which is not installed")
    hosts = Hosts(names)
    try:
        hosts.make()
    except (CannotMake, OSError, subprocess.TimeoutExpired) as e:
        raise SkipTest(f"network namespaces cannot be made here: {e}") from None
    test.addCleanup(hosts.remove)
    return hosts
