"""
Tests for L{gamenet.config}: loading and validating C{cluster.ini}.
"""

from __future__ import annotations

import os
from textwrap import dedent
from typing import Mapping

import attrs

from twisted.trial.unittest import SynchronousTestCase

from gamenet import config
from gamenet.config import ClusterConfig, ConfigError, FrontendOptions, ServerConfig

CLUSTER = """\
[cluster]
name = chat
secret = file-secret
env = production
plugins = examples.chat.plugins, more.plugins
extra_routes = onChat onAdd
    onLeave
"""

FRONTEND = """\
[frontend]
transport = websocket
heartbeat = 20
handshake_timeout = 5
max_body_size = 1000
max_ws_message_size = 2000
messages_per_second = 50
max_connections = 300
max_outbound_queue = 4000
allowed_origins = https://a.example:*, https://b.example:*
use_dict = no
single_session = yes
"""

GATE = """\
[server:gate-1]
type = gate
host = 127.0.0.1
node_port = 4010
frontend = true
client_port = 3014
client_host = game.example.com
transport = tcp
heartbeat = 0
max_connections = 7
allowed_origins = *
use_dict = true
"""

CONNECTORS = """\
[server:connector-1]
type = connector
host = 127.0.0.1
node_port = 4050
frontend = true
client_port = 3050
tls_cert = cert.pem
tls_key = key.pem

[server:connector-2]
type = connector
host = 127.0.0.1
node_port = 4051
frontend = true
client_port = 3051
"""

BACKENDS = """\
[server:chat-1]
type = chat
host = 127.0.0.1
node_port = 6050

[server:chat-2]
type = chat
host = 127.0.0.1
node_port = 6051
"""

FRONTENDS_ONLY = "\n".join([CLUSTER, FRONTEND, GATE, CONNECTORS])
FULL = "\n".join([CLUSTER, FRONTEND, GATE, CONNECTORS, BACKENDS])

MINIMAL = """\
[cluster]
name = chat
secret = s

[server:gate-1]
type = gate
host = 127.0.0.1
node_port = 4010
frontend = true
client_port = 3014
"""


class ConfigTestCase(SynchronousTestCase):
    """
    Helpers to write a cluster file and load it.
    """

    def write(self, text: str) -> str:
        """
        Write C{text} to a new file and return its path.
        """
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as f:
            f.write(dedent(text))
        return path

    def load(self, text: str, environ: Mapping[str, str] | None = None) -> ClusterConfig:
        """
        Load C{text} as a cluster file, with an empty environment by default.
        """
        return config.load(self.write(text), {} if environ is None else environ)

    def problems(self, text: str, environ: Mapping[str, str] | None = None) -> tuple[str, list[str]]:
        """
        Load C{text}, which must be invalid, and return its path and the
        problems reported.
        """
        path = self.write(text)
        error = self.assertRaises(ConfigError, config.load, path, {} if environ is None else environ)
        return path, error.problems

    def assertProblem(self, text: str, where: str, problem: str) -> None:
        """
        Loading C{text} reports C{problem} at C{where} (C{"[section] key"}),
        prefixed with the file's path.
        """
        path, problems = self.problems(text)
        self.assertIn(f"{path} {where}: {problem}", problems)


