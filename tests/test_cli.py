"""
The C{gamenet} operations command line (L{gamenet.admin.cli}) against a
scripted master: a web resource answering the admin API's calls, reached
through C{treq.testing.StubTreq} (real HTTP over memory, no port), time from
a L{Clock}. Each test pins the request a command sends, what it prints (a
table, or the JSON answer with C{--json}) and its exit status.
"""

from __future__ import annotations

import io
import json
import os
import sys
from typing import Any

from treq.testing import StubTreq
from twisted.internet import utils
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from zope.interface import implementer
from zope.interface.verify import verifyObject

from gamenet import cli as console
from gamenet.admin import cli
from gamenet.admin._api import AdminApi
from gamenet.admin._client import Master, http_client, locate
from gamenet.admin.fleet import IFleet
from gamenet.errors import GamenetError
from gamenet.testing import free_ports

URL = "http://127.0.0.1:3006"
TOKEN = "test-token"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

def record(server_id: str, server_type: str, **values: Any) -> dict[str, Any]:
    """
    A server record as C{GET /api/servers} lists it.
    """
    base = {"id": server_id, "type": server_type, "host": "127.0.0.1", "ports": {"node": 6050, "client": 0},
            "pid": 1234, "state": "up", "ready": True, "uptime": 3725.0, "restarts": 0, "clients": 0,
            "sessions": 0, "rps": 12.345, "errors_per_second": 0.0, "p50": 0.0011, "p99": 0.0042, "cpu": 3.25,
            "rss": 50 * 2**20, "frontend": False}
    return {**base, **values}


class FakeMaster(Resource):
    """
    The admin API as scripted by a test: C{answers[(method, path)]} is
    C{(status, body)} or a function of the decoded request body giving one;
    anything else is a 404. A request without C{Bearer TOKEN} is a 401.

    @ivar requests: every request seen: (method, path with query, decoded body).
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.answers: dict[tuple[str, str], Any] = {}
        self.requests: list[tuple[str, str, Any]] = []

    def render(self, request: Any) -> bytes:
        method, path = request.method.decode(), request.uri.decode()
        content = request.content.read()
        body = json.loads(content) if content else None
        self.requests.append((method, path, body))
        request.setHeader(b"content-type", b"application/json")
        if request.getHeader(b"authorization") != f"Bearer {TOKEN}".encode():
            code, answer = 401, {"error": "a valid admin token is required"}
        else:
            scripted = self.answers.get((method, path), (404, {"error": f"no call {method} {path}"}))
            code, answer = scripted(body) if callable(scripted) else scripted
        request.setResponseCode(code)
        return answer if isinstance(answer, bytes) else json.dumps(answer).encode()


class CliTestsMixin:
    """
    C{self.gamenet(...)} runs one command against C{self.master}.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.master = FakeMaster()
        self.http: Any = StubTreq(self.master)

    def gamenet(self, *argv: str, token: str = TOKEN, environ: dict[str, str] | None = None,
                limit: float = 600.0) -> tuple[int, str, str]:
        """
        Run C{gamenet ARGV --url URL --token TOKEN}, moving the clock until it
        ends (at most C{limit} seconds); its exit status, stdout and stderr.
        """
        out, err = io.StringIO(), io.StringIO()
        args = [*argv, "--url", URL] + (["--token", token] if token else [])
        d = Deferred.fromCoroutine(cli.run(args, self.clock, out, err, environ or {}, self.http))
        while not d.called and self.clock.seconds() < limit:
            self.clock.advance(0.25)
        return self.successResultOf(d), out.getvalue(), err.getvalue()

    def script(self, method: str, path: str, answer: Any, code: int = 200) -> None:
        self.master.answers[method, path] = answer if callable(answer) else (code, answer)

    def assertFails(self, result: tuple[int, str, str], line: str, code: int = 1) -> None:
        """
        The command ended with C{code} after printing only C{line} on stderr.
        """
        status, out, err = result
        self.assertEqual((status, out, err), (code, "", line + "\n"))


