"""
Tests for L{gamenet.http}: GoFrame's registration modes, patterns, priority
rules, domains and hook events, served through L{HttpResource} to a real
HTTP client over memory (L{StubTreq}).
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase
from treq.testing import StubTreq

from gamenet import Application, GamenetError, Refused, http_controller, http_handler, http_hook, http_object
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
        GoFrame's default method URI: lower case, words joined by C{-}.
        """
        self.assertEqual(uri_name("show_list"), "show-list")
        self.assertEqual(uri_name("Name"), "name")


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


class ModeTests(HttpTestCase):
    """
    Every registration mode of the seed.
    """

    def setUp(self):
        super().setUp()
        Counted.made, Counted.calls = [], []

    def test_function(self):
        """
        A function on a pattern gets the request, with the Application.
        """
        self.http.bind_handler("/hello", lambda r: {"hi": r.query.get("name"), "server": r.app.server_id})
        self.assertAnswer("GET", "/hello?name=ann", {"hi": "ann", "server": "web-1"})

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
        C{name_func} names the method URIs; C{{method}} places them.
        """
        self.http.bind_object("/a", Shop(), name_func=lambda n: n.replace("_", ""))
        self.http.bind_object("/b/{method}/v1", Shop(), methods=["show"])
        self.assertAnswer("GET", "/a/showlist", ["a", "b"])
        self.assertAnswer("GET", "/b/show/v1", "show")

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


class PriorityTests(HttpTestCase):
    """
    GoFrame's priority between patterns that match the same URI, whatever
    the order they were registered in.
    """

    def served(self, patterns: list[str], path: str, method: str = "GET") -> str:
        """
        Which of C{patterns} serves C{path}, registered in both orders.
        """
        answers = set()
        for order in (patterns, list(reversed(patterns))):
            self.setUp()
            for pattern in order:
                self.http.bind_handler(pattern, lambda r, p=pattern: p)
            code, _, body = self.call(method, path)
            self.assertEqual(code, 200)
            answers.add(body)
        self.assertEqual(len(answers), 1, f"{path}: the order of registration changed the answer")
        return answers.pop()

    def test_deeperFirst(self):
        """
        A deeper pattern wins, even over a static first part.
        """
        self.assertEqual(self.served(["/user/*any", "/:a/:b/:c"], "/user/x/y"), "/:a/:b/:c")
        self.assertEqual(self.served(["/user/*any", "/:a/:b/:c"], "/user/x"), "/user/*any")

    def test_staticFirst(self):
        """
        At the same depth, static text wins over a fuzzy part.
        """
        self.assertEqual(self.served(["/:name/:action", "/:name/show"], "/x/show"), "/:name/show")
        self.assertEqual(self.served(["/:name/:action", "/:name/show"], "/x/edit"), "/:name/:action")

    def test_fieldBeforeName(self):
        """
        C{{field}} wins over C{:name}, when its characters match.
        """
        self.assertEqual(self.served(["/:name/:action", "/:name/{action}"], "/x/y"), "/:name/{action}")
        self.assertEqual(self.served(["/:name/:action", "/:name/{action}"], "/x/y~z"), "/:name/:action")

    def test_nameBeforeAny(self):
        """
        C{:name} wins over C{*any}.
        """
        self.assertEqual(self.served(["/:name/*action", "/:name/:action"], "/x/y"), "/:name/:action")
        self.assertEqual(self.served(["/:name/*action", "/:name/:action"], "/x/y/z"), "/:name/*action")

    def test_methodFirst(self):
        """
        A pattern for one method wins over one for every method.
        """
        self.assertEqual(self.served(["/m", "POST:/m"], "/m", "POST"), "POST:/m")
        self.assertEqual(self.served(["/m", "POST:/m"], "/m", "GET"), "/m")

    def test_methodFallsThrough(self):
        """
        A pattern that matches the path but not the method leaves the
        request to the next pattern in order; 405 only when none takes it.
        """
        self.assertEqual(self.served(["GET:/m/:id", "/:a/:b"], "/m/1", "DELETE"), "/:a/:b")
        self.assertEqual(self.served(["GET:/m/:id", "/:a/:b"], "/m/1", "GET"), "GET:/m/:id")

    def test_twice(self):
        """
        The same pattern twice is refused.
        """
        self.http.bind_handler("GET:/x", lambda r: 1)
        with self.assertRaises(ValueError):
            self.http.bind_handler("GET:/x", lambda r: 2)


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


class HookTests(HttpTestCase):
    """
    BeforeServe, AfterServe, BeforeOutput and AfterOutput on URI patterns.
    """

    def setUp(self):
        super().setUp()
        self.seen: list[str] = []
        self.http.bind_handler("/api/:thing", lambda r: self.seen.append("handler") or {"thing": r.params["thing"]})

    def test_order(self):
        """
        Every event, in its place, each event's hooks in registration order,
        only for URIs their patterns match.
        """
        for event in ("BeforeServe", "AfterServe", "BeforeOutput", "AfterOutput"):
            for n in (1, 2):
                self.http.bind_hook("/api/*any", event, lambda r, e=event, n=n: self.seen.append(f"{e}{n}"))
        self.http.bind_hook("/other", "BeforeServe", lambda r: self.seen.append("other"))
        self.assertAnswer("GET", "/api/x", {"thing": "x"})
        self.assertEqual(self.seen, ["BeforeServe1", "BeforeServe2", "handler", "AfterServe1", "AfterServe2",
                                     "BeforeOutput1", "BeforeOutput2", "AfterOutput1", "AfterOutput2"])

    def test_stop(self):
        """
        A BeforeServe hook stops a request by answering, or by raising; the
        handler is not called.
        """
        def auth(request):
            if request.header("authorization") != "Bearer t":
                raise Refused("wrong token")

        self.http.bind_hooks("POST:/api/*any", {"BeforeServe": auth})
        self.http.bind_hook("/api/cached", "before_serve", lambda r: r.respond({"cached": True}, 203))
        self.assertAnswer("POST", "/api/x", {"code": 403, "message": "wrong token"}, 403)
        self.assertAnswer("POST", "/api/x", {"thing": "x"}, headers={"Authorization": "Bearer t"})
        self.assertAnswer("GET", "/api/cached", {"cached": True}, 203)
        self.assertEqual(self.seen, ["handler"])

    def test_change(self):
        """
        AfterServe and BeforeOutput hooks may change the answer, its status
        and headers, or turn an error into an answer.
        """
        def wrap(request):
            request.response = {"data": request.response}

        def recover(request):
            if request.error is not None:
                request.error, request.response, request.status = None, {"recovered": True}, 202

        self.http.bind_hook("/api/:thing", "AfterServe", wrap)
        self.http.bind_hook("/*any", "BeforeOutput", recover)
        self.http.bind_hook("/*any", "BeforeOutput", lambda r: r.set_header("x-served-by", r.app.server_id))
        code, headers, body = self.call("GET", "/api/y")
        self.assertEqual((code, body, headers.getRawHeaders(b"x-served-by")), (200, {"data": {"thing": "y"}},
                                                                                 [b"web-1"]))
        self.assertAnswer("GET", "/nothing", {"recovered": True}, 202)

    def test_domainHook(self):
        """
        A hook on a domain runs only for its hosts.
        """
        self.http.domain("a.example").bind_hook("/api/*any", "BeforeServe", lambda r: r.respond("a"))
        self.assertAnswer("GET", "/api/x", "a", host="a.example")
        self.assertAnswer("GET", "/api/x", {"thing": "x"}, host="b.example")

    def test_badEvent(self):
        """
        An unknown event is refused, naming the events.
        """
        with self.assertRaises(ValueError) as caught:
            self.http.bind_hook("/x", "BeforeClose", print)
        self.assertIn("before_serve", str(caught.exception))


class ErrorTests(HttpTestCase):
    """
    Every failure is JSON with its status.
    """

    def test_badJson(self):
        """
        A body that says or defaults to JSON and is not is 400, before any hook.
        """
        self.http.bind_handler("/x", lambda r: r.json)
        code, _, body = self.call("POST", "/x", data=b"{nope")
        self.assertEqual((code, body["code"]), (400, 400))
        self.assertIn("not JSON", body["message"])
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
        A path no pattern matches is 404, as JSON.
        """
        self.assertAnswer("GET", "/missing", {"code": 404, "message": "not found: /missing"}, 404)

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
