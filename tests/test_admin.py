"""
Tests for L{gamenet.admin}: the admin API's routes and resource over a
L{FakeFleet} through C{treq.testing.StubTreq} (real HTTP in memory), the
dashboard's files, the admin keys of the cluster file, and the
L{AdminService} on a real port.
"""

from __future__ import annotations

import json
import os
import re
import socket

import attrs
import treq
from treq.testing import StubTreq
from twisted.internet import reactor
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool

from gamenet.admin import AdminService
from gamenet.admin._api import DASHBOARD, AdminApi
from gamenet.config import ConfigError, load, server_from_spec, server_spec
from gamenet.errors import GamenetError
from gamenet.testing import FakeFleet, FakeMaster, backend, cluster_config, free_ports, frontend

from .test_tls import write_certificate

TOKEN = "s3cret-token"


class ApiTestCase(SynchronousTestCase):
    """
    The admin API over a fake fleet, with a dashboard directory of its own.
    """

    def setUp(self):
        self.fleet = FakeFleet()
        self.dashboard = self.mktemp()
        os.mkdir(self.dashboard)
        for name, text in (("index.html", "<h1>gamenet</h1>"), ("dashboard.js", "let x = 1;")):
            with open(os.path.join(self.dashboard, name), "w") as f:
                f.write(text)
        self.http = StubTreq(AdminApi(self.fleet, self.dashboard).resource(TOKEN))
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def request(self, method, path, body=None, token=TOKEN, raw=None, headers=None):
        """
        @return: the response, its status code and its body.
        """
        headers = dict(headers or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        response = self.settled(self.http.request(method, "http://127.0.0.1:3006" + path, headers=headers, data=data))
        content = self.settled(self.http.content(response))
        return response, response.code, content

    def settled(self, d):
        """
        The result of C{d}, once the in-memory connection has carried what it
        can (a file is written a chunk per pump).
        """
        for _ in range(20):
            self.http.flush()
        return self.successResultOf(d)

    def call(self, method, path, body=None, **kwargs):
        """
        An API call: its status and its JSON answer.
        """
        response, code, content = self.request(method, path, body, **kwargs)
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["application/json"])
        return code, json.loads(content)

    def assertCall(self, method, path, body, code, answer, **kwargs):
        self.assertEqual(self.call(method, path, body, **kwargs), (code, answer))

    def assertError(self, method, path, body, code, text, **kwargs):
        """
        The call is answered C{code} with C{{"error": sentence}} containing C{text}.
        """
        got, answer = self.call(method, path, body, **kwargs)
        self.assertEqual((got, list(answer)), (code, ["error"]), answer)
        self.assertIn(text, answer["error"])


class ViewTests(ApiTestCase):
    """
    The calls that read.
    """

    def test_cluster(self):
        self.assertCall("GET", "/api/cluster", None, 200, {
            "name": "chat", "master": {"pid": 1, "uptime": 10.0}, "servers": 5, "up": 5})

    def test_servers(self):
        """
        Every server's record, or those of one type; an unknown type is a 400.
        """
        code, answer = self.call("GET", "/api/servers")
        self.assertEqual((code, [r["id"] for r in answer["servers"]]),
                         (200, ["gate-1", "connector-1", "connector-2", "chat-1", "chat-2"]))
        code, answer = self.call("GET", "/api/servers?type=chat")
        self.assertEqual([r["id"] for r in answer["servers"]], ["chat-1", "chat-2"])
        self.assertEqual(self.fleet.calls[-1], ("servers", {"server_type": "chat"}))
        self.assertError("GET", "/api/servers?type=area", None, 400, "unknown server type area")

    def test_server(self):
        """
        One server's record with its routes; an unknown id is a 404.
        """
        code, answer = self.call("GET", "/api/servers/chat-1")
        self.assertEqual((code, answer["id"], answer["routes"]), (200, "chat-1", {}))
        self.assertError("GET", "/api/servers/chat-9", None, 404, "no server chat-9")

    def test_history(self):
        """
        The last 300 seconds by default, or C{seconds}; a C{seconds} that is
        not a number above 0 is a 400.
        """
        code, answer = self.call("GET", "/api/history")
        self.assertEqual((code, answer["interval"], sorted(answer["servers"])[0]), (200, 2.0, "chat-1"))
        self.assertEqual(self.fleet.calls[-1], ("history", {"seconds": 300.0}))
        self.call("GET", "/api/history?seconds=60")
        self.assertEqual(self.fleet.calls[-1], ("history", {"seconds": 60.0}))
        for bad in ("abc", "0", "-5", "inf", "nan"):
            self.assertError("GET", f"/api/history?seconds={bad}", None, 400, "seconds must be a number above 0")