class ListAndStatusTests(CliTestsMixin, SynchronousTestCase):
    """
    C{gamenet list} and C{gamenet status}.
    """

    servers = [record("chat-1", "chat"),
               record("connector-1", "connector", frontend=True, clients=7, sessions=5, pid=99,
                      uptime=59.9, rps=0.0, p99=None, cpu=None, rss=None, state="draining", ready=False)]

    def test_list(self) -> None:
        """
        C{gamenet list} sends C{GET /api/servers} with the token and prints a
        table: id, type, state, pid, uptime, clients, sessions, requests/s,
        p99, CPU and RSS, C{-} for what is not known.
        """
        self.script("GET", "/api/servers", {"servers": self.servers})
        code, out, err = self.gamenet("list")
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(self.master.requests, [("GET", "/api/servers", None)])
        header, first, second = out.splitlines()
        self.assertEqual(header.split(), ["ID", "TYPE", "STATE", "PID", "UPTIME", "CLIENTS", "SESSIONS", "RPS", "P99",
                                          "CPU", "RSS"])
        self.assertEqual(first.split(), ["chat-1", "chat", "up", "1234", "1h02m", "0", "0", "12.3", "4.2ms", "3.2%",
                                         "50.0M"])
        self.assertEqual(second.split(), ["connector-1", "connector", "draining", "99", "59s", "7", "5", "0.0", "-",
                                          "-", "-"])

    def test_listColumnsAligned(self) -> None:
        """
        Every column of the table starts where its header does.
        """
        self.script("GET", "/api/servers", {"servers": self.servers})
        _, out, _ = self.gamenet("list")
        header, *rows = out.splitlines()
        for row in rows:
            # Numbers are right-aligned: each header's last letter sits over its column's last digit.
            for name in ("PID", "CLIENTS", "RPS", "RSS"):
                end = header.index(name) + len(name)
                self.assertNotEqual(row[end - 1], " ", f"{name} in {row!r}")
                self.assertIn(row[end:end + 1], ("", " "))

    def test_listType(self) -> None:
        """
        C{--type chat} asks for one type only.
        """
        self.script("GET", "/api/servers?type=chat", {"servers": self.servers[:1]})
        code, out, _ = self.gamenet("list", "--type", "chat")
        self.assertEqual(code, 0)
        self.assertEqual(self.master.requests, [("GET", "/api/servers?type=chat", None)])
        self.assertEqual(len(out.splitlines()), 2)

    def test_listJSON(self) -> None:
        """
        C{--json} prints the API's answer as JSON.
        """
        self.script("GET", "/api/servers", {"servers": self.servers})
        code, out, _ = self.gamenet("list", "--json")
        self.assertEqual((code, json.loads(out)), (0, {"servers": self.servers}))

    def test_statusCluster(self) -> None:
        """
        C{gamenet status} prints the cluster's line from C{GET /api/cluster}.
        """
        self.script("GET", "/api/cluster", {"name": "chat", "master": {"pid": 42, "uptime": 90061},
                                            "servers": 5, "up": 4})
        code, out, _ = self.gamenet("status")
        self.assertEqual(code, 0)
        self.assertEqual(out, "cluster chat: 4 of 5 servers up; master pid 42, up 1d01h\n")

    def test_statusServer(self) -> None:
        """
        C{gamenet status ID} prints the server and a table of its routes.
        """
        routes = {"chat.chatHandler.send": {"requests": 120, "errors": 1, "rps": 2.0, "p50": 0.001, "p99": 0.0125}}
        self.script("GET", "/api/servers/chat-1", {**record("chat-1", "chat"), "routes": routes})
        code, out, _ = self.gamenet("status", "chat-1")
        self.assertEqual(code, 0)
        lines = out.splitlines()
        self.assertEqual(lines[0], "chat-1 (chat) on 127.0.0.1: up, ready")
        self.assertIn("pid 1234, up 1h02m, restarts 0, ports: node 6050", lines[1])
        self.assertIn("p99 4.2ms", lines[2])
        self.assertEqual(lines[4].split(), ["ROUTE", "REQUESTS", "ERRORS", "RPS", "P50", "P99"])
        self.assertEqual(lines[5].split(), ["chat.chatHandler.send", "120", "1", "2.0", "1.0ms", "12.5ms"])

    def test_statusUnknownServer(self) -> None:
        """
        A 4xx answer prints the API's error sentence, and the exit status is 1.
        """
        self.script("GET", "/api/servers/chat-9", {"error": "unknown server chat-9"}, 404)
        self.assertFails(self.gamenet("status", "chat-9"), "gamenet: unknown server chat-9")

    def test_serverIdQuoted(self) -> None:
        """
        A server id is one path segment, whatever it holds.
        """
        self.gamenet("status", "a/b")
        self.assertEqual(self.master.requests, [("GET", "/api/servers/a%2Fb", None)])


