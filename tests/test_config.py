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
        self.patch(os, "environ", {"GAMENET_SECRET": "from-os"})
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
            problems, [f"{path} [game]: unknown section (expected cluster, frontend, http or server:<id>)"]
        )

    def test_serverWithoutId(self) -> None:
        """
        C{[server:]} has no id and is an unknown section.
        """
        self.assertProblem(MINIMAL + "\n[server:]\ntype = x\n", "[server:]",
                           "unknown section (expected cluster, frontend, http or server:<id>)")

    def test_badServerId(self) -> None:
        """
        A server id names the server's pid file and its node links: one that
        is not a plain word, or is the master's own id, is refused.
        """
        for server_id in ("../x", "a b", "-x", "chat/1", "master"):
            self.assertProblem(MINIMAL + f"\n[server:{server_id}]\ntype = x\nhost = 127.0.0.1\nnode_port = 6050\n",
                               f"[server:{server_id}]",
                               f"the server id {server_id!r} is not allowed (expected letters, digits, '.', '_' and "
                               "'-', starting with a letter or digit; not 'master')")

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

    def test_drainTimeout(self) -> None:
        """
        C{drain_timeout} is 10 s unless set; 0 (no drain) is allowed, a
        negative time or a word is not.
        """
        self.assertEqual(self.load(MINIMAL).drain_timeout, 10.0)
        self.assertEqual(self.load(MINIMAL.replace("name = chat", "name = chat\ndrain_timeout = 0")).drain_timeout, 0.0)
        self.assertEqual(self.load(MINIMAL.replace("name = chat", "name = chat\ndrain_timeout = 2.5")).drain_timeout,
                         2.5)
        self.assertProblem(MINIMAL.replace("name = chat", "name = chat\ndrain_timeout = -1"),
                           "[cluster] drain_timeout", "must not be negative, not -1.0")
        self.assertProblem(MINIMAL.replace("name = chat", "name = chat\ndrain_timeout = soon"),
                           "[cluster] drain_timeout", "not a number of seconds: 'soon'")

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


class MetricsPortTests(ConfigTestCase):
    """
    C{metrics_port} of a server, or C{[cluster] metrics_port_base} plus its
    place in the file, resolved at load into L{ServerConfig.metrics_port}.
    """

    def ports(self, text: str) -> dict[str, int]:
        return {server.id: server.metrics_port for server in self.load(text).servers}

    def test_off(self) -> None:
        """
        Without either key, metrics are off: every server's port is 0.
        """
        self.assertEqual(set(self.ports(FULL).values()), {0})

    def test_base(self) -> None:
        """
        Server N in file order (from 0) gets the base plus N.
        """
        text = FULL.replace("name = chat\n", "name = chat\nmetrics_port_base = 9100\n")
        self.assertEqual(self.ports(text), {"gate-1": 9100, "connector-1": 9101, "connector-2": 9102,
                                            "chat-1": 9103, "chat-2": 9104})

    def test_own(self) -> None:
        """
        A server's own C{metrics_port} overrides the base, and 0 turns its metrics off.
        """
        text = (FULL.replace("name = chat\n", "name = chat\nmetrics_port_base = 9100\n")
                .replace("node_port = 6050\n", "node_port = 6050\nmetrics_port = 9200\n")
                .replace("node_port = 6051\n", "node_port = 6051\nmetrics_port = 0\n"))
        self.assertEqual(self.ports(text), {"gate-1": 9100, "connector-1": 9101, "connector-2": 9102,
                                            "chat-1": 9200, "chat-2": 0})

    def test_badPort(self) -> None:
        """
        A metrics port must be a port number.
        """
        self.assertProblem(MINIMAL + "metrics_port = 70000\n", "[server:gate-1] metrics_port",
                           "port 70000 is outside 1-65535")
        self.assertProblem(MINIMAL.replace("secret = s\n", "secret = s\nmetrics_port_base = x\n"),
                           "[cluster] metrics_port_base", "not a port number: 'x'")

    def test_baseOutOfRange(self) -> None:
        """
        A base that takes a server past 65535 is reported at that server.
        """
        text = FULL.replace("name = chat\n", "name = chat\nmetrics_port_base = 65534\n")
        path, problems = self.problems(text)
        self.assertEqual(problems, [
            f"{path} [server:connector-2] metrics_port: metrics_port_base 65534 + 2 = 65536 is outside 1-65535",
            f"{path} [server:chat-1] metrics_port: metrics_port_base 65534 + 3 = 65537 is outside 1-65535",
            f"{path} [server:chat-2] metrics_port: metrics_port_base 65534 + 4 = 65538 is outside 1-65535",
        ])

    def test_clash(self) -> None:
        """
        Metrics ports join the port-clash check: one from the base that is
        another server's client port is reported.
        """
        text = FULL.replace("name = chat\n", "name = chat\nmetrics_port_base = 3013\n")
        path, problems = self.problems(text)
        self.assertEqual(problems, [
            f"{path} [server:connector-1] metrics_port: port 3014 is also [server:gate-1] client_port",
        ])


