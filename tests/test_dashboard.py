"""
The master's dashboard (C{gamenet/admin/dashboard}): its files, and the page
in Debian's Chromium, driven by C{tests/browser/dashboard.js} through
C{playwright-core} (as C{tests/test_browser.py} drives the chat page).

L{StaticTests} read the files and fetch them from the admin API.
L{FakeFleetTests} serve the admin API in this process over a fleet with
canned figures, to see the page's formatting and its messages for a refused
token and a master that went away. L{ClusterTests} start
the default chat cluster as an operator does (C{twistd -n gamenet --config
FILE}, the admin API and metrics on), open the page with the admin token,
and watch a connector's request rate rise while the test sends requests; the
screenshot it saves is logged (C{_trial_temp/test.log}) with its path.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections import deque
from html.parser import HTMLParser
from typing import Any, Collection, NoReturn

from treq.testing import StubTreq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.protocols.policies import WrappingFactory
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.server import Site

from gamenet.admin._api import DASHBOARD, AdminApi
from gamenet.client import Client
from gamenet.config import load
from gamenet.testing import FakeFleet, free_ports, server_record

from ._node import BROWSER, browser_node, node_tools
from ._processes import CHAT_EXAMPLE, MasterProcess, accepts, cluster_section, server_section
from .test_twistd import DEFAULT_CLUSTER

log = Logger()

DRIVER = os.path.join(BROWSER, "dashboard.js")
COMMAND_TIMEOUT = 60
TOKEN = "dashboard-token"

SERVERS = ("gate-1", "connector-1", "connector-2", "chat-1", "chat-2")
FRONTENDS = ("gate-1", "connector-1", "connector-2")


class _Elements(HTMLParser):
    """
    Checks that every element of a page is closed in order; collects ids,
    stylesheets and scripts.
    """

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.problems: list[str] = []
        self.ids: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.ids.append(found["id"] or "")
        if tag == "link" and found.get("rel") == "stylesheet" or tag == "script":
            self.links.append(found.get("href") or found.get("src") or "")
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.problems.append(f"</{tag}> at line {self.getpos()[0]} closes {self.open[-1:] or 'nothing'}")
        else:
            self.open.pop()


def _read(name: str) -> str:
    with open(os.path.join(DASHBOARD, name), encoding="utf-8") as f:
        return f.read()


class StaticTests(SynchronousTestCase):
    """
    The dashboard's three files, as the master serves them.
    """

    def test_page(self) -> None:
        """
        C{index.html} is well formed, its ids are unique, and it loads its
        stylesheet and script from C{/dashboard/}, where they are.
        """
        page = _Elements()
        page.feed(_read("index.html"))
        page.close()
        self.assertEqual(page.problems, [])
        self.assertEqual(page.open, [])
        self.assertEqual(sorted(set(page.ids)), sorted(page.ids))
        self.assertEqual(sorted(page.links), ["/dashboard/dashboard.css", "/dashboard/dashboard.js"])
        for link in page.links:
            self.assertTrue(os.path.isfile(os.path.join(DASHBOARD, link.rsplit("/", 1)[1])), link)

    def test_scriptFindsItsElements(self) -> None:
        """
        Every element id the script looks up is in the page.
        """
        page = _Elements()
        page.feed(_read("index.html"))
        used = set(re.findall(r"""\$\("([\w-]+)"\)""", _read("dashboard.js")))
        self.assertTrue(used)
        self.assertEqual(used - set(page.ids), set())

    def test_scriptSyntax(self) -> None:
        """
        C{node --check} accepts the script, and it asks nothing of a network
        but the master it came from.
        """
        try:
            node, _ = node_tools("the dashboard's syntax check")
        except RuntimeError as e:
            self.fail(str(e))
        result = subprocess.run([node, "--check", os.path.join(DASHBOARD, "dashboard.js")],
                                capture_output=True, text=True, timeout=60, check=False)
        self.assertEqual(result.returncode, 0, result.stderr)
        for name in ("index.html", "dashboard.js", "dashboard.css"):
            self.assertNotRegex(_read(name), r"(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", name)


    def test_served(self) -> None:
        """
        The admin API serves the page at C{/} and its two other files under
        C{/dashboard/}, with their types and without the token.
        """
        http = StubTreq(AdminApi(FakeFleet(), DASHBOARD).resource(TOKEN))
        for path, name, kind in (("/", "index.html", b"text/html"),
                                 ("/dashboard/dashboard.js", "dashboard.js", b"javascript"),
                                 ("/dashboard/dashboard.css", "dashboard.css", b"text/css")):
            response = self.successResultOf(http.get("http://127.0.0.1:3006" + path))
            self.assertEqual(response.code, 200, path)
            self.assertIn(kind, response.headers.getRawHeaders(b"content-type")[0])
            self.assertEqual(self.successResultOf(http.content(response)).decode("utf-8"), _read(name))


class _Driver(ProcessProtocol):
    """
    The driver (C{tests/browser/dashboard.js}): one JSON command written,
    one JSON answer read.
    """

    def __init__(self) -> None:
        self.buffer = b""
        self.waiting: deque[Deferred[dict[str, Any]]] = deque()
        self.err: list[bytes] = []
        self.ended: Deferred[None] = Deferred()
        self.running = True

    def outReceived(self, data: bytes) -> None:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            try:
                answer = json.loads(line)
            except ValueError:
                self.err.append(line + b"\n")
                continue
            if self.waiting:
                self.waiting.popleft().callback(answer)

    def errReceived(self, data: bytes) -> None:
        self.err.append(data)

    def stderr(self) -> str:
        return b"".join(self.err).decode("utf-8", "replace")[-5000:]

    def processEnded(self, reason: Any) -> None:
        self.running = False
        while self.waiting:
            self.waiting.popleft().errback(RuntimeError(f"the driver ended ({reason.value}):\n{self.stderr()}"))
        self.ended.callback(None)

    def send(self, **command: Any) -> Deferred[dict[str, Any]]:
        d: Deferred[dict[str, Any]] = Deferred()
        if not self.running:
            d.errback(RuntimeError(f"the driver is not running:\n{self.stderr()}"))
            return d
        self.waiting.append(d)
        self.transport.write(json.dumps(command).encode("utf-8") + b"\n")
        return d


class BrowserTestCase(TestCase):
    """
    Starts the driver for a test and stops it at cleanup; L{do} sends it a
    command and fails the test, with a screenshot, when the command fails.
    """

    def start_driver(self) -> None:
        try:
            self.node = browser_node("the dashboard test (tests/browser/dashboard.js)")
        except RuntimeError as e:
            self.fail(str(e))
        self.shots = os.path.abspath(self.mktemp())
        os.makedirs(self.shots)
        self.driver = _Driver()
        reactor.spawnProcess(self.driver, self.node, [self.node, DRIVER], env=dict(os.environ), path=BROWSER)
        self.addCleanup(self.stop_driver)

    async def stop_driver(self) -> None:
        """
        Close the browser and wait for the driver to end; kill it after 20 s.
        """
        if self.driver.running:
            self.driver.send(do="close").addErrback(lambda _: None)
            timer = reactor.callLater(20, self.driver.transport.signalProcess, "KILL")
            await self.driver.ended
            if timer.active():
                timer.cancel()

    def give_up(self, text: str) -> NoReturn:
        """
        Fail the test with C{text}; a subclass adds what explains it.
        """
        self.fail(text)

    async def do(self, **command: Any) -> dict[str, Any]:
        """
        Send C{command} to the driver; its answer's snapshot of the page.
        """
        try:
            answer = await self.driver.send(**command).addTimeout(COMMAND_TIMEOUT, reactor)
        except Exception as e:
            self.give_up(f"the driver failed {command}: {e}\n{self.driver.stderr()}")
        if not answer["ok"]:
            path = os.path.join(self.shots, "failure.png")
            shot = await self.driver.send(do="screenshot", path=path).addTimeout(COMMAND_TIMEOUT, reactor)
            self.give_up(
                f"{command['do']} failed: {answer.get('error')}\nshown: {json.dumps(answer.get('shown'), indent=1)}"
                f"\npage errors: {answer.get('errors')}\nscreenshot: {path if shot['ok'] else 'none'}"
            )
        self.assertEqual(answer["errors"], [])
        return answer["shown"]

    async def wait(self, until: str, what: str, seconds: float = 15) -> dict[str, Any]:
        """
        Wait at most C{seconds} until the page shows C{until} (JavaScript over
        the snapshot C{s}); the snapshot.
        """
        return await self.do(do="wait", until=until, what=what, seconds=seconds)

    async def screenshot(self, name: str) -> str:
        """
        Save the whole page as C{name} in this test's directory, and log its path.
        """
        path = os.path.join(self.shots, name)
        await self.do(do="screenshot", path=path)
        with open(path, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n", path)
        log.info("dashboard screenshot: {path}", path=path)
        return path


class _CannedFleet(FakeFleet):
    """
    L{FakeFleet} with figures: five servers in every state the table colours,
    five minutes of samples, and routes for C{connector-1}.
    """

    def __init__(self, now: float) -> None:
        records = [
            server_record(sid, sid.rsplit("-", 1)[0], uptime=3725.0, clients=3, sessions=2, rps=12.5, p50=0.0012,
                          p99=0.0234, cpu=4.25, rss=52_400_000)
            for sid in SERVERS
        ]
        super().__init__(records)
        self.records["gate-1"].update(rps=0.0, p50=None, p99=None)
        self.records["connector-1"].update(rps=1234.5, p99=0.1234)
        self.records["connector-2"].update(state="draining", ready=False)
        self.records["chat-1"].update(restarts=2, uptime=42.0, clients=0, sessions=0)
        self.records["chat-2"].update(state="down", ready=False, pid=None, uptime=None, clients=None, sessions=None,
                                      rps=None, errors_per_second=None, p50=None, p99=None, cpu=None, rss=None,
                                      restarts=1)
        self.samples = {
            sid: [
                {"t": now - 298 + 2 * n, "rps": n if sid == "connector-1" else 5.0, "p50": 0.001,
                 "p99": 0.02 + n / 10000, "errors": 0.0, "cpu": 3.0 + n % 7, "rss": 50_000_000 + n * 10_000,
                 "clients": 3}
                for n in range(150)
            ] if sid != "chat-2" else []
            for sid in SERVERS
        }

    def history(self, seconds: float) -> dict[str, Any]:
        super().history(seconds)
        return {"interval": 2.0, "servers": self.samples}

    def server(self, server_id: str) -> dict[str, Any]:
        record = super().server(server_id)
        if server_id == "connector-1":
            record["routes"] = {
                "connector.echoHandler.echo": {"requests": 1500, "errors": 3, "rps": 1200.0, "p50": 0.0011,
                                               "p99": 0.012},
                "connector.entryHandler.enter": {"requests": 20, "errors": 0, "rps": 0.5, "p50": 0.004, "p99": 0.05},
            }
        return record


async def _vanish(port: Any, factory: WrappingFactory) -> None:
    """
    Stop listening and drop every open connection, as a master that went
    away leaves the page.
    """
    for protocol in list(factory.protocols):
        protocol.transport.abortConnection()
    await port.stopListening()


class FakeFleetTests(BrowserTestCase):
    """
    The page against the admin API over a fleet with canned figures, on a
    loopback port.
    """

    timeout = 180

    async def test_page(self) -> None:
        """
        A wrong token from the address is refused with a message and the
        form; the right one typed in shows every server with its figures
        formatted and the plots, and is kept across a reload; a click on a
        server shows its routes; when the master stops answering, the page
        says so and keeps the last figures; "Forget token" takes the token
        and the figures away.
        """
        self.start_driver()
        fleet = _CannedFleet(time.time())
        factory = WrappingFactory(Site(AdminApi(fleet, DASHBOARD).resource(TOKEN)))
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        address = f"127.0.0.1:{port.getHost().port}"
        base = f"http://{address}/"

        shown = await self.do(do="open", url=base + "#token=wrong")
        shown = await self.wait("s.message !== ''", "the refused token")
        self.assertIn("refused", shown["message"])
        self.assertTrue(shown["form"])
        self.assertFalse(shown["board"])
        self.assertEqual(shown["url"], base)
        self.assertIsNone(shown["stored"])

        await self.do(do="token", value=TOKEN)
        shown = await self.wait("s.board && s.servers.length === 5 && s.plots.rps.samples > 0", "the servers")
        self.assertEqual((shown["message"], shown["form"], shown["stored"]), ("", False, TOKEN))
        self.assertEqual([s["id"] for s in shown["servers"]], list(SERVERS))
        self.assertEqual(shown["legend"], list(SERVERS))
        self.assertEqual(shown["header"]["name"], "chat")
        self.assertIn("3 of 5 servers up", shown["header"]["master"])
        rows = {s["id"]: s for s in shown["servers"]}
        self.assertEqual(rows["connector-1"]["text"], {
            "type": "connector", "state": "up", "ready": "yes", "clients": "3", "sessions": "2", "rps": "1,235",
            "p50": "1.20", "p99": "123", "errors_per_second": "0.0", "cpu": "4.3", "rss": "52.4",
            "uptime": "1h 02m", "restarts": "0",
        })
        self.assertEqual(rows["connector-1"]["values"]["rps"], 1234.5)
        self.assertIs(rows["connector-1"]["values"]["ready"], True)
        self.assertEqual((rows["gate-1"]["text"]["rps"], rows["gate-1"]["text"]["p99"]), ("0.0", "–"))
        self.assertEqual((rows["connector-2"]["text"]["state"], rows["connector-2"]["text"]["ready"]),
                         ("draining", "no"))
        self.assertEqual((rows["chat-1"]["text"]["uptime"], rows["chat-1"]["text"]["restarts"]), ("42s", "2"))
        down = rows["chat-2"]
        self.assertEqual(down["text"]["state"], "down")
        self.assertEqual({field: text for field, text in down["text"].items() if text != "–"},
                         {"type": "chat", "state": "down", "ready": "no", "restarts": "1"})
        # Four plots, every live server's 150 samples drawn; chat-2 has none.
        self.assertEqual({field: plot["samples"] for field, plot in shown["plots"].items()},
                         dict.fromkeys(("rps", "p99", "cpu", "rss"), 600))
        self.assertIn("connector-1 149", shown["plots"]["rps"]["label"])
        self.assertEqual(shown["plotsHeading"], "Last 5 minutes")
        self.assertEqual((shown["routes"]["shown"], shown["routes"]["hint"]), (False, True))

        # The tab keeps the token: the page loaded again asks for none.
        await self.do(do="open", url=base)
        shown = await self.wait("s.board && s.servers.length === 5", "the servers after a reload")
        self.assertEqual((shown["form"], shown["message"]), (False, ""))

        await self.do(do="click", server="connector-1")
        shown = await self.wait("s.routes.shown && s.routes.rows.length === 2", "connector-1's routes")
        self.assertEqual((shown["routes"]["server"], shown["routes"]["hint"]), ("connector-1", False))
        self.assertEqual([s["id"] for s in shown["servers"] if s["selected"]], ["connector-1"])
        self.assertEqual(shown["routes"]["rows"][0]["route"], "connector.echoHandler.echo")
        self.assertEqual(shown["routes"]["rows"][0]["text"],
                         {"requests": "1,500", "errors": "3", "rps": "1,200", "p50": "1.10", "p99": "12.0"})
        await self.do(do="click", server="chat-1")
        shown = await self.wait("s.routes.note.startsWith('No route of chat-1')", "chat-1's routes")
        self.assertEqual(shown["routes"]["rows"], [])
        self.assertEqual(shown["routes"]["note"], "No route of chat-1 has been called yet.")
        await self.do(do="click", server="connector-1")
        await self.wait("s.routes.rows.length === 2", "connector-1's routes again")
        await self.screenshot("fake.png")

        await _vanish(port, factory)
        shown = await self.wait("s.message !== ''", "that the master is unreachable")
        self.assertIn(f"The master at {address} is unreachable", shown["message"])
        self.assertTrue(shown["stale"])
        self.assertEqual(len(shown["servers"]), 5)
        await self.screenshot("fake-unreachable.png")

        shown = await self.do(do="click", selector="#forget")
        self.assertEqual((shown["form"], shown["board"], shown["stored"], shown["message"]), (True, False, None, ""))


def _free_run(count: int, taken: Collection[int]) -> int:
    """
    The first of C{count} consecutive ports that were all free on 127.0.0.1
    a moment ago (for C{metrics_port_base}), none of them in C{taken} (the
    ports already given to the cluster's other keys). L{free_ports} hands
    out ports in turn, so that a run it gives is this test's alone.
    """
    for _ in range(50):
        ports = free_ports(count)
        if ports == list(range(ports[0], ports[0] + count)) and not any(port in taken for port in ports):
            return ports[0]
    raise RuntimeError(f"no {count} consecutive free ports found")


class DefaultClusterTests(SynchronousTestCase):
    """
    L{ClusterTests} run the default cluster's servers.
    """

    def test_servers(self) -> None:
        """
        L{SERVERS} and L{FRONTENDS} are the servers and frontends of
        C{etc/cluster.ini}, in its order; L{server_section} gives each the
        type its section has.
        """
        cluster = load(DEFAULT_CLUSTER, {})
        self.assertEqual([server.id for server in cluster.servers], list(SERVERS))
        self.assertEqual([server.id for server in cluster.servers if server.frontend], list(FRONTENDS))
        self.assertEqual({server.id: server.type for server in cluster.servers},
                         {server: server.rsplit("-", 1)[0] for server in SERVERS})


def cluster_text(ports: dict[str, int]) -> str:
    """
    The default chat cluster (C{etc/cluster.ini}) on the ports of C{ports}
    (C{master}, C{admin}, C{metrics}, C{<id>.node}, C{<id>.client}), its
    admin API and metrics on.
    """
    text = cluster_section("chat", ports["master"], **CHAT_EXAMPLE, admin_port=ports["admin"], admin_token=TOKEN,
                           metrics_port_base=ports["metrics"], drain_timeout=1)
    return text + "".join(server_section(server, ports) for server in SERVERS)


START_TIMEOUT = 60
STOP_TIMEOUT = 20
REQUEST_TIMEOUT = 10
RISEN_RPS = 10


class ClusterTests(BrowserTestCase):
    """
    The page served by the master of a real cluster of processes.
    """

    timeout = 240

    async def setUp(self) -> None:
        names = ["master", "admin", *(f"{s}.node" for s in SERVERS), *(f"{s}.client" for s in FRONTENDS)]
        self.ports = dict(zip(names, free_ports(len(names))))
        self.ports["metrics"] = _free_run(len(SERVERS), set(self.ports.values()))
        self.master = MasterProcess(self)
        self.master.write(cluster_text(self.ports))
        self.master.start(STOP_TIMEOUT)
        self.start_driver()
        deadline = time.monotonic() + START_TIMEOUT
        while not accepts(self.ports["admin"]):
            self.master.fail_if_exited()
            if time.monotonic() > deadline:
                self.give_up(f"the admin API did not listen within {START_TIMEOUT} s")
            await deferLater(reactor, 0.1, lambda: None)

    def give_up(self, text: str) -> NoReturn:
        """
        Fail with C{text} and the end of the master's log.
        """
        self.master.fail(text)

    async def load(self, client: Client) -> int:
        """
        Echo requests to C{connector-1}, one after another, until L{loading}
        is cleared; how many were answered.
        """
        sent = 0
        while self.loading:
            msg = {"n": sent}
            answer = await client.request("connector.echoHandler.echo", msg).addTimeout(REQUEST_TIMEOUT, reactor)
            self.assertEqual(answer, msg)
            sent += 1
            await deferLater(reactor, 0.01, lambda: None)
        return sent

    async def test_live(self) -> None:
        """
        The page opened with the token shows the five servers up; while the
        test sends echo requests to connector-1, the request rate the table
        and the plot show for it rises, and a click on it shows the echo
        route counting them. The screenshot is saved and its path logged.
        """
        await self.do(do="open", url=f"http://127.0.0.1:{self.ports['admin']}/#token={TOKEN}")
        shown = await self.wait(
            "s.servers.length === 5 && s.servers.every((r) => r.values.state === 'up' && r.values.ready === true)",
            "the five servers up and ready", START_TIMEOUT)
        self.assertEqual(sorted(row["id"] for row in shown["servers"]), sorted(SERVERS))
        self.assertEqual((shown["url"], shown["stored"], shown["message"]),
                         (f"http://127.0.0.1:{self.ports['admin']}/", TOKEN, ""))
        self.assertEqual(shown["header"]["name"], "chat")
        before = {row["id"]: row["values"]["rps"] for row in shown["servers"]}["connector-1"]
        self.assertLess(before or 0, 1)

        client = await Client.connect(reactor, "127.0.0.1", self.ports["connector-1.client"], transport="tcp",
                                      timeout=5).addTimeout(REQUEST_TIMEOUT, reactor)
        self.addCleanup(client.close)
        self.loading = True
        loading = Deferred.fromCoroutine(self.load(client))
        try:
            rising = (f"s.servers.find((r) => r.id === 'connector-1').values.rps >= {RISEN_RPS}"
                      f" && (s.plots.rps.latest['connector-1'] || 0) >= {RISEN_RPS}")
            await self.wait(rising, f"connector-1 at {RISEN_RPS} requests/s or more", 30)
            await self.do(do="click", server="connector-1")
            shown = await self.wait(
                "s.routes.rows.some((r) => r.route === 'connector.echoHandler.echo' && r.values.requests > 0)",
                "connector-1's echo route counted")
            self.assertEqual(shown["routes"]["server"], "connector-1")
            # A few more polls under load, for a screenshot that shows the rate's rise and plateau.
            polls = shown["plots"]["rps"]["samples"] + 4 * len(SERVERS)
            shown = await self.wait(f"s.plots.rps.samples >= {polls}", "four more polls plotted", 30)
            await self.screenshot("dashboard.png")
        finally:
            self.loading = False
            sent = await loading
        self.assertGreater(sent, 0)
        connector = {row["id"]: row for row in shown["servers"]}["connector-1"]
        self.assertGreaterEqual(connector["values"]["rps"], RISEN_RPS)
        echo = {row["route"]: row for row in shown["routes"]["rows"]}["connector.echoHandler.echo"]
        self.assertLessEqual(echo["values"]["requests"], sent)