class FailureTests(CliTestsMixin, SynchronousTestCase):
    """
    What a command prints when the call fails: one line, exit status 1.
    """

    def test_tokenRefused(self) -> None:
        """
        A 401 prints that the token was refused, whatever the body says.
        """
        self.assertFails(self.gamenet("list", token="wrong"), "gamenet: the master refused the admin token (401)")

    def test_unreachable(self) -> None:
        """
        A connection that fails prints where the master was looked for and why.
        """
        self.http = RefusingHTTP()
        self.assertFails(self.gamenet("list"), f"gamenet: cannot reach the master at {URL}: "
                                               "Connection was refused by other side: 111: Connection refused")

    def test_noAnswer(self) -> None:
        """
        A master that answers nothing within 10 seconds is unreachable.
        """
        self.http = SilentHTTP()
        self.assertFails(self.gamenet("list"), f"gamenet: cannot reach the master at {URL}: no answer within 10 s")
        self.assertEqual(self.clock.seconds(), 10)

    def test_errorWithoutSentence(self) -> None:
        """
        An error status without the API's JSON error names the status and the call.
        """
        self.script("GET", "/api/servers", b"<html>oops</html>", 500)
        self.assertFails(self.gamenet("list"), "gamenet: the master answered 500 to GET /api/servers")

    def test_notJSON(self) -> None:
        """
        A success that is not JSON is a failure too.
        """
        self.script("GET", "/api/servers", b"<html>a proxy page</html>")
        self.assertFails(self.gamenet("list"), "gamenet: the master's answer to GET /api/servers is not JSON")

    def test_usage(self) -> None:
        """
        Unknown options end with status 2 and the command's usage, and send nothing.
        """
        code, out, err = self.gamenet("list", "--nope")
        self.assertEqual((code, out), (2, ""))
        self.assertIn("usage: gamenet list", err)
        self.assertIn("unrecognized arguments: --nope", err)
        self.assertEqual(self.master.requests, [])

    def test_help(self) -> None:
        """
        C{--help} prints the options and ends with status 0.
        """
        stdout, sys.stdout = sys.stdout, io.StringIO()
        try:
            code, _, _ = self.gamenet("restart", "--help")
            text = sys.stdout.getvalue()
        finally:
            sys.stdout = stdout
        self.assertEqual(code, 0)
        self.assertIn("--rolling", text)


class RefusingHTTP:
    """
    treq's interface, every connection refused.
    """

    def request(self, method: str, url: str, **kwargs: Any) -> Deferred[Any]:
        return fail(ConnectionRefusedError("111: Connection refused"))


class SilentHTTP:
    """
    treq's interface, no answer ever.
    """

    def request(self, method: str, url: str, **kwargs: Any) -> Deferred[Any]:
        return Deferred()


