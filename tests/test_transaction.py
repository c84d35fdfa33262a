"""
Tests for L{gamenet.transaction}: Pomelo's C{app.transaction}, its
transaction log read back, and a crash mid-transaction found at the next start.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from gamenet import config
from gamenet.testing import MemoryCluster, backend, cluster_config, free_ports
from gamenet.transaction import (
    COMMITTED, CONDITIONS_FAILED, HANDLERS_FAILED, Outcome, Step, TransactionLog, Transactions, Unfinished,
)

from .test_twistd import START_TIMEOUT, TwistdTestCase


class Flaky:
    """
    A handler that fails its first C{failures} calls.
    """

    def __init__(self, calls: list[str], name: str, failures: int = 0) -> None:
        self.calls, self.__name__, self.failures = calls, name, failures

    def __call__(self) -> None:
        self.calls.append(self.__name__)
        if self.failures:
            self.failures -= 1
            raise ValueError(f"{self.__name__} failed")


class TransactionTests(SynchronousTestCase):
    """
    Conditions, handlers and retries, each transaction logged.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.path = os.path.join(self.mktemp(), "transaction-chat-1.log")
        self.service = Transactions(self.clock, "chat-1", self.path)
        self.service.privilegedStartService()
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.calls: list[str] = []

    def run_(self, conditions: Any, handlers: Any, retry: int = 1) -> Outcome:
        return self.successResultOf(self.service.run("buy", conditions, handlers, retry))

    def records(self) -> list[dict[str, Any]]:
        with open(self.path) as f:
            return [json.loads(line) for line in f]

    def test_committed(self) -> None:
        """
        Every condition runs, in order, before any handler; then every
        handler; the log has a C{started} line before the handlers, a
        C{handler} line after each and a C{finished} line.
        """
        outcome = self.run_(
            {"hasMoney": lambda: self.calls.append("hasMoney"), "hasRoom": lambda: succeed(True)},
            {"pay": Flaky(self.calls, "pay"), "give": Flaky(self.calls, "give")},
        )
        self.assertEqual(self.calls, ["hasMoney", "pay", "give"])
        self.assertEqual(outcome, Outcome(outcome.id, "buy", COMMITTED, (Step("hasMoney"), Step("hasRoom")),
                                          (Step("pay"), Step("give"))))
        self.assertTrue(outcome.committed)
        common = {"id": outcome.id, "name": "buy", "server": "chat-1", "time": 1000}
        conditions = [{"name": "hasMoney", "attempts": 1, "error": None},
                      {"name": "hasRoom", "attempts": 1, "error": None}]
        handlers = [{"name": "pay", "attempts": 1, "error": None}, {"name": "give", "attempts": 1, "error": None}]
        self.assertEqual(self.records(), [
            {"event": "started", **common, "conditions": conditions},
            {"event": "handler", **common, "handler": "pay", "attempts": 1, "error": None},
            {"event": "handler", **common, "handler": "give", "attempts": 1, "error": None},
            {"event": "finished", **common, "status": "committed", "conditions": conditions, "handlers": handlers},
        ])

    def test_conditionFails(self) -> None:
        """
        A condition that raises, or answers C{False}, stops the transaction
        before any handler runs (and the conditions after it); the log has
        only its C{finished} line, with the error.
        """
        for failing, error in [(lambda: False, "returned False"),
                               (Flaky([], "x", 1), "ValueError: x failed")]:
            self.calls.clear()
            outcome = self.run_({"first": failing, "second": lambda: self.calls.append("second")},
                                [Flaky(self.calls, "pay")])
            self.assertEqual(self.calls, [])
            self.assertEqual((outcome.status, outcome.conditions, outcome.handlers),
                             (CONDITIONS_FAILED, (Step("first", 1, error),), ()))
            self.assertEqual(self.records()[-1]["event"], "finished")
            self.assertEqual(self.records()[-1]["conditions"], [{"name": "first", "attempts": 1, "error": error}])
        self.assertEqual([r["event"] for r in self.records()], ["finished", "finished"])

    def test_retried(self) -> None:
        """
        A failing handler is tried again, up to C{retry} times in all;
        handlers that succeeded before it are not run again.
        """
        outcome = self.run_({}, [Flaky(self.calls, "pay"), Flaky(self.calls, "give", failures=2)], retry=3)
        self.assertEqual(self.calls, ["pay", "give", "give", "give"])
        self.assertEqual(outcome.handlers, (Step("pay"), Step("give", 3)))
        self.assertTrue(outcome.committed)

    def test_retriesExhausted(self) -> None:
        """
        A handler failing every attempt ends the transaction: the handlers
        after it do not run, and the outcome and log say which failed, how
        many times, and why.
        """
        outcome = self.run_({}, [Flaky(self.calls, "pay", failures=5), Flaky(self.calls, "give")], retry=2)
        self.assertEqual(self.calls, ["pay", "pay"])
        self.assertEqual(outcome.status, HANDLERS_FAILED)
        self.assertEqual(outcome.handlers, (Step("pay", 2, "ValueError: pay failed"),))
        self.assertEqual(self.records()[-1]["handlers"], [{"name": "pay", "attempts": 2,
                                                           "error": "ValueError: pay failed"}])

    def test_noRetry(self) -> None:
        """
        As in Pomelo, C{retry} is the number of attempts: 1 (the default), or
        less, tries each handler once.
        """
        for retry in (1, 0):
            self.calls.clear()
            self.run_({}, [Flaky(self.calls, "pay", failures=1)], retry)
            self.assertEqual(self.calls, ["pay"])

    def test_asyncHandlers(self) -> None:
        """
        Conditions and handlers may answer Deferreds or be coroutines; the
        transaction waits for each.
        """
        gate: Deferred[None] = Deferred()

        async def pay() -> None:
            await gate
            self.calls.append("pay")

        d = self.service.run("buy", [lambda: succeed(True)], [pay, lambda: self.calls.append("give")])
        self.assertNoResult(d)
        self.assertEqual([r["event"] for r in self.records()], ["started"])
        gate.callback(None)
        outcome = self.successResultOf(d)
        self.assertTrue(outcome.committed)
        self.assertEqual(self.calls, ["pay", "give"])
        self.assertEqual(outcome.handlers, (Step("pay"), Step("<lambda>")))

    def test_badArguments(self) -> None:
        """
        A name that is not a string, a C{retry} that is not a number, or
        conditions or handlers that are not functions (as Pomelo checks
        them) are a TypeError at the call, before any of them runs and
        before anything is logged.
        """
        ok = Flaky(self.calls, "ok")
        cases = [
            (("", {}, [ok]), "name must be a non-empty string"),
            ((7, {}, [ok]), "name must be a non-empty string"),
            (("buy", {}, [ok], "3"), "retry must be a whole number of attempts, not '3'"),
            (("buy", {}, [ok], True), "retry must be a whole number"),
            (("buy", None, [ok]), "conditions must be a mapping of names to functions or a list of functions, not NoneType"),
            (("buy", {}, "pay"), "handlers must be a mapping of names to functions or a list of functions, not str"),
            (("buy", {"ok": ok}, {"pay": ok, "give": "later"}), "handlers: 'give' is str, not a function"),
            (("buy", [ok, 3], [ok]), "conditions: '1' is int, not a function"),
        ]
        for args, message in cases:
            with self.assertRaises(TypeError) as e:
                self.service.run(*args)
            self.assertIn(message, str(e.exception))
        self.assertEqual(self.calls, [])
        self.assertFalse(os.path.exists(self.path))

    def test_unwritableLog(self) -> None:
        """
        When the log cannot be written no handler runs, and the caller's
        Deferred fails.
        """
        blocker = self.mktemp()
        open(blocker, "w").close()
        service = Transactions(self.clock, "chat-1", os.path.join(blocker, "transaction-chat-1.log"))
        self.failureResultOf(service.run("buy", {}, [Flaky(self.calls, "pay")]), OSError)
        self.assertEqual(self.calls, [])


