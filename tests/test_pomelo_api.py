"""
Pomelo's API (C{../shared/seeds/pomelo-0.8-api.txt}) and mqant's session
calls in gamenet, as a team porting a game would call them: C{app.get} of the
reserved keys, C{load_config}, C{configure}'s three forms, the server
queries, C{rpc_filter}, route functions that see the session, route, body and
servers, the channel calls' Pomelo shapes, backend sessions' C{close},
C{is_connected}, C{refresh}, C{import_settings}, C{set_settings} and
C{set_batch}, and GoFrame controllers' C{init}/C{shut} on game routes.
"""

from __future__ import annotations

import json
import os
from typing import Any

import attrs
from twisted.internet import reactor
from twisted.internet.defer import DeferredList
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

from gamenet import GamenetError, Handler, Remote, controller, handler, remote
from gamenet.app import Application
from gamenet.client import Client
from gamenet.config import ConfigError, ServerConfig
from gamenet.testing import MemoryCluster, backend, cluster_config, free_ports, frontend, start_server


def cluster(**fields: Any) -> Any:
    """
    Two connectors and two area servers.
    """
    config = cluster_config(frontend("connector-1", "connector"), frontend("connector-2", "connector"),
                            backend("area-1", "area"), backend("area-2", "area"), env="production")
    return attrs.evolve(config, **fields)