class ActionTests(CliTestsMixin, SynchronousTestCase):
    """
    sessions, stop, kill, restart, add, remove, kick, block, unblock and broadcast.
    """

    def test_stopSelections(self) -> None:
        """
        stop, kill and restart take server ids, C{--type} or C{--all}, sent as
        the body of C{POST /api/<command>}; the servers acted on are printed.
        """
        for command, verb in (("stop", "stopping"), ("kill", "killed"), ("restart", "restarting")):
            self.script("POST", f"/api/{command}", lambda body: (200, {"servers": body.get("servers", ["x-1", "x-2"])}))
            self.assertEqual(self.gamenet(command, "chat-1", "chat-2"), (0, f"{verb}: chat-1, chat-2\n", ""))
            self.assertEqual(self.gamenet(command, "--type", "chat"), (0, f"{verb}: x-1, x-2\n", ""))
            self.assertEqual(self.gamenet(command, "--all"), (0, f"{verb}: x-1, x-2\n", ""))
            self.assertEqual([body for _, _, body in self.master.requests],
                             [{"servers": ["chat-1", "chat-2"]}, {"type": "chat"}, {"all": True}])
            self.assertEqual({(method, path) for method, path, _ in self.master.requests},
                             {("POST", f"/api/{command}")})
            del self.master.requests[:]

    def test_stopJSON(self) -> None:
        """
        C{--json} prints the answer.
        """
        self.script("POST", "/api/stop", {"servers": ["chat-1"]})
        code, out, _ = self.gamenet("stop", "chat-1", "--json")
        self.assertEqual((code, json.loads(out)), (0, {"servers": ["chat-1"]}))

    def test_stopNeedsOneSelection(self) -> None:
        """
        Without a selection, or with two, nothing is sent and the exit status is 2.
        """
        for argv in (["stop"], ["kill", "chat-1", "--all"], ["restart", "--type", "chat", "--all"]):
            code, out, err = self.gamenet(*argv)
            self.assertEqual((code, out), (2, ""))
            self.assertIn("give server ids, --type TYPE or --all (one of them)", err)
        self.assertEqual(self.master.requests, [])

    def test_stopNothing(self) -> None:
        """
        A selection that matched no server is a failure.
        """
        self.script("POST", "/api/stop", {"servers": []})
        self.assertFails(self.gamenet("stop", "--type", "area"), "gamenet: no server to stop")

    def test_addSection(self) -> None:
        """
        C{add --section} asks the master to add a section of its cluster file.
        """
        self.script("POST", "/api/servers", {"server": record("chat-3", "chat", state="starting", pid=None)}, 201)
        self.assertEqual(self.gamenet("add", "--section", "server:chat-3"), (0, "added chat-3 (chat), starting\n", ""))
        self.assertEqual(self.master.requests, [("POST", "/api/servers", {"section": "server:chat-3"})])

    def test_addPairs(self) -> None:
        """
        C{add KEY=VALUE...} sends the pairs as a spec, values as written in a cluster file.
        """
        self.script("POST", "/api/servers", {"server": record("chat-3", "chat", state="starting")}, 201)
        code, _, _ = self.gamenet("add", "id=chat-3", "type=chat", "host=127.0.0.1", "node_port=6052")
        self.assertEqual(code, 0)
        self.assertEqual(self.master.requests[0][2], {"spec": {"id": "chat-3", "type": "chat", "host": "127.0.0.1",
                                                               "node_port": "6052"}})

    def test_addSpec(self) -> None:
        """
        C{add --spec JSON} sends the spec as given; C{--json} prints the record.
        """
        spec = {"id": "chat-3", "type": "chat", "host": "127.0.0.1", "node_port": 6052}
        answer = {"server": record("chat-3", "chat", state="starting")}
        self.script("POST", "/api/servers", answer, 201)
        code, out, _ = self.gamenet("add", "--spec", json.dumps(spec), "--json")
        self.assertEqual((code, json.loads(out)), (0, answer))
        self.assertEqual(self.master.requests[0][2], {"spec": spec})

    def test_addBadInput(self) -> None:
        """
        A spec that is not JSON, a pair without C{=}, or two ways at once are
        usage errors; nothing is sent.
        """
        for argv, text in ((["--spec", "{"], "--spec is not JSON"), (["id=x", "type"], "not KEY=VALUE: type"),
                           (["--section", "server:x", "id=x"], "one of them"), ([], "one of them")):
            code, _, err = self.gamenet("add", *argv)
            self.assertEqual(code, 2)
            self.assertIn(text, err)
        self.assertEqual(self.master.requests, [])

    def test_addRefused(self) -> None:
        """
        The master's 409 sentence is printed as it is.
        """
        self.script("POST", "/api/servers", {"error": "port 6052 on 127.0.0.1 is already in use"}, 409)
        self.assertFails(self.gamenet("add", "--section", "server:chat-3"),
                         "gamenet: port 6052 on 127.0.0.1 is already in use")

    def test_remove(self) -> None:
        """
        C{remove ID} sends C{DELETE /api/servers/ID}.
        """
        self.script("DELETE", "/api/servers/chat-3", {"removed": "chat-3"})
        self.assertEqual(self.gamenet("remove", "chat-3"), (0, "removed chat-3\n", ""))
        self.assertEqual(self.master.requests, [("DELETE", "/api/servers/chat-3", None)])

    def test_kick(self) -> None:
        """
        C{kick --uid} or C{kick --server --session}, with an optional reason.
        """
        self.script("POST", "/api/kick", lambda body: (200, {"kicked": 1 if "uid" in body else 0}))
        self.assertEqual(self.gamenet("kick", "--uid", "bob*room"), (0, "kicked 1 session\n", ""))
        self.assertEqual(self.gamenet("kick", "--server", "connector-1", "--session", "7", "--reason", "cheat"),
                         (0, "kicked 0 sessions\n", ""))
        self.assertEqual([body for _, _, body in self.master.requests],
                         [{"uid": "bob*room"}, {"server": "connector-1", "session": 7, "reason": "cheat"}])

    def test_sessions(self) -> None:
        """
        C{sessions ID} lists a frontend's sessions, the first C{--limit}
        (when given; else the server's default), of C{--uid} only if given; a table says when more are
        not shown, or that there is none; C{--json} prints the answer.
        """
        answer = {"server": "connector-1", "total": 3, "sessions": [
            {"id": 7, "uid": "bob*lobby", "address": "203.0.113.7", "transport": "tcp", "seconds": 75.0},
            {"id": 12, "uid": None, "address": "::1", "transport": "websocket", "seconds": 3.2}]}
        self.script("GET", "/api/servers/connector-1/sessions?limit=2", answer)
        self.assertEqual(self.gamenet("sessions", "connector-1", "--limit", "2"), (0, (
            "SESSION  UID        ADDRESS      TRANSPORT  CONNECTED\n"
            "7        bob*lobby  203.0.113.7  tcp            1m15s\n"
            "12       -          ::1          websocket         3s\n"
            "(2 of 3 sessions; --limit N for more)\n"), ""))
        self.script("GET", "/api/servers/connector-1/sessions?uid=bob%2Alobby",
                    {**answer, "total": 1, "sessions": answer["sessions"][:1]})
        code, out, _ = self.gamenet("sessions", "connector-1", "--uid", "bob*lobby", "--json")
        self.assertEqual((code, json.loads(out)["sessions"]), (0, answer["sessions"][:1]))
        self.script("GET", "/api/servers/gate-1/sessions", {"server": "gate-1", "total": 0, "sessions": []})
        self.assertEqual(self.gamenet("sessions", "gate-1"), (0, "no session on gate-1\n", ""))
        self.script("GET", "/api/servers/chat-1/sessions",
                    {"error": "server chat-1 is not a frontend: it has no client sessions"}, 400)
        self.assertFails(self.gamenet("sessions", "chat-1"),
                         "gamenet: server chat-1 is not a frontend: it has no client sessions")
        code, _, err = self.gamenet("sessions")
        self.assertEqual(code, 2)
        self.assertIn("the following arguments are required: ID", err)

    def test_kickBadInput(self) -> None:
        """
        A kick needs a uid, or a server and a session, not both.
        """
        for argv in ([], ["--server", "connector-1"], ["--session", "3"],
                     ["--uid", "u", "--server", "c", "--session", "1"]):
            code, _, err = self.gamenet("kick", *argv)
            self.assertEqual(code, 2, argv)
            self.assertIn("give --uid UID, or --server ID and --session N", err)
        self.assertEqual(self.master.requests, [])

    def test_blockList(self) -> None:
        """
        C{block} without networks lists the blocked ones.
        """
        self.script("GET", "/api/blocked", {"blocked": ["10.0.0.0/8", "192.0.2.7/32"]})
        self.assertEqual(self.gamenet("block"), (0, "10.0.0.0/8\n192.0.2.7/32\n", ""))
        self.script("GET", "/api/blocked", {"blocked": []})
        self.assertEqual(self.gamenet("block"), (0, "no address is blocked\n", ""))

    def test_blockAndUnblock(self) -> None:
        """
        C{block NETWORK...} and C{unblock NETWORK...} send the networks and
        print what is blocked after.
        """
        self.script("POST", "/api/block", {"blocked": ["127.0.0.1/32", "10.0.0.0/8"]})
        self.script("POST", "/api/unblock", {"blocked": ["10.0.0.0/8"]})
        self.assertEqual(self.gamenet("block", "127.0.0.1", "10.0.0.0/8"), (0, "127.0.0.1/32\n10.0.0.0/8\n", ""))
        self.assertEqual(self.gamenet("unblock", "127.0.0.1"), (0, "10.0.0.0/8\n", ""))
        self.assertEqual(self.master.requests, [("POST", "/api/block", {"networks": ["127.0.0.1", "10.0.0.0/8"]}),
                                               ("POST", "/api/unblock", {"networks": ["127.0.0.1"]})])

    def test_blockBadNetwork(self) -> None:
        """
        The master's 400 sentence for a bad network is printed.
        """
        self.script("POST", "/api/block", {"error": "'10.0.0.300' is not an address or network"}, 400)
        self.assertFails(self.gamenet("block", "10.0.0.300"), "gamenet: '10.0.0.300' is not an address or network")

    def test_broadcast(self) -> None:
        """
        C{broadcast ROUTE JSON} pushes a message to every client.
        """
        self.script("POST", "/api/broadcast", {"sessions": 3})
        self.assertEqual(self.gamenet("broadcast", "onNotice", '{"text": "maintenance"}'),
                         (0, "sent to 3 sessions\n", ""))
        self.assertEqual(self.master.requests, [("POST", "/api/broadcast", {"route": "onNotice",
                                                                           "msg": {"text": "maintenance"}})])
        code, _, err = self.gamenet("broadcast", "onNotice", "{")
        self.assertEqual(code, 2)
        self.assertIn("the message is not JSON", err)