class LoadTests(ConfigTestCase):
    """
    Valid files load into L{ClusterConfig}, L{ServerConfig} and
    L{FrontendOptions}.
    """

    def test_cluster(self) -> None:
        """
        The C{[cluster]} keys are loaded; C{plugins} and C{extra_routes} are
        split on commas, spaces and continuation lines.
        """
        path = self.write(FRONTENDS_ONLY)
        cluster = config.load(path, {})
        self.assertEqual(cluster.path, path)
        self.assertEqual(cluster.name, "chat")
        self.assertEqual(cluster.secret, "file-secret")
        self.assertEqual(cluster.env, "production")
        self.assertEqual(cluster.plugins, ("examples.chat.plugins", "more.plugins"))
        self.assertEqual(cluster.extra_routes, ("onChat", "onAdd", "onLeave"))

    def test_clusterDefaults(self) -> None:
        """
        C{env} defaults to C{development}; C{plugins} and C{extra_routes} to
        nothing.
        """
        cluster = self.load(MINIMAL)
        self.assertEqual(cluster.env, "development")
        self.assertEqual(cluster.plugins, ())
        self.assertEqual(cluster.extra_routes, ())

    def test_frontendServer(self) -> None:
        """
        A frontend's own keys are loaded into its L{ServerConfig}.
        """
        server = self.load(FRONTENDS_ONLY).server("connector-2")
        self.assertEqual(
            (server.id, server.type, server.host, server.node_port, server.frontend, server.client_port),
            ("connector-2", "connector", "127.0.0.1", 4051, True, 3051),
        )

    def test_optionDefaults(self) -> None:
        """
        Without C{[frontend]}, a frontend gets the defaults of
        L{FrontendOptions}.
        """
        server = self.load(MINIMAL).server("gate-1")
        self.assertEqual(server.options, FrontendOptions())

    def test_frontendSection(self) -> None:
        """
        C{[frontend]} sets the options of every frontend that does not
        override them.
        """
        server = self.load(FRONTENDS_ONLY).server("connector-2")
        self.assertEqual(
            server.options,
            FrontendOptions(
                transport="websocket",
                heartbeat=20.0,
                handshake_timeout=5.0,
                max_body_size=1000,
                max_ws_message_size=2000,
                messages_per_second=50,
                max_connections=300,
                max_outbound_queue=4000,
                allowed_origins=("https://a.example:*", "https://b.example:*"),
                use_dict=False,
                single_session=True,
            ),
        )

    def test_serverOverrides(self) -> None:
        """
        A key in a server's own section wins over C{[frontend]}; the keys it
        does not set still come from C{[frontend]}.
        """
        server = self.load(FRONTENDS_ONLY).server("gate-1")
        self.assertEqual(
            server.options,
            FrontendOptions(
                transport="tcp",
                client_host="game.example.com",
                heartbeat=0.0,
                handshake_timeout=5.0,
                max_body_size=1000,
                max_ws_message_size=2000,
                messages_per_second=50,
                max_connections=7,
                max_outbound_queue=4000,
                allowed_origins=("*",),
                use_dict=True,
                single_session=True,
            ),
        )

    def test_tls(self) -> None:
        """
        C{tls_cert} and C{tls_key} are loaded together, relative to the
        cluster file's directory.
        """
        cluster = self.load(FRONTENDS_ONLY)
        options = cluster.server("connector-1").options
        assert options is not None
        here = os.path.dirname(os.path.abspath(cluster.path))
        self.assertEqual(
            (options.tls_cert, options.tls_key),
            (os.path.join(here, "cert.pem"), os.path.join(here, "key.pem")),
        )

    def test_fullCluster(self) -> None:
        """
        A cluster of frontends and backends loads every server, in file order;
        backends have no client port and no options.
        """
        cluster = self.load(FULL)
        self.assertEqual(
            [server.id for server in cluster.servers],
            ["gate-1", "connector-1", "connector-2", "chat-1", "chat-2"],
        )
        self.assertEqual(cluster.server("chat-2"), ServerConfig("chat-2", "chat", "127.0.0.1", 6051))
        self.assertEqual(cluster.server("chat-2").client_port, 0)
        self.assertIsNone(cluster.server("chat-2").options)
        self.assertEqual(
            cluster.server("connector-2").options,
            attrs.evolve(cluster.server("connector-1").options, tls_cert="", tls_key=""),
        )

    def test_explicitBackend(self) -> None:
        """
        C{frontend = false} makes a backend, the same as leaving it out.
        """
        cluster = self.load(MINIMAL + "\n[server:chat-1]\ntype = chat\nhost = h\nnode_port = 6050\nfrontend = false\n")
        self.assertFalse(cluster.server("chat-1").frontend)

    def test_serversInFileOrder(self) -> None:
        """
        L{ClusterConfig.servers} lists the servers in file order.
        """
        cluster = self.load(FRONTENDS_ONLY)
        self.assertEqual([server.id for server in cluster.servers], ["gate-1", "connector-1", "connector-2"])

    def test_serversByType(self) -> None:
        """
        L{ClusterConfig.servers_by_type} lists the servers of one type in file
        order, and nothing for an unknown type.
        """
        cluster = self.load(FRONTENDS_ONLY)
        self.assertEqual([s.id for s in cluster.servers_by_type("connector")], ["connector-1", "connector-2"])
        self.assertEqual([s.id for s in cluster.servers_by_type("gate")], ["gate-1"])
        self.assertEqual(cluster.servers_by_type("nope"), [])

    def test_serversByTypeBackends(self) -> None:
        """
        L{ClusterConfig.servers_by_type} finds backends too.
        """
        cluster = self.load(FULL)
        self.assertEqual([s.id for s in cluster.servers_by_type("chat")], ["chat-1", "chat-2"])

    def test_server(self) -> None:
        """
        L{ClusterConfig.server} finds a server by id.
        """
        cluster = self.load(FRONTENDS_ONLY)
        self.assertIs(cluster.server("connector-1"), cluster.servers[1])

    def test_serverUnknown(self) -> None:
        """
        L{ClusterConfig.server} raises L{KeyError} for an unknown id.
        """
        cluster = self.load(FRONTENDS_ONLY)
        error = self.assertRaises(KeyError, cluster.server, "connector-9")
        self.assertEqual(error.args, ("connector-9",))

    def test_clientHost(self) -> None:
        """
        L{ServerConfig.client_host} is C{client_host} when set.
        """
        self.assertEqual(self.load(FRONTENDS_ONLY).server("gate-1").client_host, "game.example.com")

    def test_clientHostFallsBack(self) -> None:
        """
        Without C{client_host}, L{ServerConfig.client_host} is C{host}.
        """
        self.assertEqual(self.load(FRONTENDS_ONLY).server("connector-1").client_host, "127.0.0.1")

    def test_clientHostBackend(self) -> None:
        """
        A backend, which has no options, uses C{host} as its client host.
        """
        self.assertEqual(ServerConfig("chat-1", "chat", "10.0.0.5", 6050).client_host, "10.0.0.5")

    def test_booleans(self) -> None:
        """
        Booleans accept true/yes/on/1 and false/no/off/0, in any case.
        """
        for text, value in [("TRUE", True), ("yes", True), ("On", True), ("1", True),
                            ("false", False), ("NO", False), ("off", False), ("0", False)]:
            options = self.load(MINIMAL + f"single_session = {text}\n").server("gate-1").options
            assert options is not None
            self.assertIs(options.single_session, value, text)

    def test_heartbeatZero(self) -> None:
        """
        C{heartbeat = 0} is allowed (it disables heartbeats) and fractions of
        seconds are allowed.
        """
        self.assertEqual(self.load(MINIMAL + "heartbeat = 0\n").server("gate-1").options.heartbeat, 0.0)
        self.assertEqual(self.load(MINIMAL + "heartbeat = 0.5\n").server("gate-1").options.heartbeat, 0.5)

    def test_inlineComments(self) -> None:
        """
        C{;} and C{#} after whitespace start a comment at the end of a line.
        """
        cluster = self.load(MINIMAL.replace("node_port = 4010", "node_port = 4010 ; node links\n# whole line"))
        self.assertEqual(cluster.server("gate-1").node_port, 4010)

    def test_keysIgnoreCase(self) -> None:
        """
        Keys are case-insensitive.
        """
        cluster = self.load(MINIMAL.replace("node_port", "Node_Port"))
        self.assertEqual(cluster.server("gate-1").node_port, 4010)

    def test_samePortOtherHost(self) -> None:
        """
        Two servers on different hosts may use the same port.
        """
        cluster = self.load(
            MINIMAL + "\n[server:gate-2]\ntype = gate\nhost = 10.0.0.2\nnode_port = 4010\n"
            "frontend = true\nclient_port = 3014\n"
        )
        self.assertEqual([s.node_port for s in cluster.servers], [4010, 4010])


