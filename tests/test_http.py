"""
Tests for L{gamenet.http}: GoFrame's registration modes, patterns, domains,
the request and its errors, served through L{HttpResource} to a real HTTP
client over memory (L{StubTreq}); the priority rules, the hook events and
the seed's examples are in C{tests/test_http_goframe.py}.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from treq.testing import StubTreq

from gamenet import Application, GamenetError, http_controller, http_handler, http_hook, http_object
from gamenet.http import Controller, HttpResource, parse, uri_name
from gamenet.testing import backend, cluster_config


class PatternTests(SynchronousTestCase):
    """
    L{parse}: GoFrame's C{[METHOD:]/path[@domain]}.
    """

    def test_forms(self):
        """
        A method, named parts of three kinds and domains are read; ALL and no
        method mean every method.
        """
        p = parse("get:/list/{page}.html@A.example, b.example")
        self.assertEqual((p.method, p.path, p.domains, p.rule, p.depth, p.fields),
                         ("GET", "/list/{page}.html", ("a.example", "b.example"), "/list/<gffield:page>.html", 2, 1))
        self.assertIsNone(parse("ALL:/x").method)
        self.assertEqual(parse("/u/:name/*rest").rule, "/u/<gfname:name>/<gfany:rest>")

    def test_errors(self):
        """
        A bad pattern is a sentence naming it.
        """
        for text, problem in [("x", "expected [METHOD:]/path"), ("FETCH:/x", "expected [METHOD:]/path"),
                              ("/a/:b/:b", "the name b appears twice"), ("/a/{1x}", "is not a name"),
                              ("/a/{b", "unbalanced braces"), ("/x@", "no domain after @"), ("/<x>", "< and >")]:
            with self.assertRaises(ValueError) as caught:
                parse(text)
            self.assertIn(problem, str(caught.exception), text)
            self.assertIn(repr(text), str(caught.exception))

    def test_uriName(self):
        """
        GoFrame's default method URI: lower case, words joined by C{-}, a
        word starting at each C{_} or capital.
        """
        for name, uri in (("show_list", "show-list"), ("Name", "name"), ("ShowList", "show-list"),
                          ("Show_List", "show-list"), ("Show1", "show1"), ("get_HP", "get-h-p"),
                          ("UserName", "user-name"), ("ShowListItems", "show-list-items")):
            self.assertEqual(uri_name(name), uri, name)


class HttpTestCase(SynchronousTestCase):
    """
    A backend's HTTP routes served to a L{StubTreq}.
    """

    def setUp(self):
        self.app = Application(cluster_config(backend("web-1", "web")), "web-1")
        self.http = self.app.http
        self.stub = StubTreq(HttpResource(self.http, "web-1"))

    def call(self, method: str, path: str, host: str = "127.0.0.1", **kwargs: Any) -> tuple[int, Any, Any]:
        """
        One request; its status, headers and body (decoded when JSON).
        """
        d = self.stub.request(method, f"http://{host}{path}", **kwargs)
        self.stub.flush()
        response = self.successResultOf(d)
        d = self.stub.content(response)
        self.stub.flush()
        body = self.successResultOf(d)
        if body and response.headers.getRawHeaders(b"content-type", [b""])[0] == b"application/json":
            body = json.loads(body)
        return response.code, response.headers, body

    def assertAnswer(self, method: str, path: str, expected: Any, status: int = 200, **kwargs: Any) -> None:
        code, _, body = self.call(method, path, **kwargs)
        self.assertEqual((code, body), (status, expected), f"{method} {path}")


class Shop:
    def __init__(self, app=None):
        self.app = app

    def index(self, request):
        return "index"

    def show(self, request):
        return "show"

    def show_list(self, request):
        return ["a", "b"]

    def _hidden(self, request):
        return "hidden"


class Rest:
    def get(self, request):
        return {"verb": "get", "id": request.params.get("id")}

    def post(self, request):
        return {"verb": "post", "json": request.json}

    def delete(self, request):
        return {"verb": "delete"}

    def hello(self, request):
        return "hello"


class Counted(Controller):
    made: list[Any] = []
    calls: list[str] = []

    def __init__(self, app):
        super().__init__(app)
        Counted.made.append(self)

    def init(self, request):
        super().init(request)
        Counted.calls.append("init")

    def shut(self, request):
        Counted.calls.append("shut")

    def name(self, request):
        Counted.calls.append("name")
        return {"same": request is self.request, "app": self.app.server_id}

    def fail(self, request):
        raise GamenetError("no", 409)

    def get(self, request):
        return "got"


class Refusing(Counted):
    def init(self, request):
        super().init(request)
        raise GamenetError("not now", 503)


class ModeTests(HttpTestCase):
    """
    Every registration mode of the seed.
    """

    def setUp(self):
        super().setUp()
        Counted.made, Counted.calls = [], []

    def test_function(self):
        """
        A function on a pattern gets the request, with the Application and
        the client's address.
        """
        self.http.bind_handler("/hello", lambda r: {"hi": r.query.get("name"), "server": r.app.server_id,
                                                    "peer": r.peer})
        self.assertAnswer("GET", "/hello?name=ann", {"hi": "ann", "server": "web-1", "peer": "127.0.0.1"})

    def test_objectMethod(self):
        """
        One method of an object, bound, serves as a function.
        """
        self.http.bind_handler("/one", Shop().show)
        self.assertAnswer("GET", "/one", "show")

    def test_object(self):
        """
        Each public method of an object serves pattern/<uri name>; C{index}
        serves the pattern too; private methods serve nothing. A class is
        made once, with the app.
        """
        shop = self.http.bind_object("/shop", Shop)
        self.assertIs(shop.app, self.app)
        self.assertAnswer("GET", "/shop/show", "show")
        self.assertAnswer("POST", "/shop/show-list", ["a", "b"])
        self.assertAnswer("GET", "/shop", "index")
        self.assertAnswer("GET", "/shop/index", "index")
        self.assertEqual(self.call("GET", "/shop/_hidden")[0], 404)

    def test_objectSubset(self):
        """
        C{bind_object_method} serves only the methods named; others are 404.
        """
        self.http.bind_object_method("/om", Shop(), "show, show_list")
        self.assertAnswer("GET", "/om/show", "show")
        self.assertAnswer("GET", "/om/show-list", ["a", "b"])
        self.assertEqual(self.call("GET", "/om/index")[0], 404)
        with self.assertRaises(ValueError):
            self.http.bind_object_method("/bad", Shop(), "nothing")

    def test_nameMapping(self):
        """
        C{name_func} names the method URIs; C{{.method}} places them, and
        C{{.struct}} places the class's name, as in GoFrame.
        """
        class ShopFront(Shop):
            pass

        self.http.bind_object("/a", Shop(), name_func=lambda n: n.replace("_", ""))
        self.http.bind_object("/b/{.method}/v1", Shop(), methods=["show"])
        self.http.bind_object("/{.struct}-{.method}", ShopFront(), methods=["show_list"])
        self.http.bind_controller("/c/{.struct}/{.method}", Counted, "name")
        self.assertAnswer("GET", "/a/showlist", ["a", "b"])
        self.assertAnswer("GET", "/b/show/v1", "show")
        self.assertEqual(self.call("GET", "/b/show")[0], 404)
        self.assertAnswer("GET", "/shop-front-show-list", ["a", "b"])
        self.assertEqual(self.call("GET", "/c/counted/name")[0], 200)

    def test_rest(self):
        """
        A REST object's verb methods answer those methods; another method is
        405 with Allow; its other methods serve nothing.
        """
        self.http.bind_object_rest("/rest/:id", Rest())
        self.assertAnswer("GET", "/rest/7", {"verb": "get", "id": "7"})
        self.assertAnswer("POST", "/rest/7", {"verb": "post", "json": {"a": 1}}, json={"a": 1})
        self.assertAnswer("DELETE", "/rest/7", {"verb": "delete"})
        code, headers, body = self.call("PUT", "/rest/7")
        self.assertEqual((code, body["code"]), (405, 405))
        self.assertEqual(headers.getRawHeaders(b"allow"), [b"DELETE, GET, HEAD, POST"])
        self.assertEqual(self.call("GET", "/rest/7/hello")[0], 404)
        code, headers, body = self.call("HEAD", "/rest/7")
        self.assertEqual((code, body), (200, b""))

    def test_restHead(self):
        """
        A C{head} method answers HEAD; without one, C{get} does.
        """
        heads = []

        class WithHead(Rest):
            def head(self, request):
                heads.append(request.method)

        self.http.bind_object_rest("/h", WithHead())
        self.assertEqual(self.call("HEAD", "/h")[0], 200)
        self.assertEqual(heads, ["HEAD"])

    def test_controller(self):
        """
        A controller is made per request: init, the method, shut, in order.
        """
        self.http.bind_controller("/c", Counted)
        self.assertAnswer("GET", "/c/name", {"same": True, "app": "web-1"})
        self.assertAnswer("GET", "/c/name", {"same": True, "app": "web-1"})
        self.assertEqual(len(Counted.made), 2)
        self.assertEqual(Counted.calls, ["init", "name", "shut"] * 2)
        self.assertEqual(self.call("GET", "/c/init")[0], 404)
        self.assertEqual(self.call("GET", "/c/shut")[0], 404)

    def test_controllerShutOnError(self):
        """
        C{shut} runs when the method raises; the error is the answer.
        """
        self.http.bind_controller_method("/c", Counted, "fail")
        self.assertAnswer("GET", "/c/fail", {"code": 409, "message": "no"}, 409)
        self.assertEqual(Counted.calls, ["init", "shut"])
        self.assertEqual(self.call("GET", "/c/name")[0], 404)

    def test_controllerShutOnInitError(self):
        """
        C{shut} runs when C{init} raises; the method is not called.
        """
        self.http.bind_controller_method("/r", Refusing, "name")
        self.assertAnswer("GET", "/r/name", {"code": 503, "message": "not now"}, 503)
        self.assertEqual(Counted.calls, ["init", "shut"])

    def test_controllerRest(self):
        """
        A REST controller: a new one per request, for its verbs only.
        """
        self.http.bind_controller_rest("/cr", Counted)
        self.assertAnswer("GET", "/cr", "got")
        self.assertEqual(self.call("POST", "/cr")[0], 405)
        self.assertEqual(Counted.calls, ["init", "shut"])

    def test_results(self):
        """
        A handler may answer a Deferred or a coroutine; bytes go out as they are.
        """
        async def later(request):
            return await succeed({"later": True})

        self.http.bind_handler("/d", lambda r: succeed([1]))
        self.http.bind_handler("/c", later)
        self.http.bind_handler("/b", lambda r: b"\x00raw")
        self.assertAnswer("GET", "/d", [1])
        self.assertAnswer("GET", "/c", {"later": True})
        code, headers, body = self.call("GET", "/b")
        self.assertEqual((code, body, headers.getRawHeaders(b"content-type")),
                         (200, b"\x00raw", [b"application/octet-stream"]))

    def test_plugins(self):
        """
        Registrations of kind HTTP, as plugins declare them, are made when the
        server starts; an object class gets the components' lifecycle.
        """
        inits = []

        class Board:
            def __init__(self, app):
                self.app = app

            def init(self):
                inits.append(self)

            def top(self, request):
                return [1, 2]

        app = Application(cluster_config(backend("web-1", "web")), "web-1", [
            http_handler("/f", lambda r: "f", "web"),
            http_handler("/other", lambda r: "other", "chat"),
            http_object("/board", Board),
            http_object("/rest", Rest(), rest=True),
            http_controller("/c", Counted, methods=["name"]),
            http_hook("/f", "BeforeOutput", lambda r: setattr(r, "response", r.response + "!")),
        ])
        app._prepare()
        self.successResultOf(Deferred.fromCoroutine(app._lifecycle_all("init")))
        self.assertEqual(len(inits), 1)
        self.stub = StubTreq(HttpResource(app.http, "web-1"))
        self.assertAnswer("GET", "/f", "f!")
        self.assertEqual(self.call("GET", "/other")[0], 404)
        self.assertAnswer("GET", "/board/top", [1, 2])
        self.assertAnswer("DELETE", "/rest", {"verb": "delete"})
        self.assertEqual(self.call("GET", "/c/name")[0], 200)


class PatternServeTests(HttpTestCase):
    """
    Each pattern form, served.
    """

    def test_forms(self):
        """
        C{:name} takes a whole part; C{{field}} part of one, several per
        part; C{*any} the rest, slashes included, or nothing.
        """
        echo = lambda r: r.params  # noqa: E731
        self.http.bind_handler("/user/:name", echo)
        self.http.bind_handler("/list/{page}.html", echo)
        self.http.bind_handler("/pair/{a}-{b}", echo)
        self.http.bind_handler("/files/*path", echo)
        self.assertAnswer("GET", "/user/b%C3%A9a", {"name": "béa"})
        self.assertEqual(self.call("GET", "/user/")[0], 404)
        self.assertAnswer("GET", "/list/3.html", {"page": "3"})
        self.assertAnswer("GET", "/pair/x-y", {"a": "x", "b": "y"})
        self.assertAnswer("GET", "/files/a/b.txt", {"path": "a/b.txt"})
        self.assertAnswer("GET", "/files", {"path": ""})
        self.assertAnswer("GET", "/user/ann/", {"name": "ann"})
        self.assertAnswer("GET", "/list/3.html/", {"page": "3"})

    def test_method(self):
        """
        C{GET:} serves GET (and HEAD) only: another method is 405.
        """
        self.http.bind_handler("GET:/only", lambda r: "get")
        self.assertAnswer("GET", "/only", "get")
        self.assertEqual(self.call("POST", "/only")[0], 405)


class DomainTests(HttpTestCase):
    """
    Registrations bound to host names.
    """

    def test_domain(self):
        """
        A domain's registrations serve only its hosts; every host gets the
        others, a domain's own winning for its hosts.
        """
        self.http.bind_handler("/", lambda r: "default")
        self.http.domain("a.example", "B.example").bind_handler("/", lambda r: "domain")
        self.http.domain("a.example").bind_object_method("/om", Shop(), "show")
        self.http.bind_handler("/at@c.example", lambda r: "c")
        self.assertAnswer("GET", "/", "domain", host="a.example")
        self.assertAnswer("GET", "/", "domain", host="b.example:8080")
        self.assertAnswer("GET", "/", "default", host="127.0.0.1")
        self.assertAnswer("GET", "/om/show", "show", host="a.example")
        self.assertEqual(self.call("GET", "/om/show", host="localhost")[0], 404)
        self.assertAnswer("GET", "/at", "c", host="c.example")
        self.assertEqual(self.call("GET", "/at", host="a.example")[0], 404)


class ErrorTests(HttpTestCase):
    """
    Every failure is JSON with its status.
    """

    def test_badJson(self):
        """
        A body that says or defaults to JSON and is not is 400, before any
        hook, and logged.
        """
        hooked = []
        self.http.bind_handler("/x", lambda r: r.json)
        self.http.bind_hook("/x", "BeforeServe", hooked.append)
        with capturedLogs() as events:
            code, _, body = self.call("POST", "/x", data=b"{nope")
        self.assertEqual((code, body["code"]), (400, 400))
        self.assertIn("not JSON", body["message"])
        self.assertEqual(hooked, [])
        self.assertEqual([(e["method"], e["path"], e["code"], e["peer"]) for e in events if "code" in e],
                         [("POST", "/x", 400, "127.0.0.1")])
        self.assertAnswer("POST", "/x", None, data=b"plain", headers={"Content-Type": "text/plain"})

    def test_inputs(self):
        """
        The query, a form and a JSON body; C{get} looks in the route values,
        the JSON body, the form and the query, in that order.
        """
        self.http.bind_handler("/in/:a", lambda r: [r.query, r.form, r.json, r.get("a"), r.get("b"), r.get("c")])
        self.assertAnswer("POST", "/in/1?b=q&c=q", [{"b": "q", "c": "q"}, {}, {"b": "j"}, "1", "j", "q"],
                          json={"b": "j"})
        self.assertAnswer("POST", "/in/1?c=q", [{"c": "q"}, {"b": "f"}, None, "1", "f", "q"], data={"b": "f"})

    def test_notFound(self):
        """
        A path no pattern matches is 404, as JSON, and logged with the
        server's id.
        """
        with capturedLogs() as events:
            self.assertAnswer("GET", "/missing", {"code": 404, "message": "not found: /missing"}, 404)
            self.assertEqual(self.call("GET", "/a%0Ab")[0], 404)
        self.assertEqual([formatEvent(e) for e in events if "code" in e],
                         ["HTTP GET /missing answered 404 (not found: /missing) to 127.0.0.1 on web-1",
                          "HTTP GET /a%0Ab answered 404 (not found: /a\\nb) to 127.0.0.1 on web-1"])

    def test_internal(self):
        """
        An exception that is not a GamenetError is logged and answered 500
        without its details; a GamenetError code outside 400-599 is 500 too,
        its code in the body.
        """
        self.http.bind_handler("/boom", lambda r: 1 / 0)
        self.http.bind_handler("/game", lambda r: (_ for _ in ()).throw(GamenetError("game rule", 1001)))
        self.http.bind_handler("/set", lambda r: {1, 2})
        self.assertAnswer("GET", "/boom", {"code": 500, "message": "internal server error"}, 500)
        self.assertAnswer("GET", "/set", {"code": 500, "message": "internal server error"}, 500)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)
        self.assertAnswer("GET", "/game", {"code": 1001, "message": "game rule"}, 500)