class ApplicationTests(SynchronousTestCase):
    """
    C{app.get}'s reserved keys, C{load_config}, C{configure}, the server queries.
    """

    def setUp(self) -> None:
        self.config = cluster(path=os.path.join(self.mktemp(), "cluster.ini"), master_port=3005)
        os.makedirs(os.path.dirname(self.config.path))
        self.app = Application(self.config, "connector-1", reactor=object())
        self.backend = Application(self.config, "area-2", reactor=object())

    def test_reserved(self) -> None:
        """
        C{app.get} answers Pomelo's reserved keys from the server itself.
        """
        app = self.app
        base = os.path.dirname(os.path.abspath(self.config.path))
        self.assertEqual(
            [app.get(key) for key in ("serverId", "serverType", "env", "base", "main", "curServer")],
            ["connector-1", "connector", "production", base, os.path.abspath(self.config.path), app.server],
        )
        self.assertIs(app.get("sessionService"), app.sessions)
        self.assertIs(app.get("channelService"), app.channels)
        self.assertIs(app.get("backendSessionService"), app.backend_sessions)
        self.assertEqual(app.get("master"), ServerConfig("master", "master", "127.0.0.1", 3005))
        self.assertIsNone(self.backend.get("sessionService"))
        self.assertEqual(app.base, base)

    def test_reservedSet(self) -> None:
        """
        A reserved key the game sets is the game's value, as Pomelo's
        settings are one map; other keys keep their default.
        """
        self.app.set("env", "staging")
        self.assertEqual(self.app.get("env"), "staging")
        self.assertEqual(self.app.get("nothing", 7), 7)

    def test_enabled(self) -> None:
        """
        C{enabled(key)} is Pomelo's C{!!app.get(key)}: any true value,
        reserved keys included; C{disabled} is its opposite.
        """
        app = self.app
        app.set("workers", 4).set("empty", "")
        self.assertEqual([app.enabled(key) for key in ("workers", "empty", "nothing", "serverId", "master")],
                         [True, False, False, True, True])
        self.assertEqual([app.disabled(key) for key in ("workers", "empty", "nothing")], [False, True, True])
        self.assertTrue(self.backend.disabled("sessionService"))

    def test_loadConfig(self) -> None:
        """
        C{load_config(key, path)} reads a JSON file relative to the base
        into a setting, the section of this server's environment when it
        has one, the whole file when not.
        """
        with open(os.path.join(self.app.base, "mysql.json"), "w") as f:
            json.dump({"development": {"host": "dev"}, "production": {"host": "db-1", "port": 3306}}, f)
        with open(os.path.join(self.app.base, "plain.json"), "w") as f:
            json.dump({"limit": 5}, f)
        self.assertIs(self.app.load_config("mysql", "mysql.json"), self.app)
        self.assertEqual(self.app.get("mysql"), {"host": "db-1", "port": 3306})
        self.app.load_config("plain", os.path.join(self.app.base, "plain.json"))
        self.assertEqual(self.app.get("plain"), {"limit": 5})

    def test_loadConfigErrors(self) -> None:
        """
        A missing file, or one that is not JSON, is a L{ConfigError} of one
        line naming the file and the key.
        """
        path = os.path.join(self.app.base, "bad.json")
        with open(path, "w") as f:
            f.write("{nope")
        error = self.assertRaises(ConfigError, self.app.load_config, "bad", "bad.json")
        self.assertEqual(len(error.problems), 1)
        self.assertTrue(str(error).startswith(f"{path}: bad is not JSON"), str(error))
        error = self.assertRaises(ConfigError, self.app.load_config, "gone", "gone.json")
        self.assertEqual(str(error), f"{os.path.join(self.app.base, 'gone.json')}: cannot read gone: "
                                     "No such file or directory")

    def test_configure(self) -> None:
        """
        C{configure(fn)}, C{configure(env, fn)} and C{configure(env, type,
        fn)} call C{fn(app)} when env and type match; both take
        C{"production|development"}.
        """
        ran: list[Any] = []
        app = self.app
        app.configure(lambda a: ran.append(("all", a)))
        app.configure("production", lambda a: ran.append("production"))
        app.configure("development", lambda a: ran.append("no"))
        app.configure("development|production", "gate|connector", lambda a: ran.append("both"))
        app.configure("production", "area", lambda a: ran.append("no"))
        app.configure(None, "all", lambda a: ran.append("any"))
        self.assertEqual(ran, [("all", app), "production", "both", "any"])

    def test_configureBadArguments(self) -> None:
        """
        Anything but one to three arguments ending with a function is a TypeError.
        """
        self.assertRaises(TypeError, self.app.configure)
        self.assertRaises(TypeError, self.app.configure, "production", "connector")
        self.assertRaises(TypeError, self.app.configure, "a", "b", "c", lambda a: None)

    def test_servers(self) -> None:
        """
        C{server_types} lists every type; C{is_frontend}/C{is_backend} are
        true or false for this server and callable for any server (a
        configuration, an id, a Pomelo record); no Application is the master.
        """
        app = self.app
        self.assertEqual(app.server_types, ["connector", "area"])
        self.assertTrue(app.is_frontend)
        self.assertFalse(app.is_backend)
        self.assertTrue(app.is_frontend())
        self.assertTrue(app.is_backend(app.server_by_id("area-1")))
        self.assertTrue(app.is_backend("area-1"))
        self.assertFalse(app.is_frontend("area-1"))
        self.assertFalse(app.is_frontend("nobody"))
        self.assertFalse(app.is_backend("nobody"))
        self.assertTrue(app.is_frontend({"id": "c-9", "frontend": "true"}))
        self.assertTrue(app.is_backend({"id": "a-9"}))
        self.assertTrue(self.backend.is_backend)
        self.assertFalse(app.is_master)
        self.assertIsNone(Application(cluster(), "area-1", reactor=object()).master)

    def test_routeShapes(self) -> None:
        """
        A route function takes C{(route_param, servers)} or C{(session,
        route, body, servers)}; another shape is refused when it is set.
        """
        self.app.route("area", lambda param, servers: servers[0])
        self.app.route("area", lambda session, route, body, servers: None)
        self.assertRaises(TypeError, self.app.route, "area", lambda a, b, c: None)
        self.assertRaises(TypeError, self.app.route, "area", "area-1")


class Area(Handler):
    def where(self, msg, session):
        return {"server": self.app.server_id, "msg": msg}


class AreaRemote(Remote):
    def echo(self, text):
        return [self.app.server_id, text]


class Entry(Handler):
    async def login(self, msg, session):
        await session.bind(msg["uid"])
        return {"server": self.app.server_id}

    async def shout(self, msg, session):
        return await self.app.rpc.area.areaRemote.echo(msg["to"], msg["text"])


class ClusterTestsMixin:
    registrations: list[Any] = [handler(Area, "area"), remote(AreaRemote, "area"), handler(Entry, "connector")]

    def make(self, configure: Any = None) -> MemoryCluster:
        made = MemoryCluster(cluster(), self.registrations, configure)
        made.start()
        self.addCleanup(made.stop)
        return made

    def ask(self, client: Any, route: str, msg: Any = None) -> Any:
        answers: list[Any] = []
        client.request(route, msg).addCallback(answers.append)
        self.cluster.flush()
        self.assertEqual(len(answers), 1, f"{route} was not answered")
        return answers[0]

    def login(self, server_id: str, uid: str) -> Any:
        client = self.cluster.client(server_id)
        self.ask(client, "connector.entry.login", {"uid": uid})
        return client

    def result(self, d: Any) -> Any:
        self.cluster.flush()
        return self.successResultOf(d)