class ProcessTests(ApiTestCase):
    """
    stop, kill and restart.
    """

    def test_byIds(self):
        for operation in ("stop", "kill", "restart"):
            self.assertCall("POST", f"/api/{operation}", {"servers": ["chat-1", "chat-2"]}, 200,
                            {"servers": ["chat-1", "chat-2"]})
            self.assertEqual(self.fleet.calls[-1],
                             (operation, {"servers": ["chat-1", "chat-2"], "type": None, "all": False}))

    def test_byTypeOrAll(self):
        self.assertCall("POST", "/api/restart", {"type": "connector"}, 200, {"servers": ["connector-1", "connector-2"]})
        code, answer = self.call("POST", "/api/stop", {"all": True})
        self.assertEqual((code, len(answer["servers"])), (200, 5))

    def test_badBodies(self):
        """
        Each malformed body is a 400 saying what is wrong; nothing reaches
        the fleet's operations.
        """
        for body, text in (
            ({"servers": "chat-1"}, '"servers" must be a non-empty list of server ids'),
            ({"servers": []}, '"servers" must be a non-empty list'),
            ({"servers": [1]}, '"servers" must be a non-empty list'),
            ({"type": 3}, '"type" must be a server type'),
            ({"all": "yes"}, '"all" must be true or false'),
            ({"colour": "red"}, "unknown key 'colour' (keys: servers, type, all)"),
            ([1, 2], "the body is not a JSON object"),
        ):
            self.assertError("POST", "/api/stop", body, 400, text)
        self.assertError("POST", "/api/kill", None, 400, "the body is not JSON", raw=b"{servers: [")
        self.assertEqual(self.fleet.calls, [])
        self.assertError("POST", "/api/restart", {}, 400, 'give one of "servers"')

    def test_unknownServer(self):
        self.assertError("POST", "/api/stop", {"servers": ["chat-9"]}, 404, "no server chat-9")

    def test_conflict(self):
        """
        The fleet's 409 is the answer's.
        """
        self.fleet.errors["stop"] = GamenetError("server chat-1 is not running", 409)
        self.assertError("POST", "/api/stop", {"servers": ["chat-1"]}, 409, "server chat-1 is not running")


class AddRemoveTests(ApiTestCase):
    """
    Adding and removing servers.
    """

    def test_addSpec(self):
        """
        A server added from a spec is a 201 with its record.
        """
        spec = {"id": "chat-3", "type": "chat", "host": "127.0.0.1", "node_port": 6052}
        code, answer = self.call("POST", "/api/servers", {"spec": spec})
        self.assertEqual((code, answer["server"]["id"], answer["server"]["state"]), (201, "chat-3", "starting"))
        self.assertEqual(self.fleet.calls[-1], ("add", {"section": None, "spec": spec}))

    def test_addSection(self):
        code, answer = self.call("POST", "/api/servers", {"section": "server:chat-3"})
        self.assertEqual((code, answer["server"]["id"]), (201, "chat-3"))

    def test_addBad(self):
        """
        An existing id is a 409; a section that is not a string, or another
        key, a 400.
        """
        self.assertError("POST", "/api/servers", {"section": "server:chat-1"}, 409, "server chat-1 already exists")
        self.assertError("POST", "/api/servers", {"section": 5}, 400, '"section" must be a section name')
        self.assertError("POST", "/api/servers", {"server": "x"}, 400, "unknown key 'server' (keys: section, spec)")

    def test_remove(self):
        self.assertCall("DELETE", "/api/servers/chat-2", None, 200, {"removed": "chat-2"})
        self.assertError("DELETE", "/api/servers/chat-2", None, 404, "no server chat-2")


