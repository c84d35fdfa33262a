"""
Tests for the application model: registration modes, plugin discovery,
lifecycle, settings, events and interface conformance.
"""

from __future__ import annotations

import os
import sys
import textwrap

import attrs

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.plugin import IPlugin
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from gamenet import (
    Application,
    Handler,
    IHandler,
    IRegistration,
    IRemote,
    ISessionLearner,
    Remote,
    controller,
    handler,
    remote,
    route_handler,
    session_learner,
)
from gamenet.client import Client
from gamenet.plugins import PluginError, discover
from gamenet.testing import backend, client_port, cluster_config, frontend, start_server


class Lobby(Handler):
    def __init__(self, app):
        super().__init__(app)
        self.count = 0

    def join(self, msg, session):
        self.count += 1
        return {"count": self.count, "server": self.app.server_id}

    def leave(self, msg, session):
        return "left"

    def GetInfo(self, msg, session):
        return "info"

    def _private(self, msg, session):
        return "no"


class Room:
    made = 0

    def __init__(self, app):
        Room.made += 1
        self.calls = 0

    def act(self, msg, session):
        self.calls += 1
        return self.calls


@implementer(ISessionLearner)
class Learner:
    def __init__(self, app):
        self.events = []

    def on_connect(self, session):
        self.events.append(("connect", session.id))

    def on_disconnect(self, session, reason):
        self.events.append(("disconnect", session.id, reason))


class RegistrationTests(SynchronousTestCase):
    """
    The registration helpers name routes as Pomelo and Pitaya do.
    """

    def test_shared(self):
        """
        A shared handler exposes every public method under the class name
        with its first letter lower-cased.
        """
        registration = handler(Lobby, "connector")
        self.assertEqual(registration.name, "lobby")
        self.assertEqual(registration.method_names(), ["GetInfo", "join", "leave"])

    def test_subsetAndNames(self):
        """
        A named subset, a name override and a method-naming function.
        """
        registration = handler(Lobby, "connector", name="hall", methods=["GetInfo", "join"], name_func=str.lower)
        self.assertEqual((registration.name, registration.method_names()), ("hall", ["getinfo", "join"]))

    def test_unknownSubset(self):
        """
        Naming a method that is not there is an error.
        """
        self.assertRaises(ValueError, handler(Lobby, "connector", methods=["fly"]).method_names)

    def test_routeHandler(self):
        """
        A single function is registered under a full route, which must have three parts.
        """
        registration = route_handler("area.move.to", lambda msg, session: None)
        self.assertEqual((registration.server_type, registration.name, registration.method_names()),
                         ("area", "move", ["to"]))
        self.assertRaises(ValueError, route_handler, "move.to", lambda msg, session: None)

    def test_controllerIsClass(self):
        """
        A controller is registered as a class.
        """
        self.assertRaises(TypeError, controller, Room(None), "area")

    def test_interfaces(self):
        """
        Registrations are plugins providing L{IRegistration}; the base classes
        provide L{IHandler} and L{IRemote}.
        """
        for registration in (handler(Lobby, "connector"), controller(Room, "area"),
                             route_handler("a.b.c", print), remote(Remote, "chat"),
                             session_learner(Learner)):
            verifyObject(IRegistration, registration)
            verifyObject(IPlugin, registration)
        verifyObject(IHandler, Lobby(None))
        verifyObject(IRemote, Remote(None))
        verifyObject(ISessionLearner, Learner(None))


class DiscoveryTests(SynchronousTestCase):
    """
    L{discover} finds registrations in a game's plugin package with C{getPlugins}.
    """

    def write_package(self, modules):
        root = os.path.abspath(self.mktemp())
        package = os.path.join(root, "fakegame", "plugins")
        os.makedirs(package)
        open(os.path.join(root, "fakegame", "__init__.py"), "w").close()
        open(os.path.join(package, "__init__.py"), "w").close()
        for name, text in modules.items():
            with open(os.path.join(package, name + ".py"), "w") as f:
                f.write(textwrap.dedent(text))
        sys.path.insert(0, root)
        self.addCleanup(sys.path.remove, root)
        self.addCleanup(lambda: [sys.modules.pop(m) for m in list(sys.modules) if m.startswith("fakegame")])

    def test_found(self):
        """
        Every registration at module level in the package is found.
        """
        self.write_package({
            "lobby": """
                from gamenet import Handler, handler, remote, Remote
                class Lobby(Handler):
                    def join(self, msg, session): return 1
                lobby = handler(Lobby, "connector")
                class Rooms(Remote):
                    def add(self, uid): return uid
                rooms = remote(Rooms, "chat")
                not_a_plugin = object()
            """,
        })
        found = discover(["fakegame.plugins"])
        self.assertEqual(sorted((r.kind, r.server_type, r.name) for r in found),
                         [("handler", "connector", "lobby"), ("remote", "chat", "rooms")])

    def test_brokenModule(self):
        """
        A plugin module that does not import is an error naming it, not a
        handler silently missing.
        """
        self.write_package({"broken": "import nothing_here\n"})
        error = self.assertRaises(PluginError, discover, ["fakegame.plugins"])
        self.assertIn("fakegame.plugins.broken", str(error))
        self.assertIn("nothing_here", str(error))

    def test_missingPackage(self):
        """
        A plugin package that does not exist is an error naming it.
        """
        error = self.assertRaises(PluginError, discover, ["no_such_game.plugins"])
        self.assertIn("no_such_game.plugins", str(error))

    def test_namespacePackage(self):
        """
        A plugin package without an C{__init__.py}, which C{twisted.plugin}
        cannot search, is an error naming it and what is expected.
        """
        self.write_package({"rooms": "x = 1\n"})
        os.remove(os.path.join(sys.path[0], "fakegame", "plugins", "__init__.py"))
        error = self.assertRaises(PluginError, discover, ["fakegame.plugins"])
        self.assertEqual(str(error), "plugin package fakegame.plugins is a namespace package; expected a package "
                                     "with an __init__.py, which twisted.plugin can search")