class HttpKeysTests(ConfigTestCase):
    """
    The C{http_*} keys of a server, over those of C{[http]}, resolved at
    load into L{ServerConfig.http}.
    """

    def test_off(self) -> None:
        """
        Without C{http_port}, a server serves no HTTP, with the default limits.
        """
        self.assertEqual({server.http for server in self.load(FULL).servers}, {config.HttpOptions()})

    def test_defaultsAndOwn(self) -> None:
        """
        C{[http]} sets every server's defaults; a server's own keys win; a
        backend serves HTTP as well as a frontend; certificate paths are
        relative to the file.
        """
        text = (FULL + "\n[http]\nhttp_max_body_size = 500\nhttp_request_timeout = 5\nhttp_tls_cert = c.pem\n"
                "http_tls_key = c.key\n")
        text = text.replace("client_port = 3014\n", "client_port = 3014\nhttp_port = 3002\nhttp_max_body_size = 9\n")
        text = text.replace("node_port = 6050\n", "node_port = 6050\nhttp_port = 8080\nhttp_host = 0.0.0.0\n"
                            "http_max_connections = 3\nhttp_max_header_size = 4000\n")
        loaded = self.load(text)
        gate, chat = loaded.server("gate-1").http, loaded.server("chat-1").http
        here = os.path.dirname(os.path.abspath(loaded.path))
        self.assertEqual(gate, config.HttpOptions(3002, "", os.path.join(here, "c.pem"), os.path.join(here, "c.key"),
                                                  9, 16 * 1024, 5.0, 1000))
        self.assertEqual((chat.port, chat.host, chat.max_body_size, chat.max_connections, chat.max_header_size),
                         (8080, "0.0.0.0", 500, 3, 4000))
        self.assertEqual(loaded.server("chat-2").http.port, 0)

    def test_bad(self) -> None:
        """
        Each key is checked; http_port only in a server's section.
        """
        self.assertProblem(MINIMAL + "http_port = 70000\n", "[server:gate-1] http_port", "port 70000 is outside 1-65535")
        self.assertProblem(MINIMAL + "http_max_body_size = 0\n", "[server:gate-1] http_max_body_size",
                           "must be at least 1, not 0")
        self.assertProblem(MINIMAL + "\n[http]\nhttp_request_timeout = 0\n", "[http] http_request_timeout",
                           "must be more than 0")
        self.assertProblem(MINIMAL + "\n[http]\nhttp_port = 80\n", "[http] http_port", "unknown key")

    def test_tlsTogether(self) -> None:
        """
        A certificate without its key is a problem.
        """
        self.assertProblem(MINIMAL + "http_port = 3002\nhttp_tls_cert = c.pem\n", "[server:gate-1] http_tls_key",
                           "http_tls_cert and http_tls_key go together")

    def test_clash(self) -> None:
        """
        HTTP ports join the port-clash check.
        """
        self.assertProblem(MINIMAL + "http_port = 3014\n", "[server:gate-1] http_port",
                           "port 3014 is also [server:gate-1] client_port")

    def test_spec(self) -> None:
        """
        A server's HTTP options go through its spec and back.
        """
        text = MINIMAL + "http_port = 3002\nhttp_request_timeout = 4\n"
        loaded = self.load(text)
        server = loaded.server("gate-1")
        spec = config.server_spec(server)
        self.assertEqual((spec["http_port"], spec["http_request_timeout"]), (3002, 4.0))
        self.assertEqual(config.server_from_spec(spec, loaded), server)