class ClientTests(ApiTestCase):
    """
    kick, block, unblock and broadcast.
    """

    def test_kickUid(self):
        self.assertCall("POST", "/api/kick", {"uid": 42}, 200, {"kicked": 1})
        self.assertEqual(self.fleet.calls[-1], ("kick", {"uid": "42", "server": None, "session": None,
                                                         "reason": "kicked by admin"}))

    def test_kickSession(self):
        self.assertCall("POST", "/api/kick", {"server": "connector-1", "session": 7, "reason": "bye"}, 200,
                        {"kicked": 1})
        self.assertEqual(self.fleet.calls[-1], ("kick", {"uid": None, "server": "connector-1", "session": 7,
                                                         "reason": "bye"}))

    def test_kickBad(self):
        for body, text in (
            ({"uid": True}, '"uid" must be a user id'),
            ({"uid": ["a"]}, '"uid" must be a user id'),
            ({"server": 1, "session": 1}, '"server" must be a server id'),
            ({"server": "connector-1", "session": "7"}, '"session" must be a session id'),
            ({"uid": "u", "reason": ""}, '"reason" must be a non-empty sentence'),
        ):
            self.assertError("POST", "/api/kick", body, 400, text)
        self.assertError("POST", "/api/kick", {"server": "x", "session": 1}, 404, "no server x")

    def test_sessions(self):
        """
        A frontend's sessions, of a uid if asked, at most C{limit} (100 by default).
        """
        code, answer = self.call("GET", "/api/servers/connector-1/sessions")
        self.assertEqual((code, answer["server"], answer["total"], len(answer["sessions"])), (200, "connector-1", 2, 2))
        self.assertEqual(self.fleet.calls[-1], ("sessions", {"server_id": "connector-1", "uid": None, "limit": 100}))
        code, answer = self.call("GET", "/api/servers/connector-1/sessions?uid=bob&limit=1000")
        self.assertEqual((code, [s["uid"] for s in answer["sessions"]]), (200, ["bob"]))
        self.assertEqual(self.fleet.calls[-1], ("sessions", {"server_id": "connector-1", "uid": "bob", "limit": 1000}))

    def test_sessionsBad(self):
        """
        A limit that is not a whole number from 1 to 1000 is a 400; an
        unknown server a 404.
        """
        for limit in ("0", "1001", "x", "1.5", ""):
            self.assertError("GET", f"/api/servers/connector-1/sessions?limit={limit}", None, 400,
                             f"limit must be a whole number from 1 to 1000, not {limit!r}")
        self.assertError("GET", "/api/servers/chat-9/sessions", None, 404, "no server chat-9")

    def test_block(self):
        self.assertCall("GET", "/api/blocked", None, 200, {"blocked": []})
        self.assertCall("POST", "/api/block", {"networks": ["10.0.0.0/8", "::1"]}, 200,
                        {"blocked": ["10.0.0.0/8", "::1"]})
        self.assertCall("POST", "/api/unblock", {"networks": ["::1"]}, 200, {"blocked": ["10.0.0.0/8"]})
        self.assertError("POST", "/api/unblock", {"networks": ["::1"]}, 404, "::1 is not blocked")
        for body in ({"networks": []}, {"networks": "10.0.0.1"}, {"networks": [10]}, {}):
            self.assertError("POST", "/api/block", body, 400, '"networks" must be a non-empty list')

    def test_broadcast(self):
        self.assertCall("POST", "/api/broadcast", {"route": "onNews", "msg": {"text": "hi"}}, 200, {"sessions": 3})
        self.assertEqual(self.fleet.calls[-1], ("broadcast", {"route": "onNews", "msg": {"text": "hi"}}))
        self.assertCall("POST", "/api/broadcast", {"route": "onNews", "msg": None}, 200, {"sessions": 3})
        self.assertError("POST", "/api/broadcast", {"route": "onNews"}, 400, '"msg" is missing')
        self.assertError("POST", "/api/broadcast", {"route": "", "msg": 1}, 400, '"route" must be a push route')