class RoutingTests(ClusterTestsMixin, SynchronousTestCase):
    """
    Route functions that see the session, the route, the body and the servers by id.
    """

    def test_forwarded(self) -> None:
        """
        For a client message forwarded to a backend, a four-argument route
        function gets the session, the route, the body as received and the
        available servers by id, and its choice serves the message.
        """
        seen: list[Any] = []

        def by_body(session, route, body, servers):
            seen.append((session.uid, route, json.loads(body), sorted(servers)))
            return servers[json.loads(body)["to"]]

        self.cluster = self.make(lambda app: app.route("area", by_body))
        client = self.login("connector-1", "ann")
        self.assertEqual(self.ask(client, "area.area.where", {"to": "area-2"}),
                         {"server": "area-2", "msg": {"to": "area-2"}})
        self.assertEqual(seen, [("ann", "area.area.where", {"to": "area-2"}, ["area-1", "area-2"])])

    def test_rpc(self) -> None:
        """
        For C{app.rpc}, it gets the route parameter, the remote's route and
        the arguments; its answer may be a server id.
        """
        seen: list[Any] = []

        def by_param(param, route, body, servers):
            seen.append((param, route, body))
            return "area-1" if param == "left" else "area-2"

        self.cluster = self.make(lambda app: app.route("area", by_param))
        client = self.login("connector-1", "ann")
        self.assertEqual(self.ask(client, "connector.entry.shout", {"to": "left", "text": "hi"}), ["area-1", "hi"])
        self.assertEqual(self.ask(client, "connector.entry.shout", {"to": "right", "text": "ho"}), ["area-2", "ho"])
        self.assertEqual(seen, [("left", "area.areaRemote.echo", ["hi"]), ("right", "area.areaRemote.echo", ["ho"])])

    def test_twoArguments(self) -> None:
        """
        A two-argument route function still gets the route parameter and the servers.
        """
        self.cluster = self.make(lambda app: app.route("area", lambda param, servers: servers[-1]))
        client = self.login("connector-1", "ann")
        self.assertEqual(self.ask(client, "area.area.where", 1)["server"], "area-2")

    def test_rpcFilter(self) -> None:
        """
        C{rpc_filter(obj)} runs C{obj.before} and C{obj.after} around each C{app.rpc} call.
        """
        calls: list[Any] = []

        class Timing:
            def before(self, call):
                calls.append(("before", call.server_id, call.route))

            def after(self, call):
                calls.append(("after", call.server_id, call.result))

        self.cluster = self.make(lambda app: app.rpc_filter(Timing()) if app.server_id == "connector-1" else None)
        self.cluster.apps["connector-1"].route("area", lambda param, servers: servers[0])
        client = self.login("connector-1", "ann")
        self.ask(client, "connector.entry.shout", {"to": "x", "text": "hi"})
        self.assertEqual(calls, [("before", "area-1", "area.areaRemote.echo"), ("after", "area-1", ["area-1", "hi"])])


