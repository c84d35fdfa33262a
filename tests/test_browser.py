"""
The chat example's web page (C{examples/chat/web}) in a real browser: the whole
chat cluster (a gate serving the page, two connectors, two chat servers) runs
in this process on loopback sockets, and C{tests/browser/chat.js} drives
Debian's Chromium through C{playwright-core} against it: two users join a
room, talk to everyone and privately, one's WebSocket is killed here and
its page resumes the session, a duplicate name is refused, and a leave is
shown.

The Node dependency is installed into C{tests/browser/node_modules} with
C{npm ci} the first time the test runs; playwright-core downloads no browser.
Chromium comes from Debian (C{apt-get install chromium}, as C{scripts/test} does).

On failure the message lists the screenshots the driver saved of every open
page (under the test's temporary directory). Set C{GAMENET_BROWSER_SHOTS=1}
to keep screenshots of a passing run too (after the private message and after
the refused duplicate), for looking at the page.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from gamenet.plugins import discover
from gamenet.testing import backend, cluster_config, free_ports, frontend, start_server

from ._node import BROWSER, browser_node

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(BROWSER, "chat.js")
WEB_ROOT = os.path.join(os.path.dirname(HERE), "examples", "chat", "web")
PROTOS = os.path.join(os.path.dirname(HERE), "examples", "chat", "config")
DRIVER_TIMEOUT = 90
LINK_TIMEOUT = 15

CHECKS = [
    "browser", "page", "codec", "validation", "login ann", "members", "join notice",
    "broadcast", "private", "heartbeat", "resume", "duplicate", "leave", "page errors",
]


class _Driver(ProcessProtocol):
    """
    Collects a child's output; kills it after C{timeout} seconds. A line
    C{{"request": ...}} it prints is given to C{answer}, whose answer is
    written back as a line on its stdin.

    @ivar done: fires with C{(stdout, stderr, exit code or None when killed)}.
    """

    def __init__(self, timeout: float, answer: Any = None) -> None:
        self.answer = answer
        self._line = b""
        self.out: list[bytes] = []
        self.err: list[bytes] = []
        self.done: Deferred[tuple[str, str, int | None]] = Deferred()
        self.killed = False
        self._timer = reactor.callLater(timeout, self._kill)

    def _kill(self) -> None:
        self.killed = True
        self.transport.signalProcess("KILL")

    def outReceived(self, data: bytes) -> None:
        self.out.append(data)
        *lines, self._line = (self._line + data).split(b"\n")
        for line in lines:
            if line.startswith(b'{"request"') and self.answer is not None:
                self.transport.write(self.answer(json.loads(line)).encode("utf-8") + b"\n")

    def errReceived(self, data: bytes) -> None:
        self.err.append(data)

    def processEnded(self, reason: Any) -> None:
        if self._timer.active():
            self._timer.cancel()
        code = None if self.killed else reason.value.exitCode
        self.done.callback((b"".join(self.out).decode("utf-8", "replace"),
                            b"".join(self.err).decode("utf-8", "replace"), code))


class ChatPageTests(TestCase):
    """
    The chat page against the chat example's cluster, on free loopback ports.
    """

    timeout = 180

    async def setUp(self) -> None:
        try:
            self.node = browser_node("the browser test (tests/browser/chat.js)")
        except RuntimeError as e:
            self.fail(str(e))
        gate, c1, c2, web, *nodes = free_ports(9)
        self.gate_port, self.web_port = gate, web
        cluster = cluster_config(
            frontend("gate-1", "gate", client_port=gate, node_port=nodes[0], use_dict=False,
                     web_port=web, web_root=WEB_ROOT, protos_dir=PROTOS),
            frontend("connector-1", "connector", client_port=c1, node_port=nodes[1], heartbeat=1, protos_dir=PROTOS),
            frontend("connector-2", "connector", client_port=c2, node_port=nodes[2], heartbeat=1, protos_dir=PROTOS),
            backend("chat-1", "chat", node_port=nodes[3]),
            backend("chat-2", "chat", node_port=nodes[4]),
            extra_routes=["onChat", "onAdd", "onLeave"],
        )
        registrations = discover(["examples.chat.plugins"])
        self.apps = []
        for server in cluster.servers:
            app = await start_server(cluster, server.id, registrations)
            self.addCleanup(app.stopService)
            self.apps.append(app)
        await self._links_up()

    async def _links_up(self) -> None:
        """
        Wait, at most L{LINK_TIMEOUT} seconds, until every node link is up.
        """
        deadline = time.monotonic() + LINK_TIMEOUT
        while not all(link.up for app in self.apps for link in app.node.links.values()):
            if time.monotonic() > deadline:
                down = [repr(link) for app in self.apps for link in app.node.links.values() if not link.up]
                self.fail(f"node links still down after {LINK_TIMEOUT} s: {down}")
            await deferLater(reactor, 0.05, lambda: None)

    async def drive(self, *flags: str) -> tuple[list[dict[str, Any]], str]:
        """
        Run the driver against the page.

        @return: its checks, one dict per JSON line, and the screenshot directory.
        """
        shots = os.path.abspath(self.mktemp())
        url = f"http://127.0.0.1:{self.web_port}/?gate=127.0.0.1:{self.gate_port}"
        driver = _Driver(DRIVER_TIMEOUT, self.answer)
        reactor.spawnProcess(driver, self.node, [self.node, SCRIPT, url, shots, *flags], env=dict(os.environ),
                             path=BROWSER)
        out, err, code = await driver.done
        checks = []
        for line in out.splitlines():
            try:
                parsed = json.loads(line)
            except ValueError:
                continue
            if isinstance(parsed, dict) and "check" in parsed:
                checks.append(parsed)
        if code != 0:
            failed = [c for c in checks if not c.get("ok")]
            shot_paths = [p for c in checks if c.get("check") == "screenshots" for p in c.get("paths", [])]
            self.fail(
                f"the browser driver {'was killed after %d s' % DRIVER_TIMEOUT if code is None else f'exited {code}'}"
                f"\nfailed: {json.dumps(failed, indent=1)}\nscreenshots: {shot_paths or 'none'} (in {shots})"
                f"\nstdout:\n{out}\nstderr:\n{err}"
            )
        return checks, shots

    def answer(self, request: dict[str, Any]) -> str:
        """
        Do what the driver asks: C{drop} resets the connection of the
        session of C{user} on its connector, as a network that dies does
        (the server sees no close).
        """
        if request.get("request") != "drop":
            return f"unknown request {request!r}"
        sessions = [s for app in self.apps if app.sessions is not None for s in app.sessions.get_by_uid(request["user"])]
        if len(sessions) != 1:
            return f"{len(sessions)} sessions of {request['user']}"
        sessions[0]._link.link.abort()
        return "dropped"

    async def test_chat(self) -> None:
        """
        Every check of the driver passes, in order: the page loads, the client
        module encodes the protocol's byte examples (the protobuf C{onChat}
        push among them), bad names are refused on
        the page, ann and bob see each other in the member list and a join
        notice, a message to everyone reaches both, bob's private message
        reaches ann marked private (and is echoed to bob), both pages keep
        their connections with heartbeats (1 s here), ann's WebSocket
        reset here shows her page reconnecting and the three messages bob
        sent meanwhile appear once it has resumed, in order, a second ann is
        refused with a visible error, and bob's leave reaches ann's page.
        """
        # The chat example's protobuf schemas are on, as in etc/cluster.ini:
        # onChat pushes and chat.chatHandler.send requests go in protobuf, so
        # the broadcast and private checks pass only if the page speaks it.
        checks, _ = await self.drive(*(["--screenshots"] if os.environ.get("GAMENET_BROWSER_SHOTS") else []))
        ran = [c["check"] for c in checks if c["check"] != "screenshots"]
        self.assertEqual(ran, CHECKS)
        self.assertTrue(all(c["ok"] for c in checks), checks)
        by_name = {c["check"]: c for c in checks}
        self.assertEqual(by_name["members"]["ann"], ["*", "ann", "bob"])
        self.assertEqual(by_name["leave"]["users"], ["*", "ann"])