class SecretTests(ConfigTestCase):
    """
    The cluster secret comes from C{[cluster] secret} or C{GAMENET_SECRET}.
    """

    def test_fromFile(self) -> None:
        """
        Without C{GAMENET_SECRET}, the secret is the file's.
        """
        self.assertEqual(self.load(MINIMAL).secret, "s")

    def test_environmentOverrides(self) -> None:
        """
        C{GAMENET_SECRET} in C{environ} wins over the file's secret.
        """
        self.assertEqual(self.load(MINIMAL, {"GAMENET_SECRET": "from-env"}).secret, "from-env")

    def test_environmentOnly(self) -> None:
        """
        The file may leave the secret out when C{GAMENET_SECRET} is set.
        """
        text = MINIMAL.replace("secret = s\n", "")
        self.assertEqual(self.load(text, {"GAMENET_SECRET": "from-env"}).secret, "from-env")

    def test_emptyEnvironment(self) -> None:
        """
        An empty C{GAMENET_SECRET} does not override the file's secret.
        """
        self.assertEqual(self.load(MINIMAL, {"GAMENET_SECRET": ""}).secret, "s")

    def test_osEnviron(self) -> None:
        """
        Without an C{environ} argument, C{GAMENET_SECRET} is read from
        C{os.environ}.
        """
        self.patch(config.os, "environ", {"GAMENET_SECRET": "from-os"})
        self.assertEqual(config.load(self.write(MINIMAL)).secret, "from-os")

    def test_missing(self) -> None:
        """
        No secret in the file nor in the environment is an error.
        """
        self.assertProblem(
            MINIMAL.replace("secret = s\n", ""),
            "[cluster] secret",
            "missing (set it here or in $GAMENET_SECRET)",
        )

    def test_empty(self) -> None:
        """
        An empty secret counts as missing.
        """
        self.assertProblem(
            MINIMAL.replace("secret = s", "secret ="),
            "[cluster] secret",
            "missing (set it here or in $GAMENET_SECRET)",
        )