class ChannelTests(ClusterTestsMixin, SynchronousTestCase):
    """
    Pomelo's shapes of C{push_message_by_uids}, C{push_message} and C{broadcast}.
    """

    def setUp(self) -> None:
        self.cluster = self.make()
        self.channels = self.cluster.apps["area-1"].channels
        self.pushed: dict[str, list[Any]] = {}
        self.clients = {}
        for server_id, uid in (("connector-1", "ann"), ("connector-2", "bob")):
            client = self.clients[uid] = self.login(server_id, uid)
            for route in ("onChat", "onAll"):
                client.on(route, lambda msg, uid=uid, route=route: self.pushed.setdefault(uid, []).append((route, msg)))
        self.guest = self.cluster.client("connector-1")
        self.guest.on("onAll", lambda msg: self.pushed.setdefault("guest", []).append(("onAll", msg)))

    def test_records(self) -> None:
        """
        C{uids} as Pomelo's C{{"uid", "sid"}} records, with an C{opts}, or as pairs.
        """
        records = [{"uid": "ann", "sid": "connector-1"}, {"uid": "bob", "sid": "connector-2"}]
        self.assertEqual(self.result(self.channels.push_message_by_uids("onChat", {"n": 1}, records, {})), [])
        self.assertEqual(self.result(self.channels.push_message_by_uids("onChat", {"n": 2}, [("ann", "connector-1")])),
                         [])
        self.assertEqual(self.pushed, {"ann": [("onChat", {"n": 1}), ("onChat", {"n": 2})],
                                       "bob": [("onChat", {"n": 1})]})

    def test_routeInMessage(self) -> None:
        """
        The one-argument form: the message carries its route and is pushed whole.
        """
        msg = {"route": "onChat", "text": "hi"}
        d = self.channels.push_message_by_uids(msg, [{"uid": "bob", "sid": "connector-2"}])
        self.assertEqual(self.result(d), [])
        channel = self.channels.create_channel("room")
        channel.add("ann", "connector-1")
        self.assertEqual(self.result(channel.push_message({"route": "onChat", "n": 3}, {})), [])
        self.assertEqual(self.result(channel.push_message("onChat", {"n": 4}, {})), [])
        self.assertEqual(self.pushed, {"bob": [("onChat", msg)],
                                       "ann": [("onChat", {"route": "onChat", "n": 3}), ("onChat", {"n": 4})]})

    def test_malformed(self) -> None:
        """
        A record without a uid or a frontend id, a bare mapping, or a message
        with no route is a ValueError saying what is wrong; nobody gets the push.
        """
        push = self.channels.push_message_by_uids
        error = self.assertRaises(ValueError, push, "onChat", {}, [{"uid": "ann", "sid": "connector-1"}, {"uid": "bob"}])
        self.assertIn("needs a uid and a frontend id", str(error))
        self.assertRaises(ValueError, push, "onChat", {}, [{"id": "ann", "sid": "connector-1"}])
        self.assertRaises(ValueError, push, "onChat", {}, ["ann"])
        self.assertRaises(ValueError, push, "onChat", {}, {"uid": "ann", "sid": "connector-1"})
        error = self.assertRaises(ValueError, push, {"text": "no route"}, [{"uid": "ann", "sid": "connector-1"}])
        self.assertIn("carries no route", str(error))
        self.assertRaises(ValueError, self.channels.create_channel("room").push_message, {"text": "no route"})
        self.cluster.flush()
        self.assertEqual(self.pushed, {})

    def test_broadcastFilter(self) -> None:
        """
        C{broadcast(type, route, msg, opts)}: C{binded} reaches only bound
        sessions, and each frontend's C{broadcast_filter} decides with the
        C{filterParam} who gets it.
        """
        for app in self.cluster.apps.values():
            app.channels.broadcast_filter = lambda session, msg, param: session.uid != param
        self.assertEqual(self.result(self.channels.broadcast("connector", "onAll", {"n": 1}, {"binded": True})), 2)
        self.assertEqual(self.result(self.channels.broadcast("connector", "onAll", {"n": 2},
                                                             {"binded": True, "filterParam": "ann"})), 1)
        self.assertEqual(self.result(self.channels.broadcast("connector", "onAll", {"n": 3}, filter_param="bob")), 2)
        self.assertEqual(self.pushed, {"ann": [("onAll", {"n": 1}), ("onAll", {"n": 3})],
                                       "bob": [("onAll", {"n": 1}), ("onAll", {"n": 2})],
                                       "guest": [("onAll", {"n": 3})]})


