"""
C{twistd -n gamenet} run as a user runs it: a process, a cluster file, clients.

The process runs the source tree's gamenet (the repository is put first on its
C{PYTHONPATH}) with the twistd of the Python running the tests; the
installed wheel is tested by L{tests.test_packaging}.
"""

from __future__ import annotations

import configparser
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from gamenet.client import Client
from gamenet.testing import free_ports

from .test_tls import write_certificate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CLUSTER = os.path.join(REPO, "etc", "cluster.ini")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
# The start of a Python traceback (a logged Failure's repr also says "Traceback").
TRACEBACK = "Traceback (most recent call last)"


def twistd_command() -> list[str]:
    """
    The twistd installed beside the running Python, or the same program
    through C{-c} when there is no such script.
    """
    script = os.path.join(os.path.dirname(sys.executable), "twistd")
    if os.access(script, os.X_OK):
        return [script]
    return [sys.executable, "-c", "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()"]


def environ() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([REPO, *filter(None, [env.get("PYTHONPATH")])])
    env.pop("GAMENET_SECRET", None)
    env.pop("GAMENET_MASTER_PID", None)
    return env



# Keys whose values are ports to replace with free ones, and keys whose values
# are paths relative to the cluster file's directory.
_PORT_KEYS = ("master_port", "admin_port", "node_port", "client_port", "web_port", "http_port")
_PATH_KEYS = ("web_root", "tls_cert", "tls_key", "protos_dir", "dictionary", "crons")


def default_cluster(directory: str) -> tuple[str, dict[str, tuple[str, int]], dict[str, int]]:
    """
    etc/cluster.ini with free ports, the repository as its plugin path and
    its other paths made absolute, written to C{directory}.

    @return: its path; for each frontend, its type and client port; and every
        port of the file by C{section key}.
    """
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";", "#"), default_section="\x00")
    with open(DEFAULT_CLUSTER, encoding="utf-8") as f:
        parser.read_file(f)
    here = os.path.dirname(DEFAULT_CLUSTER)
    wanted = [(section, key) for section in parser.sections() for key in _PORT_KEYS if key in parser[section]]
    if parser["cluster"].pop("metrics_port_base", None) is not None:
        # Each server's metrics on a free port of its own, not on base + N.
        wanted += [(section, "metrics_port") for section in parser.sections() if section.startswith("server:")]
    # One call, so that no two keys get the same free port.
    ports = dict(zip((f"{section} {key}" for section, key in wanted), free_ports(len(wanted))))
    for section, key in wanted:
        parser[section][key] = str(ports[f"{section} {key}"])
    for section in parser.sections():
        for key in _PATH_KEYS:
            if parser[section].get(key):
                parser[section][key] = os.path.normpath(os.path.join(here, parser[section][key]))
    parser["cluster"]["plugin_path"] = REPO
    frontends = {
        section[len("server:"):]: (parser[section]["type"], int(parser[section]["client_port"]))
        for section in parser.sections() if section.startswith("server:") and "client_port" in parser[section]
    }
    path = os.path.join(directory, "cluster.ini")
    with open(path, "w", encoding="utf-8") as f:
        parser.write(f)
    return path, frontends, ports


def accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def processes_in(directory: str) -> list[int]:
    """
    The running processes whose command line names C{directory}: the ones a
    test started there, the master's children included.
    """
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmdline = f.read().decode("utf-8", "replace")
            with open(f"/proc/{name}/stat", encoding="utf-8", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue
        if directory in cmdline and stat[stat.rindex(")") + 2:].split()[0] not in ("Z", "X"):
            found.append(int(name))
    return found


class TwistdTestCase(TestCase):
    """
    Runs twistd in a temporary directory and keeps its output in a file there.
    """

    timeout = 90

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.output = os.path.join(self.directory, "twistd.out")
        self.addCleanup(self.stop_everything)
        self.started: list[subprocess.Popen[bytes]] = []

    def start_twistd(self, *args: str) -> subprocess.Popen[bytes]:
        """
        Start C{twistd -n gamenet ARGS}; stopped at cleanup if still running.
        """
        with open(self.output, "ab") as out:
            process = subprocess.Popen(
                [*twistd_command(), "-n", "--pidfile=", "gamenet", *args],
                cwd=self.directory, env=environ(), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            )
        self.started.append(process)
        return process

    def stop_everything(self) -> None:
        """
        SIGTERM what this test started and wait for it; SIGKILL what is left,
        the master's children included (by pid).
        """
        for process in self.started:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
                try:
                    process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    os.kill(process.pid, signal.SIGKILL)
                    process.wait(STOP_TIMEOUT)
        deadline = time.monotonic() + 5
        while processes_in(self.directory) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in processes_in(self.directory):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def run_twistd(self, *args: str, timeout: float = 30) -> tuple[int, str]:
        """
        Run C{twistd -n gamenet ARGS} to its end; its exit code and output.
        """
        process = self.start_twistd(*args)
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop_everything()
            self.fail(f"twistd gamenet {' '.join(args)} still ran after {timeout}s:\n{self.read_output()}")
        return code, self.read_output()

    def read_output(self) -> str:
        with open(self.output, encoding="utf-8", errors="replace") as f:
            return f.read()

    async def wait_for(self, condition: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                self.fail(f"timed out after {timeout}s waiting for {what}; output:\n{self.read_output()[-20000:]}")
            await deferLater(reactor, 0.05, lambda: None)


class BadStartTests(TwistdTestCase):
    """
    What cannot start says why, and exits non-zero, without a traceback.
    """

    def write(self, text: str) -> str:
        path = os.path.join(self.directory, "cluster.ini")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def assertRefused(self, code: int, out: str, *messages: str) -> None:
        self.assertNotEqual(code, 0, out)
        for message in messages:
            self.assertIn(message, out)
        self.assertNotIn(TRACEBACK, out)

    def test_badConfig(self) -> None:
        """
        An unknown key and an impossible port are both reported with the
        file, the section and the key.
        """
        path = self.write(
            "[cluster]\nname = t\nsecret = s\ncolour = blue\n"
            "[server:gate-1]\ntype = gate\nhost = 127.0.0.1\nnode_port = 70000\nfrontend = true\nclient_port = 3014\n"
        )
        code, out = self.run_twistd("--config", path)
        self.assertRefused(
            code, out,
            f"{path} [cluster] colour: unknown key",
            f"{path} [server:gate-1] node_port: port 70000 is outside 1-65535",
        )

    def test_badProtobufConfig(self) -> None:
        """
        A schema that does not compile and a dictionary that is not an array
        of routes are each one line naming the file, the section and the key.
        """
        os.makedirs(os.path.join(self.directory, "protos"))
        schemas = os.path.join(self.directory, "protos", "serverProtos.json")
        with open(schemas, "w", encoding="utf-8") as f:
            f.write('{"onChat": {"required Thing a": 1}}')
        dictionary = os.path.join(self.directory, "dictionary.json")
        with open(dictionary, "w", encoding="utf-8") as f:
            f.write('{"onChat": 1}')
        path = self.write(
            "[cluster]\nname = t\nsecret = s\ndictionary = dictionary.json\n[frontend]\nprotos_dir = protos\n"
            "[server:gate-1]\ntype = gate\nhost = 127.0.0.1\nnode_port = 4010\nfrontend = true\nclient_port = 3014\n"
        )
        code, out = self.run_twistd("--config", path)
        self.assertRefused(
            code, out,
            f"{path} [frontend] protos_dir: {schemas}: onChat: field 'a' has unknown type 'Thing'",
            f"{path} [cluster] dictionary: {dictionary} is not a JSON array of routes",
        )

    def test_missingConfig(self) -> None:
        """
        A cluster file that does not exist is named.
        """
        path = os.path.join(self.directory, "nowhere.ini")
        code, out = self.run_twistd("--config", path)
        self.assertRefused(code, out, f"{path}: cannot read")

    def test_unknownServer(self) -> None:
        """
        C{--server} with an id the file does not have names the ids it has.
        """
        path, _, _ = default_cluster(self.directory)
        code, out = self.run_twistd("--config", path, "--server", "nope")
        self.assertRefused(code, out, "'nope'", "gate-1, connector-1, connector-2")

    def changed_cluster(self, changes: dict[str, dict[str, str]]) -> tuple[str, dict[str, int]]:
        """
        L{default_cluster} with C{changes} (keys by section) made; its path and ports.
        """
        path, _, ports = default_cluster(self.directory)
        self.change(path, changes)
        return path, ports

    def change(self, path: str, changes: dict[str, dict[str, str]]) -> None:
        """
        Make C{changes} (keys by section) to the cluster file at C{path}.
        """
        parser = configparser.ConfigParser(interpolation=None, default_section="\x00")
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
        for section, values in changes.items():
            for key, value in values.items():
                parser[section][key] = value
        with open(path, "w", encoding="utf-8") as f:
            parser.write(f)

    def assertOneLine(self, code: int, out: str, start: str, *messages: str) -> None:
        """
        The start was refused with one line beginning C{start} and holding C{messages}.
        """
        self.assertRefused(code, out, start, *messages)
        line = next(line for line in out.splitlines() if start in line)
        for message in messages:
            self.assertIn(message, line)

    def plugins(self, packages: str, files: dict[str, str]) -> tuple[str, int, str]:
        """
        Run every server with C{[cluster] plugins = packages}, found in a
        directory holding C{files}.

        @return: the cluster file's path, the exit code and the output.
        """
        games = os.path.join(self.directory, "games")
        for name, text in files.items():
            os.makedirs(os.path.dirname(os.path.join(games, name)), exist_ok=True)
            with open(os.path.join(games, name), "w", encoding="utf-8") as f:
                f.write(text)
        path, _ = self.changed_cluster({"cluster": {"plugins": packages, "plugin_path": f"{REPO} {games}"}})
        code, out = self.run_twistd("--config", path, "--all")
        return path, code, out

    def test_namespacePlugins(self) -> None:
        """
        A plugin package without an C{__init__.py} (which C{twisted.plugin}
        cannot search) is one line naming the key and what is expected.
        """
        path, code, out = self.plugins("nsgame.plugins", {"nsgame/plugins/rooms.py": "x = 1\n"})
        self.assertOneLine(code, out, f"{path} [cluster] plugins: plugin package nsgame.plugins",
                           "namespace package", "__init__.py")

    def test_brokenPlugins(self) -> None:
        """
        A plugin package that raises on import is one line naming the key.
        """
        path, code, out = self.plugins("badgame", {"badgame/__init__.py": "raise RuntimeError('boom')\n"})
        self.assertOneLine(code, out, f"{path} [cluster] plugins: plugin package badgame", "RuntimeError: boom")

    def test_missingPlugins(self) -> None:
        """
        A plugin package that does not exist is one line naming the key.
        """
        path, code, out = self.plugins("examples.chat.plugins nosuchgame", {})
        self.assertOneLine(code, out, f"{path} [cluster] plugins: plugin package nosuchgame", "ModuleNotFoundError")

    def test_cronAction(self) -> None:
        """
        A crons file whose action names no method of the cron component
        stops the start with one line naming the file, the entry and the action.
        """
        crons = os.path.join(self.directory, "crons.json")
        with open(crons, "w", encoding="utf-8") as f:
            f.write('{"chat": [{"id": 1, "time": "0 * * * * *", "action": "roomCron.nope"}]}')
        path, _ = self.changed_cluster({"cluster": {"crons": crons}})
        code, out = self.run_twistd("--config", path, "--all")
        self.assertOneLine(code, out, f"gamenet: {crons}: chat[0] (id 1): action 'roomCron.nope'",
                           "cron 'roomCron' has no method 'nope'")

    def test_loadConfig(self) -> None:
        """
        A C{load_config} in a game's C{configure} whose file is missing stops
        the start with one line naming the file and the setting.
        """
        plugin = "from gamenet import configure\nrules = configure(lambda app: app.load_config('rules', 'rules.json'))\n"
        _, code, out = self.plugins("examples.chat.plugins rulesgame",
                                    {"rulesgame/__init__.py": "", "rulesgame/rules.py": plugin})
        self.assertOneLine(code, out, f"gamenet: {os.path.join(self.directory, 'rules.json')}: cannot read rules",
                           "No such file or directory")

    def test_duplicatePorts(self) -> None:
        """
        Two keys with the same port on one host stop the start with one line
        naming both.
        """
        path, _, ports = default_cluster(self.directory)
        port = ports["server:gate-1 client_port"]
        self.change(path, {"server:connector-1": {"node_port": str(port)}})
        code, out = self.run_twistd("--config", path, "--all")
        self.assertOneLine(code, out, f"{path} [server:connector-1] node_port: port {port} is also "
                           "[server:gate-1] client_port")

    def portInUse(self, port: int, *args: str) -> tuple[int, str]:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", port))
            taken.listen()
            return self.run_twistd(*args)

    def test_masterPortInUse(self) -> None:
        """
        The master's port taken by another program stops the start.
        """
        path, _, ports = default_cluster(self.directory)
        port = ports["cluster master_port"]
        code, out = self.portInUse(port, "--config", path)
        self.assertRefused(code, out, f"{path} [cluster] master_port: the master cannot listen on 127.0.0.1:{port}", "in use")

    def test_serverPortInUse(self) -> None:
        """
        With C{--server}, the server's client port taken stops the start with
        a message naming the server and the address.
        """
        path, frontends, _ = default_cluster(self.directory)
        port = frontends["connector-1"][1]
        code, out = self.portInUse(port, "--config", path, "--server", "connector-1")
        self.assertOneLine(code, out, f"{path} [server:connector-1] client_port: cannot listen for clients on 127.0.0.1:{port}",
                           "in use")

    def test_adminPortInUse(self) -> None:
        """
        The admin API's port taken stops the master's start with one line naming the key.
        """
        path, _, ports = default_cluster(self.directory)
        port = ports["cluster admin_port"]
        code, out = self.portInUse(port, "--config", path)
        self.assertOneLine(code, out, f"{path} [cluster] admin_port: the admin API cannot listen on 127.0.0.1:{port}",
                           "in use")

    def test_otherPortsInUse(self) -> None:
        """
        Each other port of a server taken stops its start with one line
        naming the file, the section and the key.
        """
        path, _, ports = default_cluster(self.directory)
        for key, what in (("node_port", "listen for node links"), ("web_port", "serve web files"),
                          ("http_port", "serve HTTP"), ("metrics_port", "serve metrics")):
            port = ports[f"server:gate-1 {key}"]
            code, out = self.portInUse(port, "--config", path, "--server", "gate-1")
            self.assertOneLine(code, out, f"{path} [server:gate-1] {key}: cannot {what} on 127.0.0.1:{port}", "in use")
            os.remove(self.output)

    def test_missingCertificates(self) -> None:
        """
        A certificate or key that cannot be read stops the start with one
        line naming the file, the section and the key, whichever server or
        port it is for.
        """
        cert, key = os.path.join(self.directory, "c.pem"), os.path.join(self.directory, "c.key")
        write_certificate(cert, key)
        gone = os.path.join(self.directory, "gone.pem")
        cases = [
            ("server:gate-1", "tls_cert", "tls_key", gone, key, ("--server", "gate-1")),
            ("server:gate-1", "tls_cert", "tls_key", cert, gone, ("--all",)),
            ("server:gate-1", "http_tls_cert", "http_tls_key", gone, key, ("--server", "gate-1")),
            ("cluster", "node_tls_cert", "node_tls_key", gone, key, ("--server", "connector-1")),
            ("cluster", "node_tls_cert", "node_tls_key", cert, gone, ()),
            ("cluster", "admin_tls_cert", "admin_tls_key", gone, key, ()),
        ]
        for section, cert_key, key_key, cert_path, key_path, args in cases:
            path, _ = self.changed_cluster({section: {cert_key: cert_path, key_key: key_path}})
            code, out = self.run_twistd("--config", path, *args)
            bad = cert_key if cert_path == gone else key_key
            self.assertOneLine(code, out, f"{path} [{section}] {bad}: cannot read {gone}: No such file or directory",
                               "expected a readable PEM file")
            os.remove(self.output)

    def test_allPortInUse(self) -> None:
        """
        With C{--all}, one server's client port taken stops them all.
        """
        path, frontends, _ = default_cluster(self.directory)
        port = frontends["connector-2"][1]
        code, out = self.portInUse(port, "--config", path, "--all")
        self.assertOneLine(code, out, f"{path} [server:connector-2] client_port: cannot listen for clients on 127.0.0.1:{port}",
                           "in use")


class MasterChildPortInUseTests(TwistdTestCase):
    """
    Under the master, a server whose client port is taken does not stay up deaf.
    """

    async def test_childPortInUse(self) -> None:
        """
        The master's log names the server and the address, without a
        traceback, and the child exits (to be restarted by the master).
        """
        path, frontends, _ = default_cluster(self.directory)
        port = frontends["connector-1"][1]
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", port))
            taken.listen()
            self.start_twistd("--config", path)
            exited = re.compile(r"server connector-1 (exited|died)")
            await self.wait_for(lambda: exited.search(self.read_output()), START_TIMEOUT, "connector-1 to exit")
        out = self.read_output()
        self.assertIn(f"[server:connector-1] client_port: cannot listen for clients on 127.0.0.1:{port}", out)
        self.assertNotIn(TRACEBACK, out)
        self.assertNotIn("Unhandled error", out)


class ClusterTests(TwistdTestCase):
    """
    The default cluster (etc/cluster.ini on other ports), run by the master
    as a user runs it, served to real clients.
    """

    async def start_cluster(self) -> tuple[subprocess.Popen[bytes], dict[str, tuple[str, int]], dict[str, int]]:
        """
        Start the master with the default cluster; wait until its port and
        every client port accept connections.
        """
        path, frontends, ports = default_cluster(self.directory)
        process = self.start_twistd("--config", path)
        listening = [port for key, port in ports.items() if key.endswith((" master_port", " client_port"))]
        await self.wait_for(
            lambda: process.poll() is not None or all(accepts(port) for port in listening),
            START_TIMEOUT, "the master's and the client ports",
        )
        self.assertIsNone(process.poll(), f"twistd exited early:\n{self.read_output()}")
        return process, frontends, ports

    async def test_serveAndStop(self) -> None:
        """
        Gate and connectors answer over WebSocket and TCP, a connector
        reaching a chat server; SIGTERM stops the master and every server it
        started.
        """
        process, frontends, _ = await self.start_cluster()
        gates = [port for (kind, port) in frontends.values() if kind == "gate"]
        connectors = {port for (kind, port) in frontends.values() if kind == "connector"}
        self.assertTrue(gates and connectors, "etc/cluster.ini: expected a gate and connectors")

        for transport in ("websocket", "tcp"):
            gate = await self.connect(gates[0], transport)
            self.assertEqual(gate.handshake["code"], 200)
            entry = await self.request(gate, "gate.gateHandler.queryEntry", {"uid": "bob"})
            self.assertEqual(entry["code"], 200, entry)
            self.assertEqual(entry["host"], "127.0.0.1")
            self.assertIn(entry["port"], connectors)
            await gate.close()

            connector = await self.connect(entry["port"], transport)
            self.assertEqual(await self.request(connector, "connector.echoHandler.echo", {"say": "hi"}), {"say": "hi"})
            # The connector's links to the chat servers may still be coming
            # up: each try enters a new name in a new room, on a new connection
            # (a session stays bound to the name of a failed try).
            deadline = time.monotonic() + START_TIMEOUT
            for attempt in range(1000):
                if attempt:
                    await deferLater(reactor, 0.1, lambda: None)
                    connector = await self.connect(entry["port"], transport)
                name, room = f"bob-{transport}-{attempt}", f"room-{transport}-{attempt}"
                answer = await self.request(connector, "connector.entryHandler.enter", {"username": name, "rid": room})
                await connector.close()
                if answer == {"users": [name]} or time.monotonic() > deadline:
                    break
            self.assertEqual(answer, {"users": [name]}, self.read_output()[-20000:])

        os.kill(process.pid, signal.SIGTERM)
        await self.wait_for(lambda: process.poll() is not None, STOP_TIMEOUT, "twistd to stop after SIGTERM")
        await self.wait_for(lambda: not processes_in(self.directory), STOP_TIMEOUT, "the master's children to exit")
        output = self.read_output()
        # twistd ends itself with the signal it stopped for, so the status is
        # -SIGTERM; 0 would do as well.
        self.assertIn(process.returncode, (0, -signal.SIGTERM), output)
        self.assertIn("Server Shut Down.", output)
        for bad in (TRACEBACK, "Unhandled error"):
            self.assertNotIn(bad, output)

    async def test_chatPage(self) -> None:
        """
        The gate serves the chat example's page on its C{web_port}.
        """
        _, _, ports = await self.start_cluster()
        web = [port for key, port in ports.items() if key.endswith(" web_port")]
        self.assertTrue(web, "etc/cluster.ini: expected a web_port")
        await self.wait_for(lambda: accepts(web[0]), START_TIMEOUT, "the web port")
        with urllib.request.urlopen(f"http://127.0.0.1:{web[0]}/", timeout=10) as page:
            self.assertEqual(page.status, 200)
            self.assertIn(b"<html", page.read().lower())

    async def connect(self, port: int, transport: str) -> Client:
        client = await Client.connect(reactor, "127.0.0.1", port, transport, timeout=5).addTimeout(10, reactor)
        self.addCleanup(client.close)
        return client

    async def request(self, client: Client, route: str, msg: Any) -> Any:
        return await client.request(route, msg).addTimeout(10, reactor)