class CrashTests(SynchronousTestCase):
    """
    A transaction a crash interrupted is found and reported at the next start.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.path = os.path.join(self.mktemp(), "transaction-chat-1.log")

    def start(self) -> Transactions:
        service = Transactions(self.clock, "chat-1", self.path)
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        return service

    def test_crashMidTransaction(self) -> None:
        """
        A server that dies while a handler runs leaves a C{started} line and
        the handlers done; the next start reports the transaction once (in
        C{unfinished}, and as an C{interrupted} line in the log).
        """
        first = self.start()
        hang: Deferred[None] = Deferred()
        self.clock.advance(5)
        first.run("buy", {}, {"pay": lambda: None, "give": lambda: hang})
        self.clock.advance(5)
        # The process dies here: no finished line, the file left as it is.
        with open(self.path, "a") as f:
            f.write('{"event": "handler", "id": "cut sh')
        second = self.start()
        [found] = second.unfinished
        self.assertEqual(found, Unfinished(found.id, "buy", 5, (Step("pay"),)))
        self.assertEqual(len(self.flushLoggedErrors()), 0)
        last = TransactionLog(self.path).read()[-1]
        self.assertEqual((last["event"], last["id"], last["time"], last["handlers"]),
                         ("interrupted", found.id, 10, [{"name": "pay", "attempts": 1, "error": None}]))
        self.assertEqual(self.start().unfinished, [])

    def test_finishedNotReported(self) -> None:
        """
        Transactions that ended, committed or not, are not reported.
        """
        first = self.start()
        first.run("buy", {}, [lambda: None])
        first.run("sell", {"no": lambda: False}, [lambda: None])
        first.run("lose", {}, [Flaky([], "x", 1)])
        self.assertEqual(self.start().unfinished, [])

    def test_noLog(self) -> None:
        """
        A server that never ran a transaction has no log file, and nothing to report.
        """
        self.assertEqual(self.start().unfinished, [])
        self.assertFalse(os.path.exists(self.path))


class ApplicationTests(SynchronousTestCase):
    """
    C{app.transaction} and C{app.transactions}, logging where the cluster file says.
    """

    def test_logDir(self) -> None:
        """
        The log is C{transaction-<server id>.log} in C{[cluster]
        transaction_log_dir} (relative to the cluster file), by default a
        C{logs} directory beside the cluster file.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        ini = os.path.join(directory, "cluster.ini")
        text = "[cluster]\nname = t\nsecret = s\n[server:chat-1]\ntype = chat\nhost = 127.0.0.1\nnode_port = 6050\n"
        for extra, expected in [("", os.path.join(directory, "logs")),
                                ("transaction_log_dir = var/tx\n", os.path.join(directory, "var", "tx"))]:
            with open(ini, "w") as f:
                f.write(text.replace("secret = s\n", "secret = s\n" + extra))
            cluster = MemoryCluster(config.load(ini))
            self.assertEqual(cluster.apps["chat-1"].transactions.log.path,
                             os.path.join(expected, "transaction-chat-1.log"))

    def test_transaction(self) -> None:
        """
        C{app.transaction(name, conditions, handlers, retry)} runs and logs one.
        """
        log_dir = os.path.abspath(self.mktemp())
        cluster = MemoryCluster(attrs.evolve(cluster_config(backend("chat-1", "chat")), transaction_log_dir=log_dir))
        cluster.start()
        self.addCleanup(cluster.stop)
        app = cluster.apps["chat-1"]
        outcome = self.successResultOf(app.transaction("buy", {"ok": lambda: True}, {"pay": lambda: None}, 2))
        self.assertTrue(outcome.committed)
        records = TransactionLog(os.path.join(log_dir, "transaction-chat-1.log")).read()
        self.assertEqual([r["event"] for r in records], ["started", "handler", "finished"])
        self.assertEqual(app.transactions.unfinished, [])