class ProtobufConfigTests(ConfigTestCase):
    """
    C{protos_dir} (in C{[frontend]} or a frontend's section) and the
    C{[cluster]} C{dictionary} file, paths relative to the cluster file.
    """

    def setUp(self) -> None:
        self.base = os.path.abspath(self.mktemp())
        os.makedirs(self.base)

    def write(self, text: str) -> str:
        path = os.path.join(self.base, "cluster.ini")
        with open(path, "w", encoding="utf-8") as f:
            f.write(dedent(text))
        return path

    def file(self, name: str, content: str) -> str:
        """
        Write C{content} to C{name} beside the cluster file (directories made); its absolute path.
        """
        path = os.path.join(self.base, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(content)
        return path

    def test_protosDir(self) -> None:
        """
        C{protos_dir} is made absolute from the cluster file's directory; a
        frontend's own overrides C{[frontend]}'s.
        """
        self.file("protos/serverProtos.json", '{"onChat": {"required string msg": 1}}')
        self.file("gate-protos/clientProtos.json", "{}")
        with_frontend = MINIMAL.replace("secret = s\n", "secret = s\n\n[frontend]\nprotos_dir = protos\n")
        cluster = self.load(with_frontend + "protos_dir = gate-protos\n")
        self.assertEqual(cluster.server("gate-1").options.protos_dir, os.path.join(self.base, "gate-protos"))
        cluster = self.load(with_frontend)
        self.assertEqual(cluster.server("gate-1").options.protos_dir, os.path.join(self.base, "protos"))

    def test_badProtosDir(self) -> None:
        """
        A directory with neither file, or a schema that does not compile, is
        one problem naming the key and the file.
        """
        self.assertProblem(MINIMAL + "protos_dir = nothing\n", "[server:gate-1] protos_dir",
                           f"{self.base}/nothing has neither clientProtos.json nor serverProtos.json")
        bad = self.file("bad/serverProtos.json", '{"onChat": {"required Thing a": 1}}')
        path, problems = self.problems(MINIMAL.replace("secret = s\n", "secret = s\n\n[frontend]\nprotos_dir = bad\n"))
        self.assertEqual(problems, [f"{path} [frontend] protos_dir: {bad}: onChat: field 'a' has unknown type 'Thing'"])

    def test_sameSchemas(self) -> None:
        """
        A route's server schema that differs between two frontends' protos
        is a problem at the second; a route only one of them has is not.
        """
        self.file("a/serverProtos.json", '{"onChat": {"required string msg": 1}, "onA": {}}')
        self.file("b/serverProtos.json", '{"onChat": {"required string text": 1}, "onB": {}}')
        text = (MINIMAL.replace("secret = s\n", "secret = s\n\n[frontend]\nprotos_dir = a\n")
                + "\n[server:gate-2]\ntype = gate\nhost = 127.0.0.1\nnode_port = 4011\nfrontend = true\n"
                "client_port = 3015\nprotos_dir = b\n")
        path, problems = self.problems(text)
        self.assertEqual(problems, [f"{path} [server:gate-2] protos_dir: onChat has another schema than in "
                                    "[server:gate-1]'s serverProtos.json"])
        self.file("b/serverProtos.json", '{"onChat": {"required string msg": 1}, "onB": {}}')
        self.assertEqual(len(self.load(text).servers), 2)

    def test_sameSchemasAdded(self) -> None:
        """
        A frontend added at run time (from a spec) is held to the schemas of
        the cluster's frontends too; one that replaces a server of the same
        id is compared with the others only.
        """
        self.file("a/serverProtos.json", '{"onChat": {"required string msg": 1}}')
        self.file("b/serverProtos.json", '{"onChat": {"required string text": 1}}')
        cluster = self.load(MINIMAL.replace("secret = s\n", "secret = s\n\n[frontend]\nprotos_dir = a\n"))
        spec = {"id": "gate-2", "type": "gate", "host": "127.0.0.1", "node_port": 4011, "frontend": True,
                "client_port": 3015, "protos_dir": "b"}
        error = self.assertRaises(ConfigError, config.server_from_spec, spec, cluster)
        self.assertEqual(error.problems, ["server spec [server:gate-2] protos_dir: onChat has another schema than "
                                          "in [server:gate-1]'s serverProtos.json"])
        self.assertEqual(config.server_from_spec({**spec, "protos_dir": "a"}, cluster).options.protos_dir,
                         os.path.join(self.base, "a"))
        self.assertEqual(config.server_from_spec({**spec, "id": "gate-1"}, cluster).options.protos_dir,
                         os.path.join(self.base, "b"))

    def test_dictionary(self) -> None:
        """
        The routes of C{dictionary} come before C{extra_routes}; an empty
        object (as Pomelo's demo ships) is no route.
        """
        self.file("dictionary.json", '["onAdd", "onLeave"]')
        self.file("empty.json", "{}")
        text = MINIMAL.replace("secret = s\n", "secret = s\ndictionary = dictionary.json\nextra_routes = onChat\n")
        self.assertEqual(self.load(text).extra_routes, ("onAdd", "onLeave", "onChat"))
        self.assertEqual(self.load(MINIMAL.replace("secret = s\n", "secret = s\ndictionary = empty.json\n"))
                         .extra_routes, ())

    def test_badDictionary(self) -> None:
        """
        A dictionary file that is missing or not an array of routes is a problem.
        """
        bad = self.file("bad.json", '{"onChat": 1}')
        self.assertProblem(MINIMAL.replace("secret = s\n", "secret = s\ndictionary = bad.json\n"),
                           "[cluster] dictionary", f"{bad} is not a JSON array of routes")
        self.assertProblem(MINIMAL.replace("secret = s\n", "secret = s\ndictionary = none.json\n"),
                           "[cluster] dictionary", f"cannot read {self.base}/none.json: No such file or directory")