class ApplicationTests(SynchronousTestCase):
    """
    Settings, queries and C{configure}.
    """

    def setUp(self):
        self.cluster = cluster_config(
            frontend("gate-1", "gate"), frontend("connector-1", "connector"),
            frontend("connector-2", "connector"), backend("chat-1", "chat"), env="production",
        )
        self.app = Application(self.cluster, "connector-2")

    def test_queries(self):
        """
        The app knows itself and the cluster.
        """
        app = self.app
        self.assertEqual((app.server_id, app.server_type, app.env), ("connector-2", "connector", "production"))
        self.assertTrue(app.is_frontend)
        self.assertFalse(app.is_backend)
        self.assertEqual([s.id for s in app.servers_by_type("connector")], ["connector-1", "connector-2"])
        self.assertEqual(app.server_by_id("chat-1").type, "chat")
        self.assertIsNone(app.server_by_id("nope"))
        self.assertEqual(sorted(app.servers), ["chat-1", "connector-1", "connector-2", "gate-1"])
        self.assertIs(app.current_server, app.server)
        self.assertIs(app.session_service, app.sessions)
        self.assertIsNone(Application(self.cluster, "chat-1").sessions)

    def test_settings(self):
        """
        C{set/get/enable/disable/enabled/disabled} chain and read back.
        """
        self.app.set("a", 1).enable("flag")
        self.assertEqual((self.app.get("a"), self.app.get("b", 2)), (1, 2))
        self.assertTrue(self.app.enabled("flag"))
        self.app.disable("flag")
        self.assertTrue(self.app.disabled("flag"))

    def test_configure(self):
        """
        C{configure} runs only for a matching environment and server type.
        """
        ran = []
        self.app.configure("production", "connector", lambda app: ran.append(1))
        self.app.configure("production|development", "gate|connector", lambda app: ran.append(2))
        self.app.configure(None, "all", lambda app: ran.append(3))
        self.app.configure("development", None, lambda app: ran.append("no"))
        self.app.configure("production", "chat", lambda app: ran.append("no"))
        self.assertEqual(ran, [1, 2, 3])

    def test_events(self):
        """
        Listeners get emitted events; one that raises is logged and the others still run.
        """
        seen = []
        self.app.on("custom", lambda *args: seen.append(args))
        self.app.on("custom", lambda *args: 1 / 0)
        self.app.on("custom", lambda *args: seen.append("after"))
        self.app.emit("custom", 1, 2)
        self.assertEqual(seen, [(1, 2), "after"])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_registerAfterStart(self):
        """
        Registering once the server has started is refused.
        """
        self.app._prepare()
        self.assertRaises(RuntimeError, self.app.register, handler(Lobby, "connector"))

    def test_routeUnknownType(self):
        """
        C{route} for a server type no server of the file has is a warning
        naming it and the known types (the start goes on: a game's plugins
        may route types this cluster does not run); none with Redis
        discovery, where servers of other files join.
        """
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.app.route("area", lambda param, servers: servers[0])
        self.app._prepare()
        warned = [formatEvent(e) for e in events if e.get("log_level") == LogLevel.warn]
        self.assertEqual(warned, [f"{self.cluster.path} [server:*] type: app.route names server type 'area', "
                                  "which no server has; expected one of: chat, connector, gate"])
        app = Application(attrs.evolve(self.cluster, discovery="redis"), "chat-1")
        app.route("area", lambda param, servers: servers[0])
        app._prepare()
        self.assertEqual(len([e for e in events if e.get("log_level") == LogLevel.warn]), 1)


