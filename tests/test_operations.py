"""
Operations on a real cluster of processes, as an operator runs them: the
master (C{twistd -n gamenet --config FILE}) of the chat example (gate, two
connectors, two chat servers) serves the admin API, and the C{gamenet}
command (L{gamenet.admin.cli}) calls it, as the installed console script or
in this process; clients of the chat example connect over loopback.

Covered: every command (list, status, sessions, stop, kill, restart, add
from a spec and from a section, remove, kick by uid and by session,
block/unblock, broadcast), the figures the servers report, the 401, each
bad input (unknown server 404, malformed body 400, unknown type 400, port in
use 409), the refused non-loopback admin address, the admin API over TLS,
C{gamenet list} on the default cluster, the block list across a frontend
restart and a cluster restart, and rolling restarts of the chat servers and
of the connectors under chat load, and one stopped by a server that does not
come back.

Every wait is bounded; every process started here is stopped at cleanup.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from twisted.internet import reactor, utils
from twisted.internet.defer import Deferred, gatherResults
from twisted.trial.unittest import TestCase

from examples.chat.dispatcher import dispatch
from gamenet.admin import cli
from gamenet.admin._client import Api, Master, http_client
from gamenet.client import Client
from gamenet.testing import free_ports

from ._processes import CHAT_EXAMPLE, MasterProcess, alive, cluster_section, environ, server_section, twistd_command
from .test_multiprocess import STOP_TIMEOUT, ClusterTestCase
from .test_tls import write_certificate
from .test_twistd import default_cluster

TOKEN = "operations-token"
DRAIN_TIMEOUT = 2
START_TIMEOUT = 40.0
CHANGE_TIMEOUT = 40.0

FRONTENDS = ("gate-1", "connector-1", "connector-2")
CONNECTORS = ("connector-1", "connector-2")
CHATS = ("chat-1", "chat-2")
SERVERS = (*FRONTENDS, *CHATS)
KICK_REASON = "server shutting down"
PORTS = ("node", "metrics")


def cluster_text(ports: dict[str, int], admin_host: str = "127.0.0.1", admin_extra: str = "") -> str:
    """
    The chat example's cluster with the admin API on C{ports["admin"]};
    C{admin_extra} are more lines of C{[cluster]}. Every server counts its
    requests (a C{metrics_port}), so that the master reports figures.
    """
    text = cluster_section("operations", ports["master"], **CHAT_EXAMPLE, rpc_timeout=5,
                           drain_timeout=DRAIN_TIMEOUT, admin_host=admin_host, admin_port=ports["admin"],
                           admin_token=TOKEN)
    return text + admin_extra + "".join(server_section(server, ports) for server in SERVERS)


def room_on(chat: str, prefix: str = "room", servers: tuple[str, ...] = CHATS) -> str:
    """
    A room id that the chat example routes to C{chat} of C{servers}.
    """
    return next(f"{prefix}{n}" for n in range(1000) if dispatch(f"{prefix}{n}", servers) == chat)


async def gamenet_script(directory: str, *argv: str) -> tuple[int, str, str]:
    """
    Run the installed C{gamenet} console script in C{directory}: its exit status, stdout and stderr.
    """
    script = os.path.join(os.path.dirname(sys.executable), "gamenet")
    command = [script] if os.access(script, os.X_OK) else [sys.executable, "-m", "gamenet.cli"]
    d = utils.getProcessOutputAndValue(command[0], [*command[1:], *argv], env=environ(), path=directory)
    out, err, code = await d.addTimeout(60, reactor)
    return code, out.decode(), err.decode()


class OperationsTestCase(ClusterTestCase):
    """
    Starts the master of the chat example with its admin API, and waits
    until every server is up and ready and each connector reaches each
    chat server.
    """

    timeout = 150
    admin_tls = False

    async def setUp(self) -> None:
        names = ["master", "admin", *(f"{s}.{port}" for s in (*SERVERS, "chat-3", "chat-4") for port in PORTS),
                 *(f"{s}.client" for s in FRONTENDS)]
        self.ports = dict(zip(names, free_ports(len(names))))
        self.master = MasterProcess(self)
        directory = self.master.directory
        self.certificate = os.path.join(directory, "admin.pem") if self.admin_tls else ""
        tls = ""
        if self.admin_tls:
            write_certificate(self.certificate, os.path.join(directory, "admin.key"))
            tls = "admin_tls_cert = admin.pem\nadmin_tls_key = admin.key\n"
        self.master.write(cluster_text(self.ports, admin_extra=tls + self.cluster_extra()))
        url = f"{'https' if self.admin_tls else 'http'}://127.0.0.1:{self.ports['admin']}"
        self.api = Api(http_client(reactor, self.certificate), Master(url, TOKEN), reactor)
        self.master.start(STOP_TIMEOUT)
        self.clients: list[Client] = []
        self.addCleanup(self.close_clients)
        await self.wait_servers(SERVERS)
        for connector in CONNECTORS:
            for chat in CHATS:
                await self.eventually(lambda: self.chat_in(connector, room_on(chat, "probe")), START_TIMEOUT,
                                      f"a chat message through {connector} to {chat}")

    def cluster_extra(self) -> str:
        """
        More lines of the C{[cluster]} section, for subclasses.
        """
        return ""

    # The command line

    async def gamenet(self, *argv: str) -> tuple[int, str, str]:
        """
        Run C{gamenet ARGV --config FILE} in this process: exit status, stdout, stderr.
        """
        out, err = io.StringIO(), io.StringIO()
        code = await cli.run([*argv, "--config", self.master.config], reactor, out, err, {})
        await self.sleep(0.01)  # the call's connection closes
        return code, out.getvalue(), err.getvalue()

    async def gamenet_process(self, *argv: str) -> tuple[int, str, str]:
        """
        Run the installed C{gamenet} console script with C{--config FILE}, as an operator does.
        """
        return await gamenet_script(self.master.directory, *argv, "--config", self.master.config)

    async def succeeds(self, *argv: str) -> str:
        """
        Run a command that must succeed; its stdout.
        """
        code, out, err = await self.gamenet(*argv)
        if code != 0:
            self.master.fail(f"gamenet {' '.join(argv)} ended with {code}: {err}")
        return out

    async def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
        """
        A raw admin call: its status and decoded body.
        """
        response = await self.api.http.request(method, self.api.master.url + path, data=body,
                                               headers={"Authorization": f"Bearer {TOKEN}"})
        content = await response.content()
        await self.sleep(0.01)
        return response.code, json.loads(content)

    # Waiting

    async def wait_servers(self, expected: tuple[str, ...], changed: dict[str, int] | None = None) -> dict[str, Any]:
        """
        Wait until exactly C{expected} are listed, each up and ready, and
        each server of C{changed} runs another process than the pid given.
        """
        changed = changed or {}

        async def ready() -> dict[str, Any] | None:
            self.master.fail_if_exited()
            records = {record["id"]: record for record in await self.api.servers()}
            if sorted(records) != sorted(expected):
                return None
            if not all(r["state"] == "up" and r["ready"] for r in records.values()):
                return None
            if any(records[s]["pid"] in (None, pid) for s, pid in changed.items()):
                return None
            return records

        return await self.eventually(ready, START_TIMEOUT, f"{', '.join(expected)} up and ready")

    async def wait_state(self, server: str, state: str) -> dict[str, Any]:
        async def reached() -> dict[str, Any] | None:
            record = await self.api.server(server)
            return record if record["state"] == state else None

        return await self.eventually(reached, CHANGE_TIMEOUT, f"{server} {state}")

    # Chat clients

    async def enter(self, frontend: str, username: str, rid: str, on_chat: Any = None) -> Client:
        client = await self.connect(frontend, "tcp")
        if on_chat is not None:
            client.on("onChat", on_chat)
        answer = await self.request(client, "connector.entryHandler.enter", {"username": username, "rid": rid})
        if "users" not in answer:
            raise AssertionError(f"{username} could not enter {rid} on {frontend}: {answer}")
        return client

    async def chat_in(self, connector: str, rid: str) -> bool:
        """
        One user enters room C{rid} through C{connector}, sends a message and gets it back.
        """
        got: Deferred[Any] = Deferred()
        client = await self.enter(connector, f"probe-{time.monotonic_ns()}", rid,
                                  lambda msg: got.called or got.callback(msg))
        try:
            await self.request(client, "chat.chatHandler.send", {"content": rid, "target": "*"})
            return (await got.addTimeout(5, reactor))["msg"] == rid
        finally:
            await self.close(client)


class CommandTests(OperationsTestCase):
    """
    Every command against the running cluster.
    """

    async def test_listAndStatus(self) -> None:
        """
        C{gamenet list}, run as the installed console script, shows the five
        servers up with the pids the master started; C{--type} and C{--json}
        select and format; C{status} shows the cluster and one server.
        """
        children = self.master.children()
        code, out, err = await self.gamenet_process("list")
        self.assertEqual((code, err), (0, ""))
        header, *rows = out.splitlines()
        self.assertEqual(header.split()[:4], ["ID", "TYPE", "STATE", "PID"])
        self.assertEqual({row.split()[0]: row.split()[1:4] for row in rows},
                         {s: [s.rsplit("-", 1)[0], "up", str(children[s])] for s in SERVERS})

        records = json.loads(await self.succeeds("list", "--type", "chat", "--json"))["servers"]
        self.assertEqual({r["id"]: (r["type"], r["pid"], r["ready"]) for r in records},
                         {s: ("chat", children[s], True) for s in CHATS})

        out = await self.succeeds("status")
        self.assertTrue(out.startswith("cluster operations: 5 of 5 servers up; master pid "), out)
        out = await self.succeeds("status", "connector-1")
        self.assertTrue(out.startswith("connector-1 (connector, frontend) on 127.0.0.1: up, ready"), out)

    async def test_figures(self) -> None:
        """
        The records are what the servers report over their links to the
        master: host, ports, uptime, the connected client and its session on
        its connector, requests per second where the chat goes, CPU and RSS;
        a server that crashes counts a restart. A stopped connector is
        C{draining} while its client is connected, which is kicked C{server
        shutting down} after C{drain_timeout}; then it is C{down}.
        """
        children = self.master.children()
        rid = room_on("chat-1")
        alice = await self.enter("connector-1", "alice", rid)

        async def busy() -> dict[str, Any] | None:
            await self.request(alice, "chat.chatHandler.send", {"content": "hello", "target": "*"})
            records = {record["id"]: record for record in await self.api.servers()}
            serving = ("connector-1", "chat-1")
            if any(not records[s]["rps"] for s in serving) or records["connector-1"]["clients"] != 1:
                return None
            if records["connector-2"]["clients"] != 0:  # the probes of setUp have left
                return None
            return records

        records = await self.eventually(busy, CHANGE_TIMEOUT, "the figures of alice's chat")
        for server, record in records.items():
            ports = {"node": self.ports[f"{server}.node"], "metrics": self.ports[f"{server}.metrics"],
                     "client": self.ports.get(f"{server}.client", 0)}
            self.assertEqual((record["host"], {k: record["ports"][k] for k in ports}), ("127.0.0.1", ports))
            self.assertEqual((record["pid"], record["state"], record["restarts"]), (children[server], "up", 0))
            self.assertGreater(record["uptime"], 0)
            self.assertGreater(record["rss"], 2**20)
            self.assertGreaterEqual(record["cpu"], 0)
            self.assertEqual(record["errors_per_second"], 0)
        self.assertEqual((records["connector-1"]["clients"], records["connector-1"]["sessions"]), (1, 1))
        self.assertEqual(records["connector-2"]["sessions"], 0)
        self.assertEqual(records["gate-1"]["sessions"], 0)
        self.assertIsNotNone(records["chat-1"]["p99"])

        os.kill(children["chat-2"], signal.SIGKILL)

        async def restarted() -> dict[str, Any] | None:
            record = await self.api.server("chat-2")
            return record if record["restarts"] == 1 and record["state"] == "up" else None

        record = await self.eventually(restarted, CHANGE_TIMEOUT, "chat-2 to be restarted")
        self.assertNotIn(record["pid"], (None, children["chat-2"]))

        self.assertEqual(await self.succeeds("stop", "connector-1"), "stopping: connector-1\n")
        self.assertEqual((await self.api.server("connector-1"))["state"], "draining")
        self.assertEqual(await alice.closed.addTimeout(DRAIN_TIMEOUT + 15, reactor), KICK_REASON)
        await self.wait_state("connector-1", "down")

    async def test_refusals(self) -> None:
        """
        A wrong token is one line and status 1, a missing one a 401 (the
        master logs both with the peer's address); an unknown server is a
        404, a malformed body a 400, an unknown type a 400, a port in use a
        409, each with a sentence the command prints; nothing is half-applied
        (a selection naming one unknown server stops none).
        """
        children = self.master.children()
        self.assertEqual(sorted(children), sorted(SERVERS))
        code, out, err = await self.gamenet_process("list", "--token", "wrong")
        self.assertEqual((code, out, err), (1, "", "gamenet: the master refused the admin token (401)\n"))
        refusal = "admin API: refused GET /api/servers from 127.0.0.1: wrong admin token"
        await self.wait_until(lambda: refusal in self.master.log(), 5, "the refusal in the master's log")
        response = await self.api.http.request("POST", self.api.master.url + "/api/stop", data=b'{"all": true}')
        self.assertEqual((response.code, json.loads(await response.content())),
                         (401, {"error": "missing admin token (send the header Authorization: Bearer TOKEN)"}))
        refusal = "admin API: refused POST /api/stop from 127.0.0.1: missing admin token"
        await self.wait_until(lambda: refusal in self.master.log(), 5, "the refusal in the master's log")

        code, out, err = await self.gamenet("status", "chat-9")
        self.assertEqual((code, out), (1, ""))
        self.assertTrue(err.startswith("gamenet: ") and "chat-9" in err and len(err.splitlines()) == 1, err)
        self.assertEqual((await self.call("GET", "/api/servers/chat-9"))[0], 404)
        self.assertEqual((await self.call("POST", "/api/stop", b'{"servers": ["chat-9"]}'))[0], 404)
        code, _, err = await self.gamenet("stop", "chat-1", "chat-9")
        self.assertEqual((code, err), (1, "gamenet: no server chat-9 (servers: " + ", ".join(SERVERS) + ")\n"))
        code, _, err = await self.gamenet("remove", "chat-9")
        self.assertEqual(code, 1)
        self.assertIn("no server chat-9", err)
        code, _, err = await self.gamenet("restart", "--type", "area")
        self.assertEqual((code, err), (1, "gamenet: unknown server type area (types: chat, connector, gate)\n"))

        status, answer = await self.call("POST", "/api/stop", b'{"servers": [')
        self.assertEqual(status, 400)
        self.assertIsInstance(answer["error"], str)

        code, _, err = await self.gamenet("add", "id=area-1", "type=area", "host=127.0.0.1",
                                          f"node_port={self.ports['chat-3.node']}")
        self.assertEqual(code, 1)
        self.assertIn("unknown server type area", err)

        code, _, err = await self.gamenet("add", "id=chat-3", "type=chat", "host=127.0.0.1",
                                          f"node_port={self.ports['chat-1.node']}")
        self.assertEqual(code, 1)
        self.assertIn(str(self.ports["chat-1.node"]), err)
        spec = {"id": "chat-3", "type": "chat", "host": "127.0.0.1", "node_port": self.ports["chat-3.node"]}
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", self.ports["chat-3.node"]))
            taken.listen()
            status, answer = await self.call("POST", "/api/servers", json.dumps({"spec": spec}).encode())
            self.assertEqual(status, 409, answer)
            code, _, err = await self.gamenet("add", "--spec", json.dumps(spec))
            self.assertEqual((code, err), (1, f"gamenet: {answer['error']}\n"))
            self.assertIn("cannot be opened", err)
        code, _, err = await self.gamenet("add", "--section", "server:chat-1")
        self.assertEqual(code, 1)
        self.assertIn("chat-1", err)
        # Nothing was added, stopped or restarted.
        records = {r["id"]: r for r in await self.api.servers()}
        self.assertEqual(sorted(records), sorted(SERVERS))
        self.assertEqual({s: (r["state"], r["pid"]) for s, r in records.items()},
                         {s: ("up", children[s]) for s in SERVERS})
        self.assertEqual(self.master.children(), children)

    async def test_stopKillRestart(self) -> None:
        """
        stop drains a server and leaves it down; restart starts it again in a
        new process; kill ends it at once and leaves it down too; a restart
        by type restarts every server of the type; stop --all stops every server.
        """
        before = self.master.children()
        self.assertEqual(await self.succeeds("stop", "chat-2"), "stopping: chat-2\n")
        await self.wait_state("chat-2", "down")
        await self.wait_until(lambda: not alive(before["chat-2"]), CHANGE_TIMEOUT, "chat-2's process to end")
        self.assertNotIn("chat-2", self.master.children())
        self.assertEqual((await self.api.server("chat-2"))["pid"], None)

        self.assertEqual(await self.succeeds("restart", "chat-2"), "restarting: chat-2\n")
        records = await self.wait_servers(SERVERS, {"chat-2": before["chat-2"]})
        self.assertEqual(records["chat-2"]["pid"], self.master.children()["chat-2"])

        self.assertEqual(await self.succeeds("kill", "chat-1"), "killed: chat-1\n")
        await self.wait_until(lambda: not alive(before["chat-1"]), 10, "chat-1's process to end")
        await self.wait_state("chat-1", "down")
        self.assertEqual(await self.succeeds("restart", "chat-1"), "restarting: chat-1\n")
        await self.wait_servers(SERVERS, {"chat-1": before["chat-1"]})

        now = self.master.children()
        self.assertEqual(await self.succeeds("restart", "--type", "chat"), "restarting: chat-1, chat-2\n")
        await self.wait_servers(SERVERS, {chat: now[chat] for chat in CHATS})
        await self.eventually(lambda: self.chat_in("connector-1", room_on("chat-1")), CHANGE_TIMEOUT,
                              "chat after the restart")

        out = await self.succeeds("stop", "--all")
        self.assertEqual(set(out.strip().removeprefix("stopping: ").split(", ")), set(SERVERS))
        for server in SERVERS:
            await self.wait_state(server, "down")
        await self.wait_until(lambda: not self.master.children(), CHANGE_TIMEOUT, "every server's process to end")

    async def test_rollingStopsAtFirstFailure(self) -> None:
        """
        A rolling restart whose first server does not come back (its node
        port, changed in the cluster file, is held by another program) stops
        there with status 1 and one line naming it, and leaves the next
        server alone.
        """
        children = self.master.children()
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            self.master.write(cluster_text({**self.ports, "chat-1.node": taken.getsockname()[1]}))
            code, out, err = await self.gamenet("restart", "--type", "chat", "--rolling", "--wait", "15")
        self.assertEqual(code, 1, out)
        self.assertEqual(out, f"[1/2] restarting chat-1 (pid {children['chat-1']})\n")
        self.assertEqual(err.splitlines(), [err.strip()])
        self.assertTrue(err.startswith("gamenet: chat-1 did not come back within 15 s (state "), err)
        self.assertTrue(err.endswith("; stopped the rolling restart; not restarted: chat-2\n"), err)
        self.assertEqual(self.master.children().get("chat-2"), children["chat-2"])
        self.assertEqual((await self.api.server("chat-2"))["state"], "up")

    async def test_addAndRemove(self) -> None:
        """
        A server added from KEY=VALUE pairs, and one from a section added to
        the cluster file, start and serve their share of the chat rooms (as
        their routes' figures show); removed, they stop and leave the cluster.
        """
        out = await self.succeeds("add", "id=chat-3", "type=chat", "host=127.0.0.1",
                                  f"node_port={self.ports['chat-3.node']}",
                                  f"metrics_port={self.ports['chat-3.metrics']}")
        self.assertTrue(out.startswith("added chat-3 (chat)"), out)
        with open(self.master.config, "a", encoding="utf-8") as f:
            f.write(server_section("chat-4", self.ports))
        out = await self.succeeds("add", "--section", "server:chat-4")
        self.assertTrue(out.startswith("added chat-4 (chat)"), out)
        grown = (*SERVERS, "chat-3", "chat-4")
        await self.wait_servers(grown)
        self.assertIn("chat-3", self.master.children())
        self.assertIn("chat-4", self.master.children())
        all_chats = ("chat-1", "chat-2", "chat-3", "chat-4")
        for connector in CONNECTORS:
            for chat in ("chat-3", "chat-4"):
                rid = room_on(chat, "grown", all_chats)
                await self.eventually(lambda: self.chat_in(connector, rid), CHANGE_TIMEOUT, f"a room {rid} of {chat}")
        for chat in ("chat-3", "chat-4"):

            async def served() -> bool:
                routes = (await self.api.server(chat))["routes"]
                return routes.get("chat.chatHandler.send", {}).get("requests", 0) >= len(CONNECTORS)

            await self.eventually(served, CHANGE_TIMEOUT, f"{chat} to count the messages it served")

        added = self.master.children()
        self.assertEqual(await self.succeeds("remove", "chat-3"), "removed chat-3\n")
        self.assertEqual(await self.succeeds("remove", "chat-4"), "removed chat-4\n")
        await self.wait_servers(SERVERS)
        for chat in ("chat-3", "chat-4"):
            await self.wait_until(lambda: not alive(added[chat]), CHANGE_TIMEOUT, f"{chat}'s process to end")
        code, _, err = await self.gamenet("status", "chat-3")
        self.assertEqual(code, 1, err)

    async def test_kickAndBroadcast(self) -> None:
        """
        C{kick --uid} kicks that user with the reason given, and no one else;
        C{broadcast} pushes to every client on every connector; C{sessions}
        lists a connector's sessions, and C{kick --server --session} kicks
        one of them.
        """
        rid = room_on("chat-1")
        alice = await self.enter("connector-1", "alice", rid)
        bob = await self.enter("connector-2", "bob", rid)
        notices: dict[str, list[Any]] = {"alice": [], "bob": []}
        alice.on("onNotice", notices["alice"].append)
        bob.on("onNotice", notices["bob"].append)

        out = await self.succeeds("broadcast", "onNotice", '{"text": "maintenance"}')
        self.assertEqual(out, "sent to 2 sessions\n")
        await self.wait_until(lambda: all(notices.values()), 10, "the broadcast to arrive")
        self.assertEqual(notices, {"alice": [{"text": "maintenance"}], "bob": [{"text": "maintenance"}]})

        self.assertEqual(await self.succeeds("kick", "--uid", f"alice*{rid}", "--reason", "see you tomorrow"),
                         "kicked 1 session\n")
        self.assertEqual(await alice.closed.addTimeout(10, reactor), "see you tomorrow")
        self.assertEqual(alice.kick_reason, "see you tomorrow")
        self.assertIsNone(bob.kick_reason)
        await self.request(bob, "chat.chatHandler.send", {"content": "still here", "target": "*"})
        self.assertEqual(await self.succeeds("kick", "--uid", "nobody*nowhere"), "kicked 0 sessions\n")

        listed = json.loads(await self.succeeds("sessions", "connector-2", "--uid", f"bob*{rid}", "--json"))
        self.assertEqual((listed["server"], listed["total"]), ("connector-2", 1))
        session = listed["sessions"][0]
        self.assertEqual((session["uid"], session["address"], session["transport"]), (f"bob*{rid}", "127.0.0.1", "tcp"))
        header, *rows = (await self.succeeds("sessions", "connector-2")).splitlines()
        self.assertEqual(header.split(), ["SESSION", "UID", "ADDRESS", "TRANSPORT", "CONNECTED"])
        self.assertIn([str(session["id"]), f"bob*{rid}", "127.0.0.1", "tcp"], [row.split()[:4] for row in rows])
        self.assertEqual(await self.succeeds("kick", "--server", "connector-2", "--session", str(session["id"])),
                         "kicked 1 session\n")
        self.assertEqual(await bob.closed.addTimeout(10, reactor), "kicked by admin")
        code, _, err = await self.gamenet("kick", "--server", "connector-2", "--session", str(session["id"]))
        self.assertEqual((code, err), (1, f"gamenet: no session {session['id']} on connector-2\n"))
        code, _, err = await self.gamenet("sessions", "chat-1")
        self.assertEqual((code, err), (1, "gamenet: server chat-1 is not a frontend: it has no client sessions\n"))


class BlockTests(OperationsTestCase):
    """
    The block list on every frontend, across a frontend restart.
    """

    async def refused(self, frontend: str) -> bool:
        """
        Whether a client connection from 127.0.0.1 to C{frontend} fails to complete its handshake.
        """
        try:
            client = await self.connect(frontend, "tcp")
        except Exception:
            return True
        await self.close(client)
        return False

    async def accepted(self, frontend: str) -> bool:
        return not await self.refused(frontend)

    async def test_block(self) -> None:
        """
        C{block 127.0.0.1} kicks the clients connected from it and makes
        every frontend refuse connections from it, still after a frontend
        restarts and after the whole cluster restarts; C{unblock} lets them
        in again.
        """
        for frontend in FRONTENDS:
            self.assertFalse(await self.refused(frontend))
        connected = await self.connect("connector-2", "tcp")
        self.assertEqual(await self.succeeds("block", "127.0.0.1"), "127.0.0.1/32\n")
        self.assertEqual(await connected.closed.addTimeout(10, reactor), "address blocked")
        self.assertEqual(await self.succeeds("block"), "127.0.0.1/32\n")
        for frontend in FRONTENDS:
            await self.eventually(lambda: self.refused(frontend), 10, f"{frontend} to refuse 127.0.0.1")

        before = self.master.children()["connector-1"]
        await self.succeeds("restart", "connector-1")
        await self.wait_servers(SERVERS, {"connector-1": before})
        self.assertTrue(await self.refused("connector-1"))

        # The whole cluster stopped and started again: still blocked, as soon as each frontend is up.
        self.master.process.send_signal(signal.SIGTERM)
        await self.wait_until(lambda: self.master.process.poll() is not None, STOP_TIMEOUT, "the master to exit")
        await self.wait_until(lambda: not self.master.ours(), STOP_TIMEOUT, "every server's process to end")
        self.master.start(STOP_TIMEOUT)
        await self.wait_servers(SERVERS)
        for frontend in FRONTENDS:
            self.assertTrue(await self.refused(frontend), frontend)

        self.assertEqual(await self.succeeds("unblock", "127.0.0.1"), "no address is blocked\n")
        for frontend in FRONTENDS:
            await self.eventually(lambda: self.accepted(frontend), 10, f"{frontend} to accept 127.0.0.1")


class LoadTests(OperationsTestCase):
    """
    Rolling restarts under chat load: 4 rooms of 5 users, each sending two
    messages a second.
    """

    timeout = 180

    async def start_users(self, rooms: int = 4, per_room: int = 5) -> list[ChatUser]:
        """
        C{rooms} rooms, half on each chat server, of C{per_room} users each,
        spread over both connectors, all sending.
        """
        rids = [room_on(CHATS[n % 2], f"load{n}-") for n in range(rooms)]
        users = [ChatUser(self, f"u{n}", rids[n % rooms], CONNECTORS[n % 2]) for n in range(rooms * per_room)]
        await gatherResults([Deferred.fromCoroutine(user.login()) for user in users])
        self.addCleanup(lambda: [user.stop() for user in users])
        for user in users:
            user.running = Deferred.fromCoroutine(user.send_loop())
        return users

    async def stop_users(self, users: list[ChatUser]) -> None:
        for user in users:
            user.stop()
        await gatherResults([user.running for user in users])

    async def test_chatRollingRestart(self) -> None:
        """
        C{gamenet restart --type chat --rolling} restarts chat-1, then chat-2,
        each back before the next; meanwhile no request fails and every
        acknowledged message reaches everyone in its room.
        """
        before = self.master.children()
        users = await self.start_users()
        await self.wait_until(lambda: all(user.acked for user in users), 20, "every user to send")
        started = time.monotonic()
        code, out, err = await self.gamenet("restart", "--type", "chat", "--rolling", "--wait", "60")
        self.assertEqual((code, err), (0, ""), out)
        self.assertBusy(users, started, time.monotonic())
        self.assertEqual([line.split()[2] for line in out.splitlines() if "restarting" in line], list(CHATS))
        await self.sleep(1)
        await self.stop_users(users)
        self.assertNotEqual({c: self.master.children().get(c) for c in CHATS}, {c: before[c] for c in CHATS})

        self.assertEqual([f for user in users for f in user.failed], [])
        by_room: dict[str, list[ChatUser]] = {}
        for user in users:
            by_room.setdefault(user.rid, []).append(user)

        def missing() -> list[tuple[str, str]]:
            return [(member.name, message) for members in by_room.values() for sender in members
                    for message in sender.acked for member in members if message not in member.received]

        deadline = time.monotonic() + 15
        while missing() and time.monotonic() < deadline:
            await self.sleep(0.2)
        lost = missing()
        self.assertEqual(lost[:20], [], f"{len(lost)} acknowledged messages not received")

    async def test_connectorRollingRestart(self) -> None:
        """
        C{gamenet restart --type connector --rolling}: the clients of the
        connector being restarted are kicked C{server shutting down} and log
        in again; no request of any other client fails.
        """
        users = await self.start_users()
        await self.wait_until(lambda: all(user.acked for user in users), 20, "every user to send")
        started = time.monotonic()
        code, out, err = await self.gamenet("restart", "--type", "connector", "--rolling", "--wait", "60")
        self.assertEqual((code, err), (0, ""), out)
        self.assertBusy(users, started, time.monotonic())
        await self.wait_until(lambda: all(user.connector and user.sent_since_login for user in users), 30,
                              "every user to be back and sending")
        await self.stop_users(users)

        # Every user was on a restarted connector at some point: each was kicked with the reason, and came back.
        for user in users:
            self.assertIn(KICK_REASON, user.kicks, user.name)
            self.assertEqual(set(user.kicks), {KICK_REASON}, user.name)
        # The only failed requests are those of connections being kicked.
        for user in users:
            for connector, closing, error in user.failed:
                self.assertTrue(closing, f"{user.name} on {connector}: {error}")

    def assertBusy(self, users: list[ChatUser], start: float, end: float) -> None:
        """
        The load went on while the restart ran: at least half the messages
        the users were to send between C{start} and C{end} were acknowledged.
        """
        acked = sum(1 for user in users for sent in user.acked_at if start <= sent <= end)
        expected = len(users) * ChatUser.rate * (end - start)
        self.assertGreater(acked, expected / 2, f"{acked} messages acknowledged during the restart")


class ChatUser:
    """
    One chat user of the load: enters its room through a connector, sends
    C{rate} messages a second, and logs in again (through the gate) when kicked.

    @ivar acked: the messages the server acknowledged.
    @ivar acked_at: when each of them was sent (C{time.monotonic()}).
    @ivar received: the messages pushed to this user (C{onChat}).
    @ivar failed: (connector, whether the connection was closing, error) of each failed request.
    @ivar kicks: the kick reasons this user got.
    """

    rate = 2.0

    def __init__(self, test: OperationsTestCase, name: str, rid: str, connector: str) -> None:
        self.test = test
        self.name = name
        self.rid = rid
        self.connector: str | None = connector
        self.client: Client | None = None
        self.acked: list[str] = []
        self.acked_at: list[float] = []
        self.received: set[str] = set()
        self.failed: list[tuple[str, bool, str]] = []
        self.kicks: list[str] = []
        self.sent_since_login = 0
        self.stopping = False
        self.running: Deferred[None] | None = None
        self.n = 0

    def stop(self) -> None:
        self.stopping = True

    async def login(self) -> None:
        assert self.connector is not None
        client = await self.test.enter(self.connector, self.name, self.rid, self.on_chat)
        self.client = client
        self.sent_since_login = 0
        client.closed.addCallback(self.on_closed, client)

    def on_chat(self, msg: Any) -> None:
        self.received.add(msg["msg"])

    def on_closed(self, reason: str, client: Client) -> None:
        if client.kick_reason is not None:
            self.kicks.append(client.kick_reason)

    async def relogin(self) -> None:
        """
        Ask the gate for a connector and enter again, until it works (bounded).
        """
        self.connector = None
        deadline = time.monotonic() + 40
        while not self.stopping:
            try:
                gate = await self.test.connect("gate-1", "tcp")
                entry = await self.test.request(gate, "gate.gateHandler.queryEntry", {"uid": self.name})
                await self.test.close(gate)
                port = entry["port"]
                self.connector = next(c for c in CONNECTORS if self.test.port(c) == port)
                await self.login()
                return
            except Exception as e:
                self.connector = None
                if time.monotonic() > deadline:
                    raise AssertionError(f"{self.name} could not log in again: {e!r}")
                await self.test.sleep(0.5)

    async def send_loop(self) -> None:
        while not self.stopping:
            client = self.client
            assert client is not None
            if client.closed.called:
                await self.relogin()
                continue
            self.n += 1
            message = f"{self.name}:{self.n}"
            started = time.monotonic()
            try:
                await self.test.request(client, "chat.chatHandler.send", {"content": message, "target": "*"})
            except Exception as e:
                self.failed.append((self.connector or "?", client.closed.called or client.kick_reason is not None,
                                    repr(e)))
            else:
                self.acked.append(message)
                self.acked_at.append(started)
                self.sent_since_login += 1
            await self.test.sleep(max(0.0, 1 / self.rate - (time.monotonic() - started)))
        if self.client is not None:
            await self.test.close(self.client)


class TLSTests(OperationsTestCase):
    """
    The admin API over TLS.
    """

    admin_tls = True

    async def test_https(self) -> None:
        """
        With C{admin_tls_cert}, the command reading the cluster file calls
        the master over HTTPS, trusting that certificate; plain HTTP to the
        same port gets no answer, in one line.
        """
        code, out, err = await self.gamenet_process("list")
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(sorted(row.split()[0] for row in out.splitlines()[1:]), sorted(SERVERS))
        plain = f"http://127.0.0.1:{self.ports['admin']}"
        code, out, err = await self.gamenet_process("list", "--url", plain)
        self.assertEqual((code, out), (1, ""))
        self.assertTrue(err.startswith(f"gamenet: cannot reach the master at {plain}: "), err)
        self.assertEqual(len(err.splitlines()), 1, err)


class DefaultClusterTests(ClusterTestCase):
    """
    The default C{etc/cluster.ini} (with free ports), as a new user runs it.
    """

    async def setUp(self) -> None:
        self.master = MasterProcess(self)
        default_cluster(self.master.directory)
        self.master.start(STOP_TIMEOUT)
        self.clients = []

    async def test_list(self) -> None:
        """
        C{gamenet list --config etc/cluster.ini} shows the five chat servers up.
        """
        async def listed() -> dict[str, list[str]] | None:
            code, out, err = await gamenet_script(self.master.directory, "list", "--config", self.master.config)
            rows = {row.split()[0]: row.split()[1:3] for row in out.splitlines()[1:]}
            return rows if code == 0 and all(state == "up" for _, state in rows.values()) else None

        rows = await self.eventually(listed, START_TIMEOUT, "gamenet list to show every server up")
        self.assertEqual(rows, {"gate-1": ["gate", "up"], "connector-1": ["connector", "up"],
                                "connector-2": ["connector", "up"], "chat-1": ["chat", "up"],
                                "chat-2": ["chat", "up"]})


class StartTests(TestCase):
    """
    What the master refuses at start.
    """

    def test_nonLoopbackAdmin(self) -> None:
        """
        An admin API on an address that is not loopback, without TLS, stops
        the master at start: one line naming the file, section and key, and a
        non-zero exit status.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        names = ["master", "admin", *(f"{s}.{port}" for s in SERVERS for port in PORTS),
                 *(f"{s}.client" for s in FRONTENDS)]
        ports = dict(zip(names, free_ports(len(names))))
        config = os.path.join(directory, "cluster.ini")
        with open(config, "w", encoding="utf-8") as f:
            f.write(cluster_text(ports, admin_host="0.0.0.0"))
        done = subprocess.run([*twistd_command(), "-n", "--pidfile=", "gamenet", "--config", config],
                              cwd=directory, env=environ(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=60)
        output = done.stdout + done.stderr
        self.assertNotEqual(done.returncode, 0, output)
        problem = (f"{config} [cluster] admin_host: 0.0.0.0 is not a loopback address: the admin API listens "
                   "there only over TLS (set admin_tls_cert and admin_tls_key)")
        self.assertEqual([line for line in output.splitlines() if "admin_host" in line], [problem])
        self.assertNotIn("Traceback", output)