class RollingRestartTests(CliTestsMixin, SynchronousTestCase):
    """
    C{gamenet restart --rolling}: one server at a time, each up, ready and
    running a new process before the next is restarted.
    """

    def setUp(self) -> None:
        super().setUp()
        names = ("chat-1", "chat-2", "chat-3")
        self.servers = {name: record(name, "chat", pid=100 + n) for n, name in enumerate(names)}
        self.back: dict[str, float] = {}
        self.script("GET", "/api/servers?type=chat", lambda body: (200, {"servers": list(self.servers.values())}))
        for name in self.servers:
            self.script("GET", f"/api/servers/{name}", lambda body, name=name: (200, self.servers[name]))
        self.script("POST", "/api/restart", self.restart)

    def restart(self, body: dict[str, Any]) -> tuple[int, Any]:
        """
        The master's restart: the server goes down; after C{self.back[id]}
        seconds it is up with a new pid, and ready a second later.
        """
        for name in body["servers"]:
            server = self.servers[name]
            server.update(state="draining", ready=False)
            if name in self.back:
                self.clock.callLater(self.back[name], server.update, state="up", pid=server["pid"] + 1000, ready=False)
                self.clock.callLater(self.back[name] + 1, server.update, ready=True)
        return 200, {"servers": body["servers"]}

    def restarts(self) -> list[str]:
        return [body["servers"][0] for method, _, body in self.master.requests if method == "POST"]

    def test_rolling(self) -> None:
        """
        Each server of the type is restarted only once the one before is back;
        progress is printed.
        """
        self.back = {"chat-1": 3, "chat-2": 5, "chat-3": 1}
        code, out, err = self.gamenet("restart", "--type", "chat", "--rolling")
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(self.restarts(), ["chat-1", "chat-2", "chat-3"])
        self.assertEqual(out.splitlines(), [
            "[1/3] restarting chat-1 (pid 100)",
            "[1/3] chat-1 is back: pid 1100, ready after 4.0 s",
            "[2/3] restarting chat-2 (pid 101)",
            "[2/3] chat-2 is back: pid 1101, ready after 6.0 s",
            "[3/3] restarting chat-3 (pid 102)",
            "[3/3] chat-3 is back: pid 1102, ready after 2.0 s",
        ])
        # chat-2 was restarted only after chat-1 was seen ready with its new pid.
        posts = [i for i, (method, _, _) in enumerate(self.master.requests) if method == "POST"]
        self.assertEqual(self.master.requests[posts[1] - 2][:2], ("GET", "/api/servers/chat-1"))

    def test_rollingStopsAtFirstFailure(self) -> None:
        """
        A server not back within C{--wait} seconds ends the run with status 1;
        the servers after it are not touched.
        """
        self.back = {"chat-1": 1}
        code, out, err = self.gamenet("restart", "--type", "chat", "--rolling", "--wait", "20")
        self.assertEqual(code, 1)
        self.assertEqual(self.restarts(), ["chat-1", "chat-2"])
        self.assertEqual(out.splitlines()[-1], "[2/3] restarting chat-2 (pid 101)")
        self.assertEqual(err, "gamenet: chat-2 did not come back within 20 s (state draining, ready no, pid 101); "
                              "stopped the rolling restart; not restarted: chat-3\n")
        self.assertEqual(self.clock.seconds(), 2.0 + 20)

    def test_rollingNeedsNewPid(self) -> None:
        """
        A server still reporting its old pid is not back, even if up and ready.
        """
        self.script("POST", "/api/restart", lambda body: (200, body))
        code, _, err = self.gamenet("restart", "chat-1", "--rolling", "--wait", "5")
        self.assertEqual(code, 1)
        self.assertIn("chat-1 did not come back within 5 s (state up, ready yes, pid 100)", err)

    def test_rollingIds(self) -> None:
        """
        Named servers are restarted in the order given; C{--json} prints the
        result on stdout and the progress on stderr.
        """
        self.back = {"chat-1": 1, "chat-3": 1}
        code, out, err = self.gamenet("restart", "chat-3", "chat-1", "--rolling", "--json")
        self.assertEqual(code, 0)
        self.assertEqual(self.restarts(), ["chat-3", "chat-1"])
        self.assertEqual(json.loads(out), {"servers": [{"id": "chat-3", "old_pid": 102, "pid": 1102, "seconds": 2.0},
                                                       {"id": "chat-1", "old_pid": 100, "pid": 1100, "seconds": 2.0}]})
        self.assertEqual(len(err.splitlines()), 4)

    def test_rollingBadWait(self) -> None:
        """
        C{--wait} without C{--rolling}, or not above 0, is a usage error; nothing is sent.
        """
        for argv, text in ((["--wait", "5"], "--wait goes with --rolling"),
                           (["--rolling", "--wait", "0"], "--wait must be a number of seconds above 0, not 0"),
                           (["--rolling", "--wait", "-3"], "--wait must be a number of seconds above 0, not -3"),
                           (["--rolling", "--wait", "inf"], "--wait must be a number of seconds above 0, not inf"),
                           (["--rolling", "--wait", "nan"], "--wait must be a number of seconds above 0, not nan")):
            code, out, err = self.gamenet("restart", "chat-1", *argv)
            self.assertEqual((code, out), (2, ""), argv)
            self.assertIn(f"gamenet restart: {text}", err)
        self.assertEqual(self.master.requests, [])

    def test_rollingNoServer(self) -> None:
        """
        A type without servers is a failure.
        """
        self.script("GET", "/api/servers?type=area", {"servers": []})
        self.assertFails(self.gamenet("restart", "--type", "area", "--rolling"), "gamenet: no server of type area")