class Lifecycle(Handler):
    log: list = []

    def init(self):
        Lifecycle.log.append(("init", self.app.server_id))

    def after_init(self):
        d = Deferred()
        reactor.callLater(0, d.callback, None)
        Lifecycle.log.append(("after_init", self.app.server_id))
        return d

    async def before_shutdown(self):
        Lifecycle.log.append(("before_shutdown", len(self.app.sessions)))

    def shutdown(self):
        Lifecycle.log.append(("shutdown", len(self.app.sessions)))

    def ping(self, msg, session):
        return "pong"


class RunningTests(TestCase):
    """
    A started server: instances per server, controllers per request, lifecycle
    order, learners and events.
    """

    async def test_perServerInstances(self):
        """
        Two servers of one type in one process each get their own shared handler.
        """
        cluster = cluster_config(frontend("c-1", "connector"), frontend("c-2", "connector"))
        registrations = [handler(Lobby, "connector")]
        apps = [await start_server(cluster, sid, registrations) for sid in ("c-1", "c-2")]
        for app in apps:
            self.addCleanup(app.stopService)
        clients = [await Client.connect(reactor, "127.0.0.1", client_port(app)) for app in apps]
        for c in clients:
            self.addCleanup(c.close)
        self.assertEqual(await clients[0].request("connector.lobby.join"), {"count": 1, "server": "c-1"})
        self.assertEqual(await clients[0].request("connector.lobby.join"), {"count": 2, "server": "c-1"})
        self.assertEqual(await clients[1].request("connector.lobby.join"), {"count": 1, "server": "c-2"})
        self.assertEqual(
            await clients[0].request("connector.lobby._private"),
            {"code": 404, "message": "no handler for connector.lobby._private"},
        )

    async def test_controller(self):
        """
        A controller is made anew for each request: no state leaks between them.
        """
        cluster = cluster_config(frontend("c-1", "connector"))
        app = await start_server(cluster, "c-1", [controller(Room, "connector")])
        self.addCleanup(app.stopService)
        client = await Client.connect(reactor, "127.0.0.1", client_port(app), "tcp")
        self.addCleanup(client.close)
        made = Room.made
        self.assertEqual([await client.request("connector.room.act") for _ in range(3)], [1, 1, 1])
        self.assertEqual(Room.made - made, 3)

    async def test_lifecycleAndLearners(self):
        """
        Lifecycle methods run in order around serving; learners and events see
        sessions open and close with the reason.
        """
        Lifecycle.log = []
        order = []
        cluster = cluster_config(frontend("c-1", "connector"))
        app = Application(cluster, "c-1", [handler(Lifecycle, "connector"), session_learner(Learner)])
        app.before_startup(lambda a: order.append("before_startup"))
        app.after_startup(lambda a: order.append("after_startup"))
        app.before_shutdown(lambda a: order.append("before_shutdown"))
        app.on("start_server", lambda sid: order.append(("start_server", sid)))
        app.on("close_session", lambda session, reason: order.append(("close_session", reason)))
        app.privilegedStartService()
        await app.startService()
        self.assertEqual(Lifecycle.log, [("init", "c-1"), ("after_init", "c-1")])
        self.assertEqual(order, ["before_startup", "after_startup", ("start_server", "c-1")])
        client = await Client.connect(reactor, "127.0.0.1", client_port(app))
        self.assertEqual(await client.request("connector.lifecycle.ping"), "pong")
        learner = app.components[1].instance
        await app.stopService()
        self.assertEqual(await client.closed, "server shutting down")
        self.assertEqual(Lifecycle.log[2:], [("before_shutdown", 1), ("shutdown", 0)])
        self.assertEqual(learner.events, [("connect", 1), ("disconnect", 1, "server shutting down")])
        self.assertEqual(order[3:], ["before_shutdown", ("close_session", "server shutting down")])

    async def test_sendHook(self):
        """
        A send hook may rewrite a push or drop it.
        """
        cluster = cluster_config(frontend("c-1", "connector"))

        def hook(session, route, msg):
            from gamenet import DROP
            return DROP if msg.get("drop") else {**msg, "hooked": True}

        def configure(app):
            app.send_hook("on*", hook)

        app = await start_server(cluster, "c-1", [route_handler(
            "connector.p.push", lambda msg, session: session.send("onX", msg) and "sent")], configure=configure)
        self.addCleanup(app.stopService)
        client = await Client.connect(reactor, "127.0.0.1", client_port(app))
        self.addCleanup(client.close)
        pushes = []
        client.on("onX", pushes.append)
        await client.request("connector.p.push", {"drop": True})
        await client.request("connector.p.push", {"n": 1})
        app.sessions.broadcast("onX", {"n": 2})
        await client.request("connector.p.push", {"n": 3})
        self.assertEqual(pushes, [{"n": 1, "hooked": True}, {"n": 2, "hooked": True}, {"n": 3, "hooked": True}])
