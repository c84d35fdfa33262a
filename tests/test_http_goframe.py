"""
L{gamenet.http} against GoFrame itself: the examples of GoFrame's service
registration chapter, case by case, in gamenet's Python style, GoFrame's
priority rules between patterns that match the same URI, and its hook
events, each served to a real HTTP client over memory (L{StubTreq}).
"""

from __future__ import annotations

from gamenet import Refused, http_handler, http_hook
from gamenet.http import Controller

from .test_http import HttpTestCase


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
        self.assertEqual(self.served(["/:name", "/:name/*action"], "/x/"), "/:name/*action")

    def test_staticFirst(self):
        """
        At the same depth, the pattern with more static text wins over a
        fuzzy part.
        """
        self.assertEqual(self.served(["/:name/:action", "/:name/show"], "/x/show"), "/:name/show")
        self.assertEqual(self.served(["/:name/:action", "/:name/show"], "/x/edit"), "/:name/:action")
        self.assertEqual(self.served(["/user/:name", "/user/name"], "/user/name"), "/user/name")
        self.assertEqual(self.served(["/:name/:action", "/user/name"], "/user/name"), "/user/name")
        self.assertEqual(self.served(["/src/path/{action}.do", "/src/path/del.do"], "/src/path/del.do"),
                         "/src/path/del.do")

    def test_longerStaticFirst(self):
        """
        More static text wins even over fewer named parts:
        C{/admin-goods-{page}} before C{/admin-{page}}, C{/{hash}.{type}}
        before C{/{hash}} (GoFrame's own examples).
        """
        self.assertEqual(self.served(["/admin-{page}", "/admin-goods-{page}"], "/admin-goods-2"),
                         "/admin-goods-{page}")
        self.assertEqual(self.served(["/admin-{page}", "/admin-goods-{page}"], "/admin-news-2"), "/admin-{page}")
        self.assertEqual(self.served(["/{hash}", "/{hash}.{type}"], "/abc.json"), "/{hash}.{type}")
        self.assertEqual(self.served(["/{hash}", "/{hash}.{type}"], "/abc"), "/{hash}")

    def test_fieldBeforeName(self):
        """
        C{{field}} wins over C{:name}; a field takes any characters but C{/},
        as in GoFrame.
        """
        self.assertEqual(self.served(["/:name/:action", "/:name/{action}"], "/x/y"), "/:name/{action}")
        self.assertEqual(self.served(["/:name/:action", "/:name/{action}"], "/x/y~z"), "/:name/{action}")
        self.assertEqual(self.served(["/name/:act", "/name/{act}"], "/name/go"), "/name/{act}")

    def test_nameBeforeAny(self):
        """
        C{:name} wins over C{*any}.
        """
        self.assertEqual(self.served(["/*any", "/:name"], "/x"), "/:name")
        self.assertEqual(self.served(["/*any", "/:name"], "/x/y"), "/*any")
        self.assertEqual(self.served(["/:name/*action", "/:name/:action"], "/x/y"), "/:name/:action")
        self.assertEqual(self.served(["/:name/*action", "/:name/:action"], "/x/y/z"), "/:name/*action")

    def test_methodFirst(self):
        """
        A pattern for one method wins over one for every method.
        """
        self.assertEqual(self.served(["/m", "POST:/m"], "/m", "POST"), "POST:/m")
        self.assertEqual(self.served(["/m", "POST:/m"], "/m", "GET"), "/m")
        self.assertEqual(self.served(["ALL:/m/:id", "GET:/m/:id"], "/m/1"), "GET:/m/:id")

    def test_domainFirst(self):
        """
        gamenet's own last rule: a pattern bound to the request's host wins
        over the same pattern for every host; otherwise both are in one
        order (a static pattern for every host wins over a fuzzy one bound
        to the host, and the reverse).
        """
        self.assertEqual(self.served(["/d/:id", "/d/:id@127.0.0.1"], "/d/1"), "/d/:id@127.0.0.1")
        self.assertEqual(self.served(["/d/one", "/d/:id@127.0.0.1"], "/d/one"), "/d/one")
        self.assertEqual(self.served(["/*any", "/news@127.0.0.1"], "/news"), "/news@127.0.0.1")

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

    def test_hookFails(self):
        """
        A BeforeServe hook raising another exception than a GamenetError
        fails the request 500, logged; an AfterOutput hook raising is only
        logged, the answer being out.
        """
        self.http.bind_hook("/api/boom", "BeforeServe", lambda r: 1 / 0)
        self.http.bind_hook("/api/late", "AfterOutput", lambda r: [][1])
        self.assertAnswer("GET", "/api/boom", {"code": 500, "message": "internal server error"}, 500)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertAnswer("GET", "/api/late", {"thing": "late"})
        self.assertEqual(len(self.flushLoggedErrors(IndexError)), 1)
        self.assertEqual(self.seen, ["handler"])

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