@implementer(IFleet)
class RecordingFleet:
    """
    A fleet that records what the admin API asks of it and answers fixed values.

    @ivar calls: (operation, keyword arguments) of every call.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def _record(self, name: str, **kwargs: Any) -> None:
        self.calls.append((name, kwargs))

    def cluster(self) -> dict[str, Any]:
        return {"name": "chat", "master": {"pid": 1, "uptime": 5.0}, "servers": 1, "up": 1}

    def servers(self, server_type: str | None = None) -> list[dict[str, Any]]:
        self._record("servers", server_type=server_type)
        return [record("chat-1", "chat")]

    def server(self, server_id: str) -> dict[str, Any]:
        if server_id != "chat-1":
            raise GamenetError(f"no server {server_id} (servers: chat-1)", 404)
        return {**record("chat-1", "chat"), "routes": {}}

    def history(self, seconds: float) -> dict[str, Any]:
        return {"interval": 2, "servers": {}}

    def stop(self, servers: Any = None, type: Any = None, all: bool = False) -> list[str]:
        self._record("stop", servers=servers, type=type, all=all)
        return ["chat-1"]

    def kill(self, servers: Any = None, type: Any = None, all: bool = False) -> list[str]:
        self._record("kill", servers=servers, type=type, all=all)
        return ["chat-1"]

    def restart(self, servers: Any = None, type: Any = None, all: bool = False) -> list[str]:
        self._record("restart", servers=servers, type=type, all=all)
        return ["chat-1"]

    def add(self, section: Any = None, spec: Any = None) -> dict[str, Any]:
        self._record("add", section=section, spec=spec)
        return record("chat-3", "chat", state="starting")

    def remove(self, server_id: str) -> None:
        self._record("remove", server_id=server_id)

    def sessions(self, server_id: str, uid: Any = None, limit: int = 100) -> Deferred[dict[str, Any]]:
        self._record("sessions", server_id=server_id, uid=uid, limit=limit)
        return succeed({"server": server_id, "total": 0, "sessions": []})

    def kick(self, uid: Any = None, server: Any = None, session: Any = None, reason: str = "") -> Deferred[int]:
        self._record("kick", uid=uid, server=server, session=session, reason=reason)
        return succeed(1)

    def blocked(self) -> Deferred[list[str]]:
        return succeed(["10.0.0.0/8"])

    def block(self, networks: list[str]) -> Deferred[list[str]]:
        self._record("block", networks=networks)
        return succeed(networks)

    def unblock(self, networks: list[str]) -> Deferred[list[str]]:
        self._record("unblock", networks=networks)
        return succeed([])

    def broadcast(self, route: str, msg: Any) -> Deferred[int]:
        self._record("broadcast", route=route, msg=msg)
        return succeed(2)


class RealApiTests(CliTestsMixin, SynchronousTestCase):
    """
    Every command against the admin API's own resource (L{AdminApi}, its
    token check and its body checks) over a recording fleet: what each
    command sends is what the API takes.
    """

    def setUp(self) -> None:
        super().setUp()
        self.fleet = RecordingFleet()
        verifyObject(IFleet, self.fleet)
        self.http = StubTreq(AdminApi(self.fleet).resource(TOKEN))

    def test_commands(self) -> None:
        """
        Each command succeeds, and the fleet is asked what the command says.
        """
        commands = [
            (["list", "--type", "chat"], ("servers", {"server_type": "chat"})),
            (["stop", "chat-1"], ("stop", {"servers": ["chat-1"], "type": None, "all": False})),
            (["kill", "--type", "chat"], ("kill", {"servers": None, "type": "chat", "all": False})),
            (["restart", "--all"], ("restart", {"servers": None, "type": None, "all": True})),
            (["add", "--section", "server:chat-3"], ("add", {"section": "server:chat-3", "spec": None})),
            (["add", "id=chat-3", "type=chat"], ("add", {"section": None, "spec": {"id": "chat-3", "type": "chat"}})),
            (["remove", "chat-3"], ("remove", {"server_id": "chat-3"})),
            (["kick", "--uid", "bob"], ("kick", {"uid": "bob", "server": None, "session": None,
                                                 "reason": "kicked by admin"})),
            (["sessions", "connector-1", "--uid", "bob", "--limit", "5"],
             ("sessions", {"server_id": "connector-1", "uid": "bob", "limit": 5})),
            (["kick", "--server", "connector-1", "--session", "4", "--reason", "bye"],
             ("kick", {"uid": None, "server": "connector-1", "session": 4, "reason": "bye"})),
            (["block", "10.0.0.0/8"], ("block", {"networks": ["10.0.0.0/8"]})),
            (["unblock", "10.0.0.0/8"], ("unblock", {"networks": ["10.0.0.0/8"]})),
            (["broadcast", "onNotice", "[1, 2]"], ("broadcast", {"route": "onNotice", "msg": [1, 2]})),
        ]
        for argv, call in commands:
            code, _, err = self.gamenet(*argv)
            self.assertEqual((code, err), (0, ""), argv)
            self.assertEqual(self.fleet.calls[-1], call, argv)
        for argv in (["status"], ["status", "chat-1"], ["block"]):
            self.assertEqual(self.gamenet(*argv)[0], 0, argv)

    def test_refusals(self) -> None:
        """
        The API's own 401 and 404 become the command's one line.
        """
        self.assertFails(self.gamenet("list", token="wrong"), "gamenet: the master refused the admin token (401)")
        self.assertFails(self.gamenet("status", "chat-9"), "gamenet: no server chat-9 (servers: chat-1)")
        self.assertEqual(self.fleet.calls, [])


class LocateTests(SynchronousTestCase):
    """
    Where the command line finds the master and its token.
    """

    def cluster(self, extra: str = "admin_port = 3999\nadmin_token = file-token\n") -> str:
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as f:
            f.write(f"[cluster]\nname = t\nmaster_port = 3998\n{extra}\n"
                    "[server:chat-1]\ntype = chat\nhost = 127.0.0.1\nnode_port = 6050\n")
        return path

    def test_fromFile(self) -> None:
        """
        The file's admin address and token; no cluster secret is needed.
        """
        self.assertEqual(locate(self.cluster(), None, None, {}), Master("http://127.0.0.1:3999", "file-token"))

    def test_tokenOverrides(self) -> None:
        """
        C{$GAMENET_ADMIN_TOKEN}, then C{--token}, win over the file's token.
        """
        path = self.cluster()
        self.assertEqual(locate(path, None, None, {"GAMENET_ADMIN_TOKEN": "env"}).token, "env")
        self.assertEqual(locate(path, None, "given", {"GAMENET_ADMIN_TOKEN": "env"}).token, "given")

    def test_urlOverrides(self) -> None:
        """
        C{--url} replaces the file's address; with a token too the file is not read.
        """
        self.assertEqual(locate(self.cluster(), "http://h:1/", None, {}), Master("http://h:1", "file-token"))
        self.assertEqual(locate("/nonexistent.ini", "http://h:1", "t", {}), Master("http://h:1", "t"))

    def test_noToken(self) -> None:
        """
        C{--url} without a token, and no file to read one from, says where a token can come from.
        """
        error = self.assertRaises(cli.Failed, locate, "/nonexistent.ini", "http://h:1", None, {})
        self.assertTrue(error.args[0].startswith(
            "no admin token: give --token, set $GAMENET_ADMIN_TOKEN, or --config a cluster file with admin_token "
            "(/nonexistent.ini: cannot read"), error.args[0])

    def test_tls(self) -> None:
        """
        With C{admin_tls_cert} the address is HTTPS and that certificate is trusted.
        """
        path = self.cluster("admin_port = 3999\nadmin_token = t\nadmin_tls_cert = a.pem\nadmin_tls_key = a.key\n")
        cert = os.path.join(os.path.dirname(os.path.abspath(path)), "a.pem")
        self.assertEqual(locate(path, None, None, {}), Master("https://127.0.0.1:3999", "t", cert))

    def test_anyAddress(self) -> None:
        """
        An admin API listening on every address is called on loopback.
        """
        path = self.cluster("admin_port = 3999\nadmin_token = t\nadmin_host = ::\n"
                            "admin_tls_cert = a.pem\nadmin_tls_key = a.key\n")
        self.assertEqual(locate(path, None, None, {}).url, "https://[::1]:3999")

    def test_badCertificate(self) -> None:
        """
        A certificate to trust that cannot be read, or is not one, is one sentence.
        """
        error = self.assertRaises(cli.Failed, http_client, Clock(), "/nonexistent.pem")
        self.assertEqual(error.args[0],
                         "cannot read the admin API's certificate /nonexistent.pem: No such file or directory")
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("not a certificate")
        error = self.assertRaises(cli.Failed, http_client, Clock(), path)
        self.assertEqual(error.args[0], f"the admin API's certificate {path} is not a PEM certificate")

    def test_noAdminPort(self) -> None:
        """
        A file without C{admin_port} says so.
        """
        path = self.cluster("")
        self.assertEqual(self.assertRaises(cli.Failed, locate, path, None, None, {}).args[0],
                         f"{path} [cluster] admin_port: not set, so the master serves no admin API (or give --url)")

    def test_badFile(self) -> None:
        """
        A file that cannot be read gives the configuration's own sentence.
        """
        error = self.assertRaises(cli.Failed, locate, "/nonexistent.ini", None, None, {})
        self.assertIn("/nonexistent.ini: cannot read", error.args[0])


class ConsoleTests(TestCase):
    """
    The C{gamenet} console script.
    """

    def test_commands(self) -> None:
        """
        Every operations command is a command of C{gamenet}.
        """
        choices = next(a for a in cli.parser()._actions if a.dest == "command").choices
        self.assertEqual(set(console.COMMANDS) - {"bench"}, set(choices))

    def test_unknownCommand(self) -> None:
        """
        An unknown command prints the usage and ends with status 2.
        """
        code, text = self.console(["nope"], "stderr")
        self.assertEqual(code, 2)
        self.assertIn("gamenet list|status|sessions|stop|kill|restart|add|remove|kick|block|unblock|broadcast", text)

    def test_help(self) -> None:
        """
        C{gamenet --help} prints the usage on standard output and ends with
        status 0.
        """
        code, text = self.console(["--help"], "stdout")
        self.assertEqual(code, 0)
        self.assertIn("usage: gamenet bench", text)

    def console(self, argv: list[str], stream: str) -> tuple[int, str]:
        """
        Run C{gamenet} with C{argv}: its status and what it wrote to
        C{sys.<stream>}.
        """
        written = io.StringIO()
        self.patch(sys, stream, written)
        return console.main(argv), written.getvalue()

    async def test_unreachableProcess(self) -> None:
        """
        C{python -m gamenet.cli list} against a port where nothing listens
        prints one line and exits with status 1.
        """
        port, = free_ports(1)
        env = {**os.environ, "PYTHONPATH": REPO}
        out, err, code = await utils.getProcessOutputAndValue(
            sys.executable, ["-m", "gamenet.cli", "list", "--url", f"http://127.0.0.1:{port}", "--token", "t"],
            env=env, path=REPO)
        self.assertEqual((code, out), (1, b""))
        self.assertEqual(err.decode().splitlines(),
                         [f"gamenet: cannot reach the master at http://127.0.0.1:{port}: "
                          "Connection was refused by other side: 111: Connection refused"])