class ProblemTests(ConfigTestCase):
    """
    Invalid files raise L{ConfigError} naming the file, section and key of
    every problem.
    """

    def test_unknownClusterKey(self) -> None:
        """
        An unknown key in C{[cluster]} is reported.
        """
        self.assertProblem(MINIMAL.replace("name = chat", "name = chat\ncolour = red"),
                           "[cluster] colour", "unknown key")

    def test_unknownFrontendKey(self) -> None:
        """
        An unknown key in C{[frontend]}, including a server-only key, is
        reported.
        """
        path, problems = self.problems(MINIMAL + "\n[frontend]\nheartbaet = 5\nnode_port = 4000\n")
        self.assertEqual(
            problems,
            [f"{path} [frontend] heartbaet: unknown key", f"{path} [frontend] node_port: unknown key"],
        )

    def test_unknownServerKey(self) -> None:
        """
        An unknown key in a frontend's section is reported.
        """
        path, problems = self.problems(MINIMAL + "colour = red\n")
        self.assertEqual(problems, [f"{path} [server:gate-1] colour: unknown key"])

    def test_unknownBackendKey(self) -> None:
        """
        An unknown key in a backend's section is reported.
        """
        self.assertProblem(
            MINIMAL + "\n[server:chat-1]\ntype = chat\nhost = 127.0.0.1\nnode_port = 6050\ncolour = red\n",
            "[server:chat-1] colour",
            "unknown key",
        )

    def test_unknownSection(self) -> None:
        """
        A section other than C{[cluster]}, C{[frontend]} and
        C{[server:<id>]} is reported.
        """
        path, problems = self.problems(MINIMAL + "\n[game]\nname = x\n")
        self.assertEqual(
            problems, [f"{path} [game]: unknown section (expected cluster, frontend or server:<id>)"]
        )

    def test_serverWithoutId(self) -> None:
        """
        C{[server:]} has no id and is an unknown section.
        """
        self.assertProblem(MINIMAL + "\n[server:]\ntype = x\n", "[server:]",
                           "unknown section (expected cluster, frontend or server:<id>)")

    def test_missingCluster(self) -> None:
        """
        A file without C{[cluster]} is reported.
        """
        self.assertProblem(MINIMAL.replace("[cluster]", "[server:x]"), "[cluster]", "missing section")

    def test_missingName(self) -> None:
        """
        C{[cluster] name} is required.
        """
        path, problems = self.problems(MINIMAL.replace("name = chat\n", ""))
        self.assertEqual(problems, [f"{path} [cluster] name: missing"])

    def test_emptyName(self) -> None:
        """
        C{[cluster] name} must not be empty.
        """
        self.assertProblem(MINIMAL.replace("name = chat", "name ="), "[cluster] name", "must not be empty")

    def test_emptyEnv(self) -> None:
        """
        C{[cluster] env}, when given, must not be empty.
        """
        self.assertProblem(MINIMAL.replace("name = chat", "name = chat\nenv ="), "[cluster] env",
                           "must not be empty")

    def test_missingServerKeys(self) -> None:
        """
        C{type}, C{host} and C{node_port} are required in a server section.
        """
        for key in ("type", "host", "node_port"):
            text = "\n".join(line for line in MINIMAL.splitlines() if not line.startswith(key + " "))
            path, problems = self.problems(text)
            self.assertEqual(problems, [f"{path} [server:gate-1] {key}: missing"])

    def test_emptyHost(self) -> None:
        """
        C{host} must not be empty.
        """
        self.assertProblem(MINIMAL.replace("host = 127.0.0.1", "host ="), "[server:gate-1] host",
                           "must not be empty")

    def test_missingClientPort(self) -> None:
        """
        A frontend needs C{client_port}.
        """
        path, problems = self.problems(MINIMAL.replace("client_port = 3014\n", ""))
        self.assertEqual(problems, [f"{path} [server:gate-1] client_port: missing (required for a frontend)"])

    def test_portNotNumber(self) -> None:
        """
        A port that is not a number is reported with its text.
        """
        self.assertProblem(
            FULL.replace("node_port = 6050", "node_port = abc"),
            "[server:chat-1] node_port",
            "not a port number: 'abc'",
        )

    def test_portOutOfRange(self) -> None:
        """
        A port outside 1-65535 is reported.
        """
        self.assertProblem(MINIMAL.replace("client_port = 3014", "client_port = 70000"),
                           "[server:gate-1] client_port", "port 70000 is outside 1-65535")
        self.assertProblem(MINIMAL.replace("node_port = 4010", "node_port = 0"),
                           "[server:gate-1] node_port", "port 0 is outside 1-65535")

    def test_badClientPortOnce(self) -> None:
        """
        An invalid C{client_port} on a frontend is reported once, not also as
        missing.
        """
        path, problems = self.problems(MINIMAL.replace("client_port = 3014", "client_port = abc"))
        self.assertEqual(problems, [f"{path} [server:gate-1] client_port: not a port number: 'abc'"])

    def test_negativeHeartbeat(self) -> None:
        """
        A negative C{heartbeat} is reported.
        """
        self.assertProblem(MINIMAL + "\n[frontend]\nheartbeat = -1\n", "[frontend] heartbeat",
                           "must not be negative, not -1.0")

    def test_heartbeatNotNumber(self) -> None:
        """
        A C{heartbeat} that is not a number is reported.
        """
        self.assertProblem(MINIMAL + "heartbeat = 30s\n", "[server:gate-1] heartbeat",
                           "not a number of seconds: '30s'")

    def test_heartbeatNotFinite(self) -> None:
        """
        C{nan} and C{inf} are not numbers of seconds.
        """
        for key in ("heartbeat", "handshake_timeout"):
            for value in ("nan", "inf"):
                path, problems = self.problems(MINIMAL + f"{key} = {value}\n")
                self.assertEqual(len(problems), 1, problems)
                self.assertTrue(problems[0].startswith(f"{path} [server:gate-1] {key}: "), problems)

    def test_handshakeTimeoutZero(self) -> None:
        """
        C{handshake_timeout} must be more than 0.
        """
        self.assertProblem(MINIMAL + "handshake_timeout = 0\n", "[server:gate-1] handshake_timeout",
                           "must be more than 0")

    def test_badBoolean(self) -> None:
        """
        A boolean that is neither true nor false is reported.
        """
        self.assertProblem(MINIMAL + "use_dict = maybe\n", "[server:gate-1] use_dict",
                           "not true or false: 'maybe'")

    def test_badTransport(self) -> None:
        """
        Only C{hybrid}, C{websocket} and C{tcp} are transports.
        """
        self.assertProblem(MINIMAL + "\n[frontend]\ntransport = udp\n", "[frontend] transport",
                           "'udp' is not one of hybrid, websocket, tcp")

    def test_limitsPositive(self) -> None:
        """
        Every count and size limit must be at least 1.
        """
        for key in ("max_body_size", "max_ws_message_size", "messages_per_second",
                    "max_connections", "max_outbound_queue"):
            self.assertProblem(MINIMAL + f"{key} = 0\n", f"[server:gate-1] {key}", "must be at least 1, not 0")

    def test_limitNotWhole(self) -> None:
        """
        A limit that is not a whole number is reported.
        """
        self.assertProblem(MINIMAL + "max_body_size = 64k\n", "[server:gate-1] max_body_size",
                           "not a whole number: '64k'")

    def test_frontendKeysOnBackend(self) -> None:
        """
        C{client_port} and frontend options in a backend's section are
        reported.
        """
        text = MINIMAL + "\n[server:chat-1]\ntype = chat\nhost = 127.0.0.1\nnode_port = 6050\n" \
            "client_port = 3060\nheartbeat = 5\n"
        path, problems = self.problems(text)
        self.assertIn(f"{path} [server:chat-1] client_port: only frontends take this key", problems)
        self.assertIn(f"{path} [server:chat-1] heartbeat: only frontends take this key", problems)

    def test_frontendKeysOnBackendOnly(self) -> None:
        """
        Only the frontend keys a backend actually sets are reported.
        """
        path, problems = self.problems(MINIMAL + "\n[server:chat-1]\ntype = chat\nhost = 127.0.0.1\n"
                                       "node_port = 6050\nheartbeat = 5\n")
        self.assertEqual(problems, [f"{path} [server:chat-1] heartbeat: only frontends take this key"])

    def test_tlsCertWithoutKey(self) -> None:
        """
        C{tls_cert} without C{tls_key} is reported at C{tls_key}.
        """
        self.assertProblem(MINIMAL + "tls_cert = cert.pem\n", "[server:gate-1] tls_key",
                           "tls_cert and tls_key go together")

    def test_tlsKeyWithoutCert(self) -> None:
        """
        C{tls_key} without C{tls_cert} is reported at C{tls_cert}.
        """
        self.assertProblem(MINIMAL + "tls_key = key.pem\n", "[server:gate-1] tls_cert",
                           "tls_cert and tls_key go together")

    def test_tlsHalfInFrontend(self) -> None:
        """
        A lone C{tls_cert} in C{[frontend]} is reported for every frontend,
        unless the frontend adds the key.
        """
        text = FRONTENDS_ONLY.replace("single_session = yes", "single_session = yes\ntls_cert = all.pem")
        path, problems = self.problems(text)
        self.assertEqual(
            problems,
            [
                f"{path} [server:gate-1] tls_key: tls_cert and tls_key go together",
                f"{path} [server:connector-2] tls_key: tls_cert and tls_key go together",
            ],
        )

    def test_duplicatePort(self) -> None:
        """
        A C{node_port} equal to another server's C{client_port} on the same
        host is reported at the later one.
        """
        path, problems = self.problems(FRONTENDS_ONLY.replace("node_port = 4050", "node_port = 3014"))
        self.assertEqual(
            problems, [f"{path} [server:connector-1] node_port: port 3014 is also [server:gate-1] client_port"]
        )

    def test_duplicateClientPort(self) -> None:
        """
        A C{client_port} equal to another server's C{node_port} on the same
        host is reported.
        """
        path, problems = self.problems(FRONTENDS_ONLY.replace("client_port = 3051", "client_port = 4050"))
        self.assertEqual(
            problems, [f"{path} [server:connector-2] client_port: port 4050 is also [server:connector-1] node_port"]
        )

    def test_duplicatePortSameServer(self) -> None:
        """
        A frontend cannot use one port for both node links and clients.
        """
        self.assertProblem(MINIMAL.replace("client_port = 3014", "client_port = 4010"),
                           "[server:gate-1] client_port", "port 4010 is also [server:gate-1] node_port")

    def test_duplicateSection(self) -> None:
        """
        A section given twice is reported with the parser's message and line.
        """
        path = self.write(MINIMAL + "\n[server:gate-1]\ntype = gate\n")
        error = self.assertRaises(ConfigError, config.load, path, {})
        self.assertEqual(
            error.problems,
            [f"{path}: While reading from {path!r} [line 12]: section 'server:gate-1' already exists"],
        )

    def test_duplicateKey(self) -> None:
        """
        A key given twice in a section is reported with the parser's message
        and line.
        """
        path = self.write(MINIMAL + "node_port = 4011\n")
        error = self.assertRaises(ConfigError, config.load, path, {})
        self.assertEqual(
            error.problems,
            [f"{path}: While reading from {path!r} [line 11]: option 'node_port' in section 'server:gate-1' "
             "already exists"],
        )

    def test_parseErrorLine(self) -> None:
        """
        A line that is not C{key = value} is reported with its line number.
        """
        path, problems = self.problems(MINIMAL.replace("type = gate", "type gate"))
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("line 6", problems[0].replace("line  ", "line "))

    def test_missingFile(self) -> None:
        """
        A missing file is reported with the system's reason.
        """
        path = self.mktemp()
        error = self.assertRaises(ConfigError, config.load, path, {})
        self.assertEqual(error.problems, [f"{path}: cannot read: No such file or directory"])

    def test_noServers(self) -> None:
        """
        A file without any C{[server:<id>]} section is reported.
        """
        path, problems = self.problems("[cluster]\nname = chat\nsecret = s\n")
        self.assertEqual(problems, [f"{path} [cluster]: no [server:<id>] section"])

    def test_emptyFile(self) -> None:
        """
        An empty file reports everything it lacks at once.
        """
        path, problems = self.problems("")
        self.assertEqual(
            problems,
            [
                f"{path} [cluster]: missing section",
                f"{path} [cluster] name: missing",
                f"{path} [cluster] secret: missing (set it here or in $GAMENET_SECRET)",
                f"{path} [cluster]: no [server:<id>] section",
            ],
        )

    def test_allProblemsAtOnce(self) -> None:
        """
        Every problem is reported, in file order, and C{str()} of the error
        lists them one a line.
        """
        text = (
            FRONTENDS_ONLY.replace("env = production", "env = production\ncolour = red")
            .replace("transport = websocket", "transport = udp")
            .replace("node_port = 4050", "node_port = abc")
            .replace("client_port = 3051", "client_port = 3051\nmax_connections = 0\nheartbeat = -2")
        )
        path = self.write(text)
        error = self.assertRaises(ConfigError, config.load, path, {})
        expected = [
            f"{path} [cluster] colour: unknown key",
            f"{path} [frontend] transport: 'udp' is not one of hybrid, websocket, tcp",
            f"{path} [server:connector-1] node_port: not a port number: 'abc'",
            f"{path} [server:connector-2] max_connections: must be at least 1, not 0",
            f"{path} [server:connector-2] heartbeat: must not be negative, not -2.0",
        ]
        self.assertEqual(error.problems, expected)
        self.assertEqual(str(error), "\n".join(expected))