GRANT = """
import os

from twisted.internet.defer import Deferred

from gamenet import configure


def grant(app):
    # Once: the transaction's second handler never ends, and the process is killed then.
    marker = os.path.join(app.base, "granted")
    if not os.path.exists(marker):
        open(marker, "w").close()
        app.transaction("grant", {"has_room": lambda: True}, {"pay": lambda: None, "give": lambda: Deferred()})


grants = configure(lambda app: app.after_startup(grant), "area")
"""


class CrashProcessTests(TwistdTestCase):
    """
    A server process killed mid-transaction, started again.
    """

    def log_records(self) -> list[dict[str, Any]]:
        return TransactionLog(os.path.join(self.directory, "logs", "transaction-area-1.log")).read()

    async def test_killed(self) -> None:
        """
        A server SIGKILLed while a handler runs leaves the C{started} line
        and the handlers done in its log; started again, it reports the
        transaction in its log output and closes it with an C{interrupted} line.
        """
        games = os.path.join(self.directory, "games", "grantgame")
        os.makedirs(games)
        open(os.path.join(games, "__init__.py"), "w").close()
        with open(os.path.join(games, "grants.py"), "w") as f:
            f.write(GRANT)
        path = os.path.join(self.directory, "cluster.ini")
        with open(path, "w") as f:
            f.write(f"[cluster]\nname = tx\nsecret = s\nplugins = grantgame\n"
                    f"plugin_path = {os.path.dirname(games)}\n"
                    f"[server:area-1]\ntype = area\nhost = 127.0.0.1\nnode_port = {free_ports(1)[0]}\n")
        first = self.start_twistd("--config", path, "--all")
        await self.wait_for(lambda: [r["event"] for r in self.log_records()] == ["started", "handler"],
                            START_TIMEOUT, "the transaction's first handler")
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        self.start_twistd("--config", path, "--all")
        await self.wait_for(lambda: len(self.log_records()) == 3, START_TIMEOUT, "the interrupted line")
        started, handler, interrupted = self.log_records()
        self.assertEqual((started["name"], started["conditions"]),
                         ("grant", [{"name": "has_room", "attempts": 1, "error": None}]))
        self.assertEqual((handler["handler"], handler["error"]), ("pay", None))
        self.assertEqual((interrupted["event"], interrupted["id"], interrupted["handlers"]),
                         ("interrupted", started["id"], [{"name": "pay", "attempts": 1, "error": None}]))
        await self.wait_for(lambda: "did not finish" in self.read_output(), START_TIMEOUT, "the report")
        self.assertIn(f"transaction grant {started['id']} started at {started['time']} on area-1 did not finish; "
                      "handlers done: pay", self.read_output())