class BackendSessionTests(ClusterTestsMixin, SynchronousTestCase):
    """
    mqant's session calls on backend sessions and frontend sessions.
    """

    def setUp(self) -> None:
        self.cluster = self.make()
        self.client = self.login("connector-1", "ann")
        self.frontend_session, = self.cluster.apps["connector-1"].sessions
        self.frontend_session.set("rid", "r1")
        service = self.cluster.apps["area-1"].backend_sessions
        self.session = self.result(service.get("connector-1", self.frontend_session.id))
        self.calls: list[str] = []
        sys = self.cluster.apps["connector-1"].node.sys
        call = sys.call
        sys.call = lambda name, args: (self.calls.append(name), call(name, args))[1]

    def test_setBatch(self) -> None:
        """
        C{set_batch} sets several settings on the copy and the real session
        in one call.
        """
        self.result(self.session.set_batch({"a": 1, "b": 2}))
        self.assertEqual(self.calls, ["push"])
        self.assertEqual(self.frontend_session.settings, {"rid": "r1", "a": 1, "b": 2})
        self.assertEqual(self.session.settings, {"rid": "r1", "a": 1, "b": 2})

    def test_importAndSetSettings(self) -> None:
        """
        C{import_settings} adds to the copy, its own values winning;
        C{set_settings} replaces them; neither calls the frontend.
        """
        self.session.import_settings({"rid": "other", "gold": 5})
        self.assertEqual(self.session.settings, {"rid": "r1", "gold": 5})
        self.session.set_settings({"only": 1})
        self.assertEqual(self.session.settings, {"only": 1})
        self.assertEqual(self.calls, [])
        self.result(self.session.push_all())
        self.assertEqual(self.frontend_session.settings, {"only": 1})

    def test_refresh(self) -> None:
        """
        C{refresh} reads the real session again into the copy; a session
        gone fails it with a 404.
        """
        self.session.set("local", True)
        self.frontend_session.set("rid", "r2")
        self.assertIs(self.result(self.session.refresh()), self.session)
        self.assertEqual((self.session.uid, self.session.settings), ("ann", {"rid": "r2"}))
        self.client.close()
        self.cluster.flush()
        d = self.session.refresh()
        self.cluster.flush()
        failure = self.failureResultOf(d, GamenetError)
        self.assertEqual(failure.value.code, 404)

    def test_connectedAndClose(self) -> None:
        """
        C{is_connected} asks the frontend; C{close} closes the connection
        without a kick package, with its reason.
        """
        reasons: list[str] = []
        self.frontend_session.on_close(lambda session, reason: reasons.append(reason))
        self.assertIs(self.result(self.session.is_connected()), True)
        self.result(self.session.close("bye"))
        self.cluster.flush()
        self.assertEqual(reasons, ["bye"])
        self.assertIs(self.result(self.session.is_connected()), False)

    def test_frontendSession(self) -> None:
        """
        On the frontend, C{import_settings} keeps the session's values,
        C{set_settings} replaces them, C{set_batch} sets several.
        """
        session = self.frontend_session
        self.result(session.import_settings({"rid": "x", "gold": 1}))
        self.assertEqual(session.settings, {"rid": "r1", "gold": 1})
        self.result(session.set_batch({"gold": 2, "hp": 9}))
        self.assertEqual(session.settings, {"rid": "r1", "gold": 2, "hp": 9})
        self.result(session.set_settings({"hp": 1}))
        self.assertEqual(session.settings, {"hp": 1})


WAIT = 5.0