class ControllerUser(Controller):
    def Name(self, request):
        return "John"

    def Age(self, request):
        return "18"


class ControllerMethod(ControllerUser):
    def Info(self, request):
        return "Info"


class ControllerRest(Controller):
    def get(self, request):
        return "RESTFul HTTP Method GET"

    def post(self, request):
        return "RESTFul HTTP Method POST"

    def delete(self, request):
        return "RESTFul HTTP Method DELETE"

    def Hello(self, request):
        return "Hello"


class ObjectMethod:
    def Show1(self, request):
        return "show 1"

    def Show2(self, request):
        return "show 2"

    def Show3(self, request):
        return "show 3"

    def Show4(self, request):
        return "show 4"


class SeedExampleTests(HttpTestCase):
    """
    Each example of GoFrame's service registration chapter, as gamenet
    writes it, answering what the chapter says it answers.
    """

    def test_helloWorld(self):
        """
        C{BindHandler("/", ...)} answers every host; C{Domain("localhost")}
        only localhost: 127.0.0.1 gets 404.
        """
        self.http.bind_handler("/", lambda r: b"Hello World!")
        self.assertAnswer("GET", "/", b"Hello World!")
        self.setUp()
        self.http.domain("localhost").bind_handler("/", lambda r: b"Hello World!")
        self.assertEqual(self.call("GET", "/")[0], 404)
        self.assertAnswer("GET", "/", b"Hello World!", host="localhost")

    def test_controller(self):
        """
        C{BindController("/user", &ControllerUser{})}: C{/user/name} and C{/user/age}.
        """
        self.http.bind_controller("/user", ControllerUser)
        self.assertAnswer("GET", "/user/name", "John")
        self.assertAnswer("GET", "/user/age", "18")

    def test_controllerMethod(self):
        """
        C{BindControllerMethod("/method", ..., "Name, Age")}: C{/method/info}
        is 404; the names are case-sensitive.
        """
        self.http.bind_controller_method("/method", ControllerMethod, "Name, Age")
        self.assertAnswer("GET", "/method/name", "John")
        self.assertAnswer("GET", "/method/age", "18")
        self.assertEqual(self.call("GET", "/method/info")[0], 404)
        with self.assertRaises(ValueError) as caught:
            self.http.bind_controller_method("/lower", ControllerMethod, "name")
        self.assertIn("no public method name", str(caught.exception))

    def test_controllerRest(self):
        """
        C{BindControllerRest("/user", ...)}: GET, POST and DELETE reach their
        methods; C{Hello} serves nothing; a method without one is 405 (where
        GoFrame answers 404), with C{Allow}.
        """
        self.http.bind_controller_rest("/user", ControllerRest)
        for verb in ("GET", "POST", "DELETE"):
            self.assertAnswer(verb, "/user", f"RESTFul HTTP Method {verb}")
        self.assertEqual(self.call("GET", "/user/hello")[0], 404)
        code, headers, _ = self.call("PUT", "/user")
        self.assertEqual((code, headers.getRawHeaders(b"allow")), (405, [b"DELETE, GET, HEAD, POST"]))

    def test_object(self):
        """
        C{BindObject("/object", &Object{})}: C{/object/show}.
        """
        class Object:
            def Show(self, request):
                return "It's show time bibi!"

        self.http.bind_object("/object", Object())
        self.assertAnswer("GET", "/object/show", "It's show time bibi!")

    def test_objectMethodAndDomain(self):
        """
        C{BindObjectMethod("/object-method", obj, "Show1, Show2, Show3")} and
        C{Domain("localhost").BindObjectMethod("/object-method", obj,
        "Show4")}: C{show4} only for localhost; the first three for every
        host (GoFrame's default domain serves every host).
        """
        obj = ObjectMethod()
        self.http.bind_object_method("/object-method", obj, "Show1, Show2, Show3")
        self.http.domain("localhost").bind_object_method("/object-method", obj, "Show4")
        for n in (1, 2, 3):
            self.assertAnswer("GET", f"/object-method/show{n}", f"show {n}")
            self.assertAnswer("GET", f"/object-method/show{n}", f"show {n}", host="localhost")
        self.assertEqual(self.call("GET", "/object-method/show4")[0], 404)
        self.assertAnswer("GET", "/object-method/show4", "show 4", host="localhost")

    def test_objectRest(self):
        """
        C{BindObjectRest("/object-rest", &ObjectRest{})}: the verbs, not C{Hello}.
        """
        self.http.bind_object_rest("/object-rest", ControllerRest(None))
        self.assertAnswer("POST", "/object-rest", "RESTFul HTTP Method POST")
        self.assertEqual(self.call("GET", "/object-rest/hello")[0], 404)

    def test_handlers(self):
        """
        C{BindHandler} of C{/apple}, C{/pen} and C{/apple-pen}.
        """
        for uri, text in (("/apple", "Apple"), ("/pen", "Pen"), ("/apple-pen", "Apple-Pen")):
            self.http.bind_handler(uri, lambda r, text=text: text)
        for uri, text in (("/apple", "Apple"), ("/pen", "Pen"), ("/apple-pen", "Apple-Pen")):
            self.assertAnswer("GET", uri, text)

    def test_wrongSignature(self):
        """
        A public method that cannot take the request is refused at
        registration, naming it, as GoFrame refuses one that is not
        C{func(*ghttp.Request)}; so are such a function, REST verb and hook.
        """
        class Object:
            def Show(self, request):
                return "show"

            def total(self):
                return 0

        class Rest(Controller):
            def get(self, request, extra):
                return "never"

        for register in (lambda: self.http.bind_object("/o", Object()),
                         lambda: self.http.bind_object_method("/o", Object(), "total"),
                         lambda: self.http.bind_controller_rest("/r", Rest),
                         lambda: self.http.bind_object_rest("/r", Rest(None))):
            with self.assertRaises(TypeError) as caught:
                register()
            self.assertIn("must take one argument, the request", str(caught.exception))
        for register in (lambda: self.http.bind_handler("/f", lambda: 1),
                         lambda: self.http.bind_hook("/f", "BeforeServe", lambda a, b: 1),
                         lambda: http_handler("/f", lambda: 1), lambda: http_hook("/f", "AfterServe", lambda: 1)):
            with self.assertRaises(TypeError) as caught:
                register()
            self.assertRegex(str(caught.exception), r"^/f: .+ must take one argument, the request$")
        self.http.bind_object_method("/o", Object(), "Show")
        self.assertAnswer("GET", "/o/show", "show")
        self.assertEqual(self.call("GET", "/o/total")[0], 404)

    def test_hookOrder(self):
        """
        Several hooks on one event, on different patterns, run in the order
        they were registered (GoFrame's rule), not by their patterns' priority.
        """
        seen = []
        self.http.bind_handler("/api/:x", lambda r: seen.append("handler"))
        self.http.bind_hook("/*any", "BeforeServe", lambda r: seen.append("any"))
        self.http.bind_hook("/api/:x", "BeforeServe", lambda r: seen.append("api"))
        self.http.bind_hooks("/api/*rest", {"BeforeServe": lambda r: seen.append("rest"),
                                            "AfterServe": lambda r: seen.append("after")})
        self.assertAnswer("GET", "/api/1", None)
        self.assertEqual(seen, ["any", "api", "rest", "handler", "after"])