class ProtocolTests(ApiTestCase):
    """
    The token, unknown paths and methods, and errors, each answered with
    a JSON error and its status.
    """

    def test_missingToken(self):
        """
        A call without the token is a 401, logged with the peer's address.
        """
        response, code, content = self.request("GET", "/api/servers", token=None)
        self.assertEqual((code, json.loads(content)),
                         (401, {"error": "missing admin token (send the header Authorization: Bearer TOKEN)"}))
        self.assertEqual(response.headers.getRawHeaders("www-authenticate"), ['Bearer realm="gamenet"'])
        refused = [e for e in self.events if e.get("log_format", "").startswith("admin API: refused")]
        self.assertEqual([(e["method"], e["path"], e["peer"]) for e in refused], [("GET", "/api/servers", "127.0.0.1")])
        self.assertEqual(self.fleet.calls, [])

    def test_wrongToken(self):
        """
        A wrong token, or another scheme, is a 401; so is any path under
        C{/api}, known or not, whatever the method.
        """
        self.assertError("POST", "/api/stop", {"all": True}, 401, "wrong admin token", token="nope")
        self.assertError("GET", "/api/cluster", None, 401, "wrong admin token", token=None,
                         headers={"Authorization": f"Basic {TOKEN}"})
        self.assertError("GET", "/api/nope", None, 401, "wrong admin token", token=TOKEN + "x")
        self.assertError("DELETE", "/api", None, 401, "missing admin token", token=None)
        self.assertEqual(self.fleet.calls, [])

    def test_otherSpellings(self):
        """
        No other spelling of an API path gets past the token: doubled
        slashes, percent-encoded letters or slashes, another case, dot
        segments.
        """
        for path in ("//api/servers", "/%61pi/servers", "/api%2Fservers", "/API/servers", "/./api/servers",
                     "/x/../api/servers", "/dashboard/../api/servers", "/dashboard/%2e%2e/api/servers"):
            self.assertError("GET", path, None, 401, "missing admin token", token=None)
        self.assertEqual(self.fleet.calls, [])

    def test_notFound(self):
        self.assertError("GET", "/api/nope", None, 404, "not found: /api/nope")

    def test_wrongMethod(self):
        """
        A method a path does not take is a 405 with C{Allow}.
        """
        response, code, content = self.request("GET", "/api/stop")
        self.assertEqual((code, json.loads(content)), (405, {"error": "/api/stop does not take GET (it takes POST)"}))
        self.assertEqual(response.headers.getRawHeaders("allow"), ["POST"])
        self.assertError("PUT", "/api/servers/chat-1", None, 405, "does not take PUT")
        self.assertError("DELETE", "/api/cluster", None, 405, "does not take DELETE")

    def test_fleetError(self):
        """
        A L{GamenetError} from the fleet is answered with its code and message.
        """
        self.fleet.errors["cluster"] = GamenetError("the master is busy", 503)
        self.assertError("GET", "/api/cluster", None, 503, "the master is busy")

    def test_unexpectedError(self):
        """
        Any other error is a 500 that tells nothing of it; it is logged.
        """
        self.fleet.errors["cluster"] = RuntimeError("secret detail")  # type: ignore[assignment]
        self.assertCall("GET", "/api/cluster", None, 500, {"error": "internal error (see the master's log)"})
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_changesLogged(self):
        """
        Calls that change something are logged with the peer's address; reads are not.
        """
        self.call("GET", "/api/servers")
        self.call("POST", "/api/kill", {"servers": ["chat-1"]})
        logged = [(e["method"], e["path"], e["peer"]) for e in self.events
                  if e.get("log_format", "").startswith("admin API: {method}")]
        self.assertEqual(logged, [("POST", "/api/kill", "127.0.0.1")])


class DashboardTests(ApiTestCase):
    """
    The dashboard's files, served without the token.
    """

    def test_index(self):
        response, code, content = self.request("GET", "/", token=None)
        self.assertEqual((code, content), (200, b"<h1>gamenet</h1>"))
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["text/html; charset=utf-8"])

    def test_files(self):
        response, code, content = self.request("GET", "/dashboard/dashboard.js", token=None)
        self.assertEqual((code, content), (200, b"let x = 1;"))
        self.assertIn(response.headers.getRawHeaders("content-type")[0].split(";")[0],
                      ("text/javascript", "application/javascript"))
        self.assertEqual(self.request("GET", "/dashboard/nope.js", token=None)[1], 404)
        # Only the dashboard's own spellings are open: anything else needs
        # the token first, and is then not found.
        for path in ("/nope", "/dashboard/", "/dashboard/.hidden", "/dashboard/%2e%2e", "/dashboard/..%2fsecret"):
            self.assertEqual(self.request("GET", path, token=None)[1], 401, path)
            self.assertEqual(self.request("GET", path)[1], 404, path)

    def test_missingDirectory(self):
        """
        Without the dashboard's directory, C{/} is a 404 and the API works.
        """
        self.http = StubTreq(AdminApi(self.fleet, self.mktemp()).resource(TOKEN))
        self.assertEqual(self.request("GET", "/", token=None)[1], 404)
        self.assertEqual(self.call("GET", "/api/cluster")[0], 200)

    def test_installed(self):
        """
        The package's own dashboard is the default.
        """
        self.assertEqual(DASHBOARD, os.path.join(os.path.dirname(os.path.abspath(__import__("gamenet").__file__)),
                                                 "admin", "dashboard"))
        self.http = StubTreq(AdminApi(self.fleet).resource(TOKEN))
        response, code, content = self.request("GET", "/", token=None)
        self.assertEqual(code, 200)
        self.assertIn(b"/dashboard/dashboard.js", content)


