"""
Tests for L{gamenet.dispatch} and L{gamenet.hooks}: routes, filters and hooks
around a handler, and how failures become error responses.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import Logger, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from gamenet._quota import LogQuota

from gamenet import dispatch
from gamenet.dispatch import Dispatcher
from gamenet.errors import GamenetError, Refused
from gamenet.hooks import EVENTS, HookRegistry
from gamenet.protocol import serializer
from gamenet.protocol.message import NOTIFY, REQUEST, Message


class FakeSession:
    id = 7
    uid = None


class Responder:
    def __init__(self):
        self.answers = []

    def respond(self, id, value, error=None):
        self.answers.append((id, error.body() if error is not None else value))


def request(route, body, id=1):
    return Message(REQUEST, id, route, serializer.dumps(body))


class DispatchTests(SynchronousTestCase):
    """
    L{Dispatcher.dispatch} answers every request, whatever the handler does.
    """

    def setUp(self):
        self.hooks = HookRegistry()
        self.clock = Clock()
        self.dispatcher = Dispatcher("connector-1", self.hooks, self.clock)
        self.responder = Responder()
        self.session = FakeSession()

    def dispatch(self, route, body, id=1):
        self.dispatcher.dispatch(self.responder, self.session, request(route, body, id))
        return self.responder.answers

    def test_plain(self):
        """
        A plain return value answers at once.
        """
        self.dispatcher.add("a.b.c", lambda msg, session: {"got": msg})
        self.assertEqual(self.dispatch("a.b.c", 1), [(1, {"got": 1})])

    def test_deferred(self):
        """
        A Deferred answers when it fires.
        """
        d = Deferred()
        self.dispatcher.add("a.b.c", lambda msg, session: d)
        self.assertEqual(self.dispatch("a.b.c", 1), [])
        d.callback("later")
        self.assertEqual(self.responder.answers, [(1, "later")])

    def test_coroutine(self):
        """
        An C{async def} handler answers when it returns.
        """
        d = Deferred()

        async def handler(msg, session):
            return {"x": await d}

        self.dispatcher.add("a.b.c", handler)
        self.dispatch("a.b.c", 1)
        d.callback(2)
        self.assertEqual(self.responder.answers, [(1, {"x": 2})])

    def test_notify(self):
        """
        A notify runs the handler and gets no answer.
        """
        seen = []
        self.dispatcher.add("a.b.c", lambda msg, session: seen.append(msg) or "ignored")
        self.dispatcher.dispatch(self.responder, self.session, Message(NOTIFY, 0, "a.b.c", b'{"n":1}'))
        self.assertEqual(seen, [{"n": 1}])
        self.assertEqual(self.responder.answers, [])

    def test_unknownRoute(self):
        """
        An unknown route answers 404, and does not grow the hook cache.
        """
        self.hooks.add("before_serve", "*", lambda request: None)
        self.assertEqual(self.dispatch("x.y.z", {}), [(1, {"code": 404, "message": "no handler for x.y.z"})])
        self.assertEqual(self.hooks._cache, {})

    def test_badBody(self):
        """
        A body that is not JSON answers 400 and the handler is not called.
        """
        self.dispatcher.add("a.b.c", lambda msg, session: self.fail("called"))
        self.dispatcher.dispatch(self.responder, self.session, Message(REQUEST, 3, "a.b.c", b"{nope"))
        self.assertEqual(self.responder.answers, [(3, {"code": 400, "message": "body is not JSON"})])

    def test_handlerRaises(self):
        """
        A handler that raises answers 500 with a generic message; the
        traceback is logged, not sent.
        """
        def boom(msg, session):
            raise KeyError("secret")

        self.dispatcher.add("a.b.c", boom)
        self.assertEqual(self.dispatch("a.b.c", {}), [(1, {"code": 500, "message": "internal server error"})])
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)

    def test_deferredFails(self):
        """
        A Deferred that fails answers 500 too.
        """
        self.dispatcher.add("a.b.c", lambda msg, session: Deferred.fromCoroutine(_raise(ValueError())))
        self.assertEqual(self.dispatch("a.b.c", {}), [(1, {"code": 500, "message": "internal server error"})])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_gamenetError(self):
        """
        A L{GamenetError} answers with its code and message and logs no traceback.
        """
        def refuse(msg, session):
            raise GamenetError("no room", 409)

        self.dispatcher.add("a.b.c", refuse)
        self.assertEqual(self.dispatch("a.b.c", {}), [(1, {"code": 409, "message": "no room"})])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_duplicateRoute(self):
        """
        A route cannot be registered twice.
        """
        self.dispatcher.add("a.b.c", lambda msg, session: None)
        self.assertRaises(ValueError, self.dispatcher.add, "a.b.c", lambda msg, session: None)

    def test_fallback(self):
        """
        A route with no local handler is asked of the fallback.
        """
        self.dispatcher.fallback = lambda route: (lambda msg, session: route) if route.startswith("chat.") else None
        self.assertEqual(self.dispatch("chat.h.m", {}), [(1, "chat.h.m")])

    def test_madeUpForwardedRoutesNotCached(self):
        """
        A forwarded route the cluster serves keeps its plan; routes a client
        made up are served by the fallback too, but a flood of them leaves
        the dispatcher's and the hooks' caches as they were.
        """
        self.dispatcher.known_routes = {"chat.h.m"}
        self.dispatcher.fallback = lambda route: (lambda msg, session: route) if route.startswith("chat.") else None
        self.dispatch("chat.h.m", {})
        for n in range(500):
            self.dispatch(f"chat.h.m{n}", {}, id=n + 2)
        self.assertEqual(self.responder.answers[-1], (501, "chat.h.m499"))
        self.assertEqual(set(self.dispatcher._plans), {"chat.h.m"})
        self.assertEqual(set(self.hooks._cache), {"chat.h.m"})

    def logged(self):
        """
        The texts of the events the dispatcher logs from now on, in a list.
        """
        events = []
        self.patch(dispatch, "log", Logger(observer=lambda event: events.append(formatEvent(event))))
        return events

    def test_errorAnswersLoggedUpToQuota(self):
        """
        A flood of error answers (a client making up routes) is logged up to
        the quota's burst in a window; every request is still answered, and
        the count of lines held back is said with the first line of the
        next window.
        """
        events = self.logged()
        burst = self.dispatcher._answers_logged.burst
        for n in range(burst + 50):
            self.dispatch(f"x.y.z{n}", {}, id=n + 1)
        self.assertEqual(len(self.responder.answers), burst + 50)
        self.assertEqual(self.responder.answers[-1][1]["code"], 404)
        answered = [e for e in events if "answered 404" in e]
        self.assertEqual(len(answered), burst)
        self.clock.advance(self.dispatcher._answers_logged.period)
        self.dispatch("x.y.last", {}, id=999)
        self.assertIn("50 more error answers on connector-1 were not logged", events)
        self.assertIn("x.y.last answered 404 (no handler for x.y.last) to session 7 on connector-1", events)

    def test_failuresLoggedUpToQuota(self):
        """
        A handler failing on every call logs its traceback up to the
        quota's burst in a window; every call is answered 500.
        """
        def boom(msg, session):
            raise KeyError("secret")

        self.dispatcher.add("a.b.c", boom)
        burst = self.dispatcher._failures_logged.burst
        for n in range(burst + 5):
            self.dispatch("a.b.c", {}, id=n + 1)
        self.assertEqual({answer["code"] for _, answer in self.responder.answers}, {500})
        self.assertEqual(len(self.responder.answers), burst + 5)
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), burst)


class LogQuotaTests(SynchronousTestCase):
    """
    L{LogQuota}: at most C{burst} lines a window, the rest counted.
    """

    def test_window(self):
        """
        Within a window the first C{burst} lines go, the rest are held; the
        first line of the next window carries how many were held.
        """
        clock = Clock()
        quota = LogQuota(clock, burst=3, period=10.0)
        self.assertEqual([quota.take() for _ in range(5)], [0, 0, 0, None, None])
        clock.advance(9.9)
        self.assertIsNone(quota.take())
        clock.advance(0.1)
        self.assertEqual([quota.take() for _ in range(4)], [3, 0, 0, None])
        clock.advance(100)
        self.assertEqual(quota.take(), 1)
        clock.advance(100)
        self.assertEqual(quota.take(), 0)


async def _raise(error):
    raise error


class HookTests(SynchronousTestCase):
    """
    Filters and hooks run around the handler, in event and registration order.
    """

    def setUp(self):
        self.hooks = HookRegistry()
        self.dispatcher = Dispatcher("connector-1", self.hooks)
        self.responder = Responder()
        self.log = []
        self.dispatcher.add("connector.entry.enter", self.handler)

    def handler(self, msg, session):
        self.log.append("handler")
        return {"msg": msg}

    def record(self, name):
        def hook(request):
            self.log.append(name)
        return hook

    def dispatch(self, body=None, id=1):
        self.dispatcher.dispatch(self.responder, FakeSession(), request("connector.entry.enter", body or {}, id))
        return self.responder.answers

    def test_order(self):
        """
        Every event runs in the documented order, hooks of one event in
        registration order, each only on the routes its pattern matches.
        """
        for event in ("close", "after_output", "before_output", "global_after", "after_serve",
                      "before_serve", "global_before", "route"):
            self.hooks.add(event, "*", self.record(event))
        self.hooks.add("before_serve", "connector.*", self.record("before_serve 2"))
        self.hooks.add("before_serve", "*.entry.enter", self.record("before_serve 3"))
        self.hooks.add("before_serve", "chat.*", self.record("never"))
        self.dispatch()
        self.assertEqual(self.log, [
            "route", "global_before", "before_serve", "before_serve 2", "before_serve 3", "handler",
            "after_serve", "global_after", "before_output", "after_output", "close",
        ])

    def test_routeTakeover(self):
        """
        A C{route} hook that answers takes the request over: no filter or
        handler runs, the answer goes out, after and close hooks still run.
        """
        self.hooks.add("route", "*", lambda request: request.respond({"taken": request.body.decode()}))
        for event in ("global_before", "before_serve", "after_serve", "close"):
            self.hooks.add(event, "*", self.record(event))
        self.assertEqual(self.dispatch({"a": 1}), [(1, {"taken": '{"a":1}'})])
        self.assertEqual(self.log, ["after_serve", "close"])

    def test_beforeRefuses(self):
        """
        A before filter that raises refuses the request with its code; the
        handler does not run; after filters see the error.
        """
        def refuse(request):
            raise Refused("banned")

        errors = []
        self.hooks.add("before_serve", "*", refuse)
        self.hooks.add("after_serve", "*", lambda request: errors.append(type(request.error)))
        self.assertEqual(self.dispatch(), [(1, {"code": 403, "message": "banned"})])
        self.assertEqual(self.log, [])
        self.assertEqual(errors, [Refused])

    def test_beforeAnswers(self):
        """
        A before filter may answer in place of the handler.
        """
        self.hooks.add("before_serve", "*", lambda request: request.respond("cached"))
        self.assertEqual(self.dispatch(), [(1, "cached")])
        self.assertEqual(self.log, [])

    def test_afterRewrites(self):
        """
        An after filter and a before-output hook may replace the response.
        """
        def after(request):
            request.response = {**request.response, "after": True}

        def output(request):
            request.response = {**request.response, "output": True}

        self.hooks.add("after_serve", "*", after)
        self.hooks.add("before_output", "*", output)
        self.assertEqual(self.dispatch({"a": 1}), [(1, {"msg": {"a": 1}, "after": True, "output": True})])

    def test_asyncFilter(self):
        """
        A filter returning a Deferred is waited for.
        """
        d = Deferred()
        self.hooks.add("before_serve", "*", lambda request: d)
        self.assertEqual(self.dispatch(), [])
        d.callback(None)
        self.assertEqual(self.responder.answers, [(1, {"msg": {}})])

    def test_filterSeesMessage(self):
        """
        Filters see the decoded body and the session.
        """
        seen = []
        self.hooks.add("before_serve", "*", lambda request: seen.append((request.msg, request.session.id)))
        self.dispatch({"k": "v"})
        self.assertEqual(seen, [({"k": "v"}, 7)])

    def test_closeHookFailureLogged(self):
        """
        A close hook that raises is logged; the answer was already sent.
        """
        def fail(request):
            raise RuntimeError("close hook")

        self.hooks.add("close", "*", fail)
        self.assertEqual(self.dispatch(), [(1, {"msg": {}})])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_notifyRunsHooks(self):
        """
        A notify runs the serve hooks but no output hooks.
        """
        for event in ("before_serve", "after_serve", "before_output", "close"):
            self.hooks.add(event, "*", self.record(event))
        self.dispatcher.dispatch(self.responder, FakeSession(), Message(NOTIFY, 0, "connector.entry.enter", b"{}"))
        self.assertEqual(self.log, ["before_serve", "handler", "after_serve", "close"])
        self.assertEqual(self.responder.answers, [])

    def test_unknownEvent(self):
        """
        Registering for an event that does not exist is an error naming the events.
        """
        error = self.assertRaises(ValueError, self.hooks.add, "before", "*", lambda r: None)
        self.assertIn(", ".join(EVENTS), str(error))

    def test_cacheInvalidated(self):
        """
        A hook added after a route was served applies to that route from then on.
        """
        self.dispatch()
        self.hooks.add("before_serve", "*", self.record("late"))
        self.dispatch()
        self.assertEqual(self.log, ["handler", "late", "handler"])