class LoopbackTests(TestCase):
    """
    The channel shapes and backend session calls between servers linked
    over real loopback sockets, with real clients.
    """

    timeout = 30
    registrations = ClusterTestsMixin.registrations

    async def wait_for(self, predicate: Any, what: str) -> None:
        deadline = reactor.seconds() + WAIT
        while not predicate():
            if reactor.seconds() > deadline:
                self.fail(f"timed out waiting for {what}")
            await deferLater(reactor, 0.01, lambda: None)

    async def setUp(self) -> None:
        ports = free_ports(5)
        config = cluster_config(frontend("connector-1", "connector", ports[0], ports[1]),
                                frontend("connector-2", "connector", ports[2], ports[3]),
                                backend("area-1", "area", ports[4]), extra_routes=["onChat", "onAll"])
        self.apps = {}
        for server_id in ("connector-1", "connector-2", "area-1"):
            self.apps[server_id] = await start_server(config, server_id, self.registrations)
        self.addCleanup(lambda: DeferredList([app.stopService() for app in self.apps.values()]))
        await self.wait_for(lambda: all(link.up for app in self.apps.values() for link in app.node.links.values()),
                            "the node links")
        self.pushed: dict[str, list[Any]] = {}
        self.clients = {}
        for port, uid in ((ports[0], "ann"), (ports[2], "bob"), (ports[0], None)):
            client = await Client.connect(reactor, "127.0.0.1", port, "tcp", timeout=WAIT)
            self.addCleanup(client.close)
            self.clients[uid or "guest"] = client
            if uid is not None:
                await client.request("connector.entry.login", {"uid": uid})
            for route in ("onChat", "onAll"):
                client.on(route, lambda msg, who=uid or "guest", route=route:
                          self.pushed.setdefault(who, []).append((route, msg)))

    async def test_channels(self) -> None:
        """
        Pomelo's records, the route carried by the message, a malformed
        record refused before anything is pushed, and C{broadcast} with
        C{binded} and C{filterParam}, reach the clients on both connectors.
        """
        channels = self.apps["area-1"].channels
        with self.assertRaises(ValueError):
            channels.push_message_by_uids("onChat", {"n": 0}, [{"uid": "ann", "sid": "connector-1"}, {"uid": "bob"}])
        records = [{"uid": "ann", "sid": "connector-1"}, {"uid": "bob", "sid": "connector-2"}]
        self.assertEqual(await channels.push_message_by_uids("onChat", {"n": 1}, records, {}), [])
        room = channels.create_channel("room")
        room.add("bob", "connector-2")
        self.assertEqual(await room.push_message({"route": "onChat", "n": 2}), [])
        for app in self.apps.values():
            app.channels.broadcast_filter = lambda session, msg, param: param is None or session.uid != param
        self.assertEqual(await channels.broadcast("connector", "onAll", {"n": 3}, {"binded": True, "filterParam": "bob"}),
                         1)
        self.assertEqual(await channels.broadcast("connector", "onAll", {"n": 4}), 3)
        await self.wait_for(lambda: len(self.pushed.get("guest", [])) == 1, "the pushes")
        self.assertEqual(self.pushed, {
            "ann": [("onChat", {"n": 1}), ("onAll", {"n": 3}), ("onAll", {"n": 4})],
            "bob": [("onChat", {"n": 1}), ("onChat", {"route": "onChat", "n": 2}), ("onAll", {"n": 4})],
            "guest": [("onAll", {"n": 4})],
        })

    async def test_routeFunction(self) -> None:
        """
        A four-argument route function on a connector sees the session, the
        route, the body as the client sent it and the servers by id, for a
        message forwarded over the node link.
        """
        seen: list[Any] = []

        def pick(session, route, body, servers):
            seen.append((session.uid, route, json.loads(body), sorted(servers)))
            return "area-1"

        self.apps["connector-1"].route("area", pick)
        answer = await self.clients["ann"].request("area.area.where", {"to": "area-1"})
        self.assertEqual(answer, {"server": "area-1", "msg": {"to": "area-1"}})
        self.assertEqual(seen, [("ann", "area.area.where", {"to": "area-1"}, ["area-1"])])

    async def test_backendSession(self) -> None:
        """
        From a backend: C{set_batch} reaches the frontend session, C{refresh}
        reads it back, C{is_connected} asks it, C{close} closes the client's
        connection with its reason.
        """
        frontend_session, = [s for s in self.apps["connector-2"].sessions]
        session = await self.apps["area-1"].backend_sessions.get("connector-2", frontend_session.id)
        await session.set_batch({"gold": 5, "hp": 9})
        self.assertEqual(frontend_session.settings, {"gold": 5, "hp": 9})
        frontend_session.set("hp", 8)
        session.set("local", 1)
        await session.refresh()
        self.assertEqual((session.uid, session.settings), ("bob", {"gold": 5, "hp": 8}))
        self.assertIs(await session.is_connected(), True)
        await session.close("bye")
        await self.wait_for(lambda: self.clients["bob"].closed.called, "bob's connection to close")
        self.assertEqual(frontend_session.close_reason, "bye")
        self.assertIs(await session.is_connected(), False)
        with self.assertRaises(GamenetError):
            await session.refresh()


class Room:
    log: list[Any] = []

    def __init__(self, app):
        self.app = app

    def init(self, request):
        Room.log.append(("init", request.route, request.msg, request.session.uid))

    def act(self, msg, session):
        Room.log.append(("act", msg))
        if msg == "boom":
            raise GamenetError("no", 409)
        return {"ok": msg}

    def shut(self, request):
        Room.log.append(("shut", request.route))


class Plain:
    def __init__(self, app):
        pass

    def act(self, msg, session):
        return msg


class ControllerTests(ClusterTestsMixin, SynchronousTestCase):
    """
    GoFrame's controller calls on game routes.
    """

    registrations = [controller(Room, "area"), controller(Plain, "connector"), handler(Entry, "connector")]

    def test_initShut(self) -> None:
        """
        C{init(request)} runs before the method and C{shut(request)} after,
        even when the method raises; the request has the route, the body
        and the session.
        """
        Room.log = []
        self.cluster = self.make()
        client = self.login("connector-1", "ann")
        self.assertEqual(self.ask(client, "area.room.act", 1), {"ok": 1})
        self.assertEqual(self.ask(client, "area.room.act", "boom"), {"code": 409, "message": "no"})
        self.assertEqual(Room.log, [
            ("init", "area.room.act", 1, "ann"), ("act", 1), ("shut", "area.room.act"),
            ("init", "area.room.act", "boom", "ann"), ("act", "boom"), ("shut", "area.room.act"),
        ])

    def test_without(self) -> None:
        """
        A controller without them is served as before.
        """
        self.cluster = self.make()
        client = self.cluster.client("connector-1")
        self.assertEqual(self.ask(client, "connector.plain.act", [1]), [1])