MINIMAL = """\
[cluster]
name = chat
secret = s
master_port = 3005
{extra}
[server:chat-1]
type = chat
host = 127.0.0.1
node_port = 6050
"""


class ConfigTests(SynchronousTestCase):
    """
    The admin keys of C{[cluster]}.
    """

    def load(self, extra, environ=None):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(MINIMAL.format(extra=extra))
        return path, load(path, {} if environ is None else environ)

    def problems(self, extra, environ=None):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(MINIMAL.format(extra=extra))
        with self.assertRaises(ConfigError) as caught:
            load(path, {} if environ is None else environ)
        return path, caught.exception.problems

    def assertProblem(self, extra, where, problem, environ=None):
        path, problems = self.problems(extra, environ)
        self.assertIn(f"{path} {where}: {problem}", problems)

    def test_off(self):
        """
        Without C{admin_port} (or with 0) there is no admin API, and no token is needed.
        """
        self.assertEqual(self.load("")[1].admin_port, 0)
        self.assertEqual(self.load("admin_port = 0")[1].admin_port, 0)

    def test_on(self):
        """
        The keys load; TLS paths are made absolute from the file's directory.
        """
        path, cluster = self.load("admin_port = 3006\nadmin_token = t\nadmin_host = ::1\n"
                                  "admin_tls_cert = a.pem\nadmin_tls_key = a.key")
        here = os.path.dirname(os.path.abspath(path))
        self.assertEqual((cluster.admin_port, cluster.admin_host, cluster.admin_token, cluster.admin_tls_cert,
                          cluster.admin_tls_key),
                         (3006, "::1", "t", os.path.join(here, "a.pem"), os.path.join(here, "a.key")))

    def test_tokenRequired(self):
        """
        With C{admin_port}, a token is required, from the file or the environment.
        """
        self.assertProblem("admin_port = 3006", "[cluster] admin_token",
                           "missing (required with admin_port; set it here or in $GAMENET_ADMIN_TOKEN)")
        self.assertProblem("admin_port = 3006\nadmin_token =", "[cluster] admin_token",
                           "missing (required with admin_port; set it here or in $GAMENET_ADMIN_TOKEN)")
        self.assertEqual(self.load("admin_port = 3006", {"GAMENET_ADMIN_TOKEN": "e"})[1].admin_token, "e")

    def test_environmentWins(self):
        self.assertEqual(self.load("admin_port = 3006\nadmin_token = f", {"GAMENET_ADMIN_TOKEN": "e"})[1].admin_token,
                         "e")

    def test_nonLoopbackRefused(self):
        """
        A non-loopback C{admin_host} without TLS is refused, in one line
        naming the file, section and key.
        """
        for host in ("0.0.0.0", "::", "192.0.2.1", "example.org"):
            self.assertProblem(f"admin_port = 3006\nadmin_token = t\nadmin_host = {host}", "[cluster] admin_host",
                               f"{host} is not a loopback address: the admin API listens there only over TLS "
                               "(set admin_tls_cert and admin_tls_key)")
        for host in ("127.0.0.1", "127.1.2.3", "::1", "localhost"):
            self.assertEqual(self.load(f"admin_port = 3006\nadmin_token = t\nadmin_host = {host}")[1].admin_host, host)
        cluster = self.load("admin_port = 3006\nadmin_token = t\nadmin_host = 0.0.0.0\n"
                            "admin_tls_cert = a.pem\nadmin_tls_key = a.key")[1]
        self.assertEqual(cluster.admin_host, "0.0.0.0")

    def test_tlsTogether(self):
        self.assertProblem("admin_port = 3006\nadmin_token = t\nadmin_tls_cert = a.pem", "[cluster] admin_tls_key",
                           "admin_tls_cert and admin_tls_key go together")

    def test_badPort(self):
        self.assertProblem("admin_port = 70000", "[cluster] admin_port", "port 70000 is outside 1-65535")
        self.assertProblem("admin_port = http", "[cluster] admin_port", "not a port number: 'http'")

    def test_portClash(self):
        """
        C{admin_port} must not be the master's port or a server's.
        """
        self.assertProblem("admin_port = 6050\nadmin_token = t", "[cluster] admin_port",
                           "port 6050 is also [server:chat-1] node_port")
        self.assertProblem("admin_port = 3005\nadmin_token = t", "[cluster] admin_port",
                           "port 3005 is also [cluster] master_port")

    def test_needsMasterPort(self):
        """
        The admin API needs the servers to log in to the master.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(MINIMAL.replace("master_port = 3005", "admin_port = 3006\nadmin_token = t").format(extra=""))
        with self.assertRaises(ConfigError) as caught:
            load(path, {})
        self.assertEqual(caught.exception.problems, [
            f"{path} [cluster] admin_port: needs master_port: the master reaches its servers over their links to it"])

    def test_defaultCluster(self):
        """
        The default cluster file turns the admin API on at 3006 on loopback.
        """
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        cluster = load(os.path.join(here, "etc", "cluster.ini"), {})
        self.assertEqual((cluster.admin_port, cluster.admin_host, cluster.admin_token),
                         (3006, "127.0.0.1", "change-me-admin"))


class SpecTests(SynchronousTestCase):
    """
    L{server_spec} and L{server_from_spec}: a server as a JSON-able dict and
    back, checked as its section would be; and C{twistd gamenet --server-spec}.
    """

    def setUp(self):
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self.cluster = load(os.path.join(here, "etc", "cluster.ini"), {})

    def test_roundTrip(self):
        """
        Every server of the default cluster comes back equal from its spec,
        through JSON.
        """
        for server in self.cluster.servers:
            spec = json.loads(json.dumps(server_spec(server)))
            self.assertEqual(server_from_spec(spec, self.cluster), server)

    def test_shape(self):
        """
        The spec has the section's keys that differ from their defaults, and the id.
        """
        connector = self.cluster.server("connector-1")
        self.assertEqual(server_spec(connector), {
            "id": "connector-1", "type": "connector", "host": "127.0.0.1", "node_port": 4050, "frontend": True,
            "client_port": 3050, "metrics_port": connector.metrics_port, "protos_dir": connector.options.protos_dir})

    def test_values(self):
        """
        Values may be JSON's or as written in the file; paths are relative
        to the cluster file.
        """
        server = server_from_spec({"id": "gate-2", "type": "gate", "host": "127.0.0.1", "node_port": "4011",
                                   "frontend": "yes", "client_port": 3015, "allowed_origins": ["a", "b"],
                                   "web_port": 3002, "web_root": "web"}, self.cluster)
        self.assertEqual((server.node_port, server.frontend, server.options.allowed_origins, server.options.web_root),
                         (4011, True, ("a", "b"), os.path.join(os.path.dirname(self.cluster.path), "web")))

    def test_problems(self):
        """
        Every problem of a spec, one sentence each.
        """
        for spec, problems in (
            ([1], ["server spec: not a JSON object"]),
            ({"type": "chat"}, ["server spec: id: missing (a non-empty string)"]),
            ({"id": "x", "type": "chat", "host": "h", "node_port": 0, "colour": 1}, [
                "server spec [server:x] node_port: port 0 is outside 1-65535",
                "server spec [server:x] colour: unknown key"]),
            ({"id": "x", "type": "chat", "host": "h"}, ["server spec [server:x] node_port: missing"]),
            ({"id": "../x", "type": "chat", "host": "h", "node_port": 5}, [
                "server spec [server:../x]: the server id '../x' is not allowed (expected letters, digits, '.', '_' "
                "and '-', starting with a letter or digit; not 'master')"]),
            ({"id": "x", "type": "c", "host": "h", "node_port": 5, "frontend": True, "client_port": 5},
             ["server spec [server:x] client_port: port 5 is also [server:x] node_port"]),
        ):
            with self.assertRaises(ConfigError) as caught:
                server_from_spec(spec, self.cluster)
            self.assertEqual(sorted(caught.exception.problems), sorted(problems))

    def test_twistdOption(self):
        """
        C{--server-spec} adds the server to the file's (or replaces the one
        of its id) and runs it; a bad spec ends the start with its problems.
        """
        from gamenet.tap import Options

        path = self.cluster.path
        options = Options()
        options.parseOptions(["--config", path, "--server-spec",
                              '{"id": "chat-3", "type": "chat", "host": "127.0.0.1", "node_port": 6052}'])
        self.assertEqual((options["server"], options.cluster.server("chat-3").node_port), ("chat-3", 6052))
        options = Options()
        options.parseOptions(["--config", path, "--server-spec",
                              '{"id": "chat-2", "type": "chat", "host": "127.0.0.1", "node_port": 6060}'])
        self.assertEqual([s.node_port for s in options.cluster.servers if s.id == "chat-2"], [6060])
        for args, message in (
            (["--server-spec", "{"], "gamenet: --server-spec is not JSON: "),
            (["--server-spec", '{"id": "x"}'], "gamenet: invalid --server-spec:\nserver spec [server:x] type: missing"),
            (["--server", "chat-1", "--server-spec", '{"id": "chat-3", "type": "chat", "host": "h", "node_port": 1}'],
             "gamenet: --server chat-1 and --server-spec of chat-3 do not go together"),
        ):
            with self.assertRaises(SystemExit) as caught:
                Options().parseOptions(["--config", path, *args])
            self.assertTrue(str(caught.exception).startswith(message), str(caught.exception))


class ServiceTests(TestCase):
    """
    L{AdminService} on a real port of 127.0.0.1.
    """

    def master(self, **admin):
        port, node = free_ports(2)
        directory = self.mktemp()
        os.mkdir(directory)
        cluster = attrs.evolve(
            cluster_config(frontend("connector-1", "connector", client_port=node + 1, node_port=node),
                           backend("chat-1", "chat", node_port=node + 2)),
            path=os.path.join(directory, "cluster.ini"),
            **{"admin_port": port, "admin_token": TOKEN, **admin},
        )
        master = FakeMaster(cluster)
        master.reactor = reactor
        return master, port

    async def start(self, service):
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)

    async def test_realPort(self):
        """
        The API answers over TCP on admin_host:admin_port, with the token;
        without it, 401.
        """
        master, port = self.master()
        await self.start(AdminService(master))
        url = f"http://127.0.0.1:{port}/api/servers"
        response = await treq.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30, persistent=False)
        self.assertEqual(response.code, 200)
        answer = await response.json()
        self.assertEqual([(r["id"], r["state"]) for r in answer["servers"]],
                         [("connector-1", "down"), ("chat-1", "down")])
        response = await treq.get(url, timeout=30, persistent=False)
        self.assertEqual(response.code, 401)
        await response.content()

    async def test_portInUse(self):
        """
        A port in use ends the start with one line naming the file and key.
        """
        master, port = self.master()
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
            s.listen()
            with self.assertRaises(SystemExit) as caught:
                AdminService(master).privilegedStartService()
        self.assertRegex(str(caught.exception),
                         rf"^gamenet: {re.escape(master.cluster.path)} \[cluster\] admin_port: "
                         rf"the admin API cannot listen on 127\.0\.0\.1:{port}: .+$")

    async def test_tls(self):
        """
        With a certificate, the API is served over HTTPS only.
        """
        directory = self.mktemp()
        os.mkdir(directory)
        cert, key = os.path.join(directory, "admin.pem"), os.path.join(directory, "admin.key")
        write_certificate(cert, key)
        master, port = self.master(admin_tls_cert=cert, admin_tls_key=key)
        await self.start(AdminService(master))
        with open(cert, "rb") as f:
            trust = Certificate.loadPEM(f.read())

        class Trust(BrowserLikePolicyForHTTPS):
            def creatorForNetloc(self, hostname, port):
                return optionsForClientTLS("localhost", trustRoot=trust)

        http = treq.client.HTTPClient(Agent(reactor, contextFactory=Trust(), pool=HTTPConnectionPool(reactor, False)))
        response = await http.get(f"https://127.0.0.1:{port}/api/cluster",
                                  headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        self.assertEqual((response.code, (await response.json())["servers"]), (200, 2))

    def test_badCertificate(self):
        """
        A certificate that cannot be read ends the start with one line.
        """
        master, port = self.master(admin_tls_cert="/nonexistent/admin.pem", admin_tls_key="/nonexistent/admin.key")
        with self.assertRaises(SystemExit) as caught:
            AdminService(master).privilegedStartService()
        self.assertIn(f"gamenet: {master.cluster.path} [cluster] admin_tls_cert: cannot read /nonexistent/admin.pem: ",
                      str(caught.exception))
        self.assertNotIn("\n", str(caught.exception))
