"""
Tests for L{gamenet.admin.fleet} (with L{gamenet.admin.members} and
L{gamenet.admin.additions}) and L{gamenet.admin.stats}: the master's
view of its servers and the admin operations, over a L{FakeMaster} and a
L{Clock}.
"""

from __future__ import annotations

import json
import math
import os

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from gamenet.admin import stats
from gamenet.admin.additions import check, server_ports
from gamenet.admin.fleet import Fleet
from gamenet.admin.members import Member
from gamenet.admin.interfaces import IMaster, ISupervisor
from gamenet.cluster.master import MasterService, Supervisor
from gamenet.config import ServerConfig, server_spec
from gamenet.errors import GamenetError
from gamenet.testing import FakeMaster, backend, cluster_config, frontend


class Store:
    """
    A block-list store in memory; C{broken} makes its calls fail.
    """

    def __init__(self, networks=()):
        self.networks = list(networks)
        self.broken = False
        self.saves = []

    def load(self):
        return fail(OSError("disk on fire")) if self.broken else succeed(list(self.networks))

    def save(self, networks):
        if self.broken:
            return fail(OSError("disk on fire"))
        self.networks = list(networks)
        self.saves.append(list(networks))
        return succeed(None)


def latency(counts, bounds=(0.01, 0.1, 1.0)):
    return {"buckets": list(bounds), "counts": list(counts), "count": counts[-1], "sum": 0.0}


SERVERS = (
    frontend("gate-1", "gate", client_port=3014, node_port=4010),
    frontend("connector-1", "connector", client_port=3050, node_port=4050),
    frontend("connector-2", "connector", client_port=3051, node_port=4051),
    backend("chat-1", "chat", node_port=6050),
    backend("chat-2", "chat", node_port=6051),
)


class StatsTests(SynchronousTestCase):
    """
    Rates and quantiles from cumulative figures.
    """

    def test_histogram(self):
        """
        The summary's buckets and counts become C{(le, count)} pairs, the
        last bound infinite; a malformed one is empty.
        """
        self.assertEqual(stats.histogram(latency([1, 2, 3, 4])), [(0.01, 1), (0.1, 2), (1.0, 3), (math.inf, 4)])
        self.assertEqual(stats.histogram({"buckets": [0.1], "counts": [1]}), [])
        self.assertEqual(stats.histogram({"buckets": ["x"], "counts": [1, 2]}), [])
        self.assertEqual(stats.histogram(None), [])

    def test_quantileInterpolates(self):
        """
        A quantile is interpolated linearly inside its bucket, the first
        bucket starting at 0.
        """
        buckets = [(0.1, 5.0), (0.5, 10.0), (math.inf, 10.0)]
        self.assertAlmostEqual(stats.quantile(0.5, buckets), 0.1)
        self.assertAlmostEqual(stats.quantile(0.25, buckets), 0.05)
        self.assertAlmostEqual(stats.quantile(0.99, buckets), 0.1 + 0.4 * 4.9 / 5)

    def test_quantileSkipsEmptyBuckets(self):
        """
        Empty buckets below the rank do not hold the quantile.
        """
        self.assertAlmostEqual(stats.quantile(0.5, [(0.1, 0.0), (0.5, 0.0), (1.0, 4.0), (math.inf, 4.0)]), 0.75)

    def test_quantileInInfiniteBucket(self):
        """
        A quantile that falls in the infinite bucket is the largest finite bound.
        """
        self.assertEqual(stats.quantile(0.99, [(0.1, 1.0), (1.0, 1.0), (math.inf, 10.0)]), 1.0)

    def test_quantileOfNothing(self):
        """
        No observation, no quantile.
        """
        self.assertIsNone(stats.quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]))
        self.assertIsNone(stats.quantile(0.5, []))

    def test_difference(self):
        """
        The difference of two readings, bucket by bucket; after a restart
        (a count went down) or with other buckets, the later reading alone.
        """
        before = [(0.1, 2.0), (math.inf, 3.0)]
        self.assertEqual(stats.difference(before, [(0.1, 5.0), (math.inf, 7.0)]), [(0.1, 3.0), (math.inf, 4.0)])
        self.assertEqual(stats.difference(before, [(0.1, 1.0), (math.inf, 1.0)]), [(0.1, 1.0), (math.inf, 1.0)])
        self.assertEqual(stats.difference(before, [(0.5, 1.0), (math.inf, 1.0)]), [(0.5, 1.0), (math.inf, 1.0)])

    def test_rate(self):
        """
        A counter's rate per second; 0 when no time passed or it went down.
        """
        self.assertEqual(stats.rate(10, 30, 2.0), 10.0)
        self.assertEqual(stats.rate(30, 10, 2.0), 0.0)
        self.assertEqual(stats.rate(10, 30, 0.0), 0.0)

    def test_figures(self):
        """
        Requests and errors per second and p50/p99 of the requests made
        between two readings, overall and per route.
        """
        send_before = {"requests": 10, "errors": 1, "latency": latency([10, 10, 10, 10])}
        send_after = {"requests": 30, "errors": 5, "latency": latency([10, 30, 30, 30])}
        enter = {"requests": 4, "errors": 0, "latency": latency([4, 4, 4, 4])}
        before = {**send_before, "routes": {"chat.chatHandler.send": send_before}}
        after = {**send_after, "routes": {"chat.chatHandler.send": send_after, "connector.entryHandler.enter": enter}}
        figures = stats.figures(before, after, 2.0)
        self.assertEqual((figures["rps"], figures["errors_per_second"]), (10.0, 2.0))
        self.assertAlmostEqual(figures["p50"], 0.01 + 0.09 * 0.5)
        self.assertAlmostEqual(figures["p99"], 0.01 + 0.09 * 0.99)
        routes = stats.route_figures(before, after, 2.0)
        self.assertEqual(routes["chat.chatHandler.send"]["requests"], 30)
        self.assertEqual(routes["chat.chatHandler.send"]["rps"], 10.0)
        self.assertEqual(routes["connector.entryHandler.enter"], {
            "requests": 4, "errors": 0, "rps": 2.0, "p50": 0.005, "p99": 0.0099,
        })

    def test_figuresOfNothing(self):
        """
        A summary without figures (metrics off) reads as zeros, no quantiles.
        """
        self.assertEqual(stats.figures({}, {}, 2.0), {"rps": 0.0, "errors_per_second": 0.0, "p50": None, "p99": None})


class FleetTestCase(SynchronousTestCase):
    """
    A fleet over a fake master of the five servers of the default cluster,
    all of them on this machine, their processes started; none logged in.
    """

    servers = SERVERS

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.master = FakeMaster(cluster_config(*self.servers))
        self.supervisor = self.master.supervisor
        for server in self.master.local:
            self.supervisor.addProcess(server.id, ["twistd", server.id])
        self.store = Store()
        self.bind_refused = {}
        self.fleet = Fleet(self.master, self.clock, self.store,
                           bindable=lambda host, port: self.bind_refused.get(port), hosts={"127.0.0.1"})
        self.fleet.watch()
        self.addCleanup(self.fleet.unwatch)

    def another(self):
        """
        A second fleet over the same master, watching it instead of the first.
        """
        self.fleet.unwatch()
        fleet = Fleet(self.master, self.clock, self.store, hosts={"127.0.0.1"})
        fleet.watch()
        self.addCleanup(fleet.unwatch)
        return fleet

    def record(self, server_id):
        return self.fleet.server(server_id)

    def state(self, server_id):
        return self.record(server_id)["state"]

    def loginAll(self):
        for server in self.master.cluster.servers:
            self.master.login(server.id)

    def poll(self, seconds=2.0):
        self.clock.advance(seconds)

    def assertError(self, code, text, f, *args, **kwargs):
        """
        C{f(*args, **kwargs)} raises, or fails with, L{GamenetError} of C{code}
        whose message contains C{text}.
        """
        try:
            result = f(*args, **kwargs)
        except GamenetError as e:
            error = e
        else:
            if isinstance(result, Deferred) or hasattr(result, "send"):
                error = self.failureResultOf(Deferred.fromCoroutine(result) if hasattr(result, "send") else result,
                                             GamenetError).value
            else:
                self.fail(f"no error; got {result!r}")
        self.assertEqual((error.code, text in error.message), (code, True), error.message)

    def result(self, coroutine):
        return self.successResultOf(Deferred.fromCoroutine(coroutine))

    def calls(self, name):
        return [(server_id, kwargs) for server_id, call, kwargs in self.master.calls if call == name]


class InterfaceTests(SynchronousTestCase):
    """
    The fakes and the real master and supervisor provide what the fleet uses.
    """

    def test_fakes(self):
        master = FakeMaster(cluster_config(*SERVERS))
        self.assertTrue(verifyObject(IMaster, master))
        self.assertTrue(verifyObject(ISupervisor, master.supervisor))

    def test_real(self):
        master = MasterService(cluster_config(*SERVERS), reactor=Clock(), hosts={"127.0.0.1"})
        self.assertTrue(verifyObject(IMaster, master, tentative=True))
        self.assertTrue(verifyObject(ISupervisor, master.supervisor, tentative=True))
        self.assertIsInstance(master.supervisor, Supervisor)


class StateTests(FleetTestCase):
    """
    Each server's state follows its process and its login.
    """

    def test_starting(self):
        """
        A server whose process runs but that has not logged in is starting,
        with its pid and no restart.
        """
        record = self.record("chat-1")
        self.assertEqual((record["state"], record["pid"], record["restarts"], record["ready"]),
                         ("starting", self.supervisor.pids["chat-1"], 0, False))

    def test_up(self):
        """
        Logged in, it is up; its uptime counts from its process's start.
        """
        self.master.login("chat-1")
        self.clock.advance(5)
        record = self.record("chat-1")
        self.assertEqual((record["state"], record["uptime"]), ("up", 5.0))

    def test_statusDraining(self):
        """
        A server that reports it drains is draining, and not ready.
        """
        self.loginAll()
        self.master.statuses["chat-1"] = {"state": "draining"}
        self.poll()
        record = self.record("chat-1")
        self.assertEqual((record["state"], record["ready"]), ("draining", False))

    def test_crashAndRestart(self):
        """
        A server whose process dies is restarting until the supervisor starts
        it again, then starting with a new pid and one restart counted.
        """
        self.master.login("chat-1")
        pid = self.supervisor.pids["chat-1"]
        self.master.logout("chat-1")
        self.supervisor.exit("chat-1")
        self.assertEqual(self.state("chat-1"), "restarting")
        self.supervisor.restart_due("chat-1")
        record = self.record("chat-1")
        self.assertEqual((record["state"], record["restarts"]), ("starting", 1))
        self.assertNotEqual(record["pid"], pid)

    def test_downWithoutRestart(self):
        """
        A server that exits and is not restarted (auto_restart = false) is
        down, with no pid and no uptime.
        """
        self.supervisor.no_restart.add("chat-1")
        self.supervisor.exit("chat-1")
        record = self.record("chat-1")
        self.assertEqual((record["state"], record["pid"], record["uptime"]), ("down", None, None))

    def test_otherMachine(self):
        """
        A server of another machine is up while logged in, down otherwise,
        its pid from its status.
        """
        self.master.local.remove(self.master.cluster.server("chat-2"))
        fleet = self.another()
        self.assertEqual(fleet.server("chat-2")["state"], "down")
        self.master.statuses["chat-2"] = {"pid": 4242}
        self.master.login("chat-2")
        self.assertEqual((fleet.server("chat-2")["state"], fleet.server("chat-2")["pid"]), ("up", 4242))

    def test_startedBefore(self):
        """
        A fleet started after the servers takes their processes and logins as
        they are.
        """
        self.master.login("chat-1")
        fleet = self.another()
        self.assertEqual([fleet.server(i)["state"] for i in ("chat-1", "chat-2")], ["up", "starting"])

    def test_stopUnfollows(self):
        """
        A stopped fleet polls no more and follows no event.
        """
        self.fleet.unwatch()
        self.assertEqual((self.master.member_listeners, self.supervisor.process_listeners), ([], []))
        self.master.login("chat-1")
        self.poll()
        self.assertEqual(self.master.calls, [])


class ReadyTests(FleetTestCase):
    """
    C{ready}: up, not draining, and every other up server reports its link
    to it available, in a status that came after its login.
    """

    def test_ready(self):
        """
        Once every server is up and has been polled, each is ready.
        """
        self.loginAll()
        self.poll()
        self.assertEqual({record["ready"] for record in self.fleet.servers()}, {True})

    def test_linkUnavailable(self):
        """
        A server that another up server cannot route to is not ready.
        """
        self.loginAll()
        self.master.statuses["connector-1"] = {"links": {**self.master.status("connector-1")["links"], "chat-1": False}}
        self.poll()
        self.assertFalse(self.record("chat-1")["ready"])
        self.assertTrue(self.record("chat-2")["ready"])

    def test_statusesBeforeLogin(self):
        """
        Statuses the others sent before a server's login do not make it
        ready: after a restart, it waits for the next poll.
        """
        self.loginAll()
        self.poll()
        self.master.logout("chat-1")
        self.supervisor.exit("chat-1")
        self.supervisor.restart_due("chat-1")
        self.master.login("chat-1")
        self.assertEqual(self.state("chat-1"), "up")
        self.assertFalse(self.record("chat-1")["ready"])
        self.poll()
        self.assertTrue(self.record("chat-1")["ready"])

    def test_downServersDoNotCount(self):
        """
        Servers that are not up are not asked about.
        """
        self.master.login("chat-1")
        self.master.login("connector-1")
        self.poll()
        self.assertTrue(self.record("chat-1")["ready"])


class PollTests(FleetTestCase):
    """
    Every logged-in server is asked for its status every 2 s; rates come
    from the differences between two answers.
    """

    def test_pollsEveryInterval(self):
        """
        A server is polled at login, then every 2 s.
        """
        self.master.login("chat-1")
        self.assertEqual(len(self.calls("status")), 1)
        self.poll(1.9)
        self.assertEqual(len(self.calls("status")), 1)
        self.poll(0.1)
        self.assertEqual(len(self.calls("status")), 2)

    def test_oneCallAtATime(self):
        """
        A server that has not answered is not asked again; an answer that
        comes after it logged in again is dropped.
        """
        pending = []
        self.master.answers["status"] = lambda server_id: pending.append(Deferred()) or pending[-1]
        self.master.login("chat-1")
        self.poll()
        self.assertEqual(len(pending), 1)
        self.master.logout("chat-1")
        self.master.login("chat-1")
        pending[0].callback({"state": "draining", "pid": 1})
        self.assertEqual(self.state("chat-1"), "up")

    def test_failedPoll(self):
        """
        A status call that fails is logged and the next one is made.
        """
        self.master.answers["status"] = lambda server_id: fail(GamenetError("nope", 504))
        self.master.login("chat-1")
        self.poll()
        self.assertEqual(len(self.calls("status")), 2)
        self.assertEqual(self.state("chat-1"), "up")

    def status(self, requests, errors, counts, cpu, **more):
        return {"pid": self.supervisor.pids["chat-1"], "cpu_seconds": cpu, "rss": 5000, "clients": 3,
                "metrics": {"requests": requests, "errors": errors, "latency": latency(counts),
                            "routes": {"chat.chatHandler.send": {"requests": requests, "errors": errors,
                                                                 "latency": latency(counts)}}},
                **more}

    def test_rates(self):
        """
        Requests and errors per second, CPU % and p50/p99 between two polls,
        for the server and for each route.
        """
        self.master.statuses["chat-1"] = self.status(100, 0, [100, 100, 100, 100], 1.0)
        self.master.login("chat-1")
        self.master.statuses["chat-1"] = self.status(140, 2, [100, 120, 140, 140], 1.5)
        self.poll()
        record = self.fleet.server("chat-1")
        self.assertEqual((record["rps"], record["errors_per_second"], record["cpu"]), (20.0, 1.0, 25.0))
        self.assertAlmostEqual(record["p50"], 0.01 + 0.09 * 1.0)
        self.assertAlmostEqual(record["p99"], 0.1 + 0.9 * (39.6 - 20) / 20)
        self.assertEqual((record["rss"], record["clients"]), (5000, 3))
        route = record["routes"]["chat.chatHandler.send"]
        self.assertEqual((route["requests"], route["errors"], route["rps"]), (140, 2, 20.0))

    def test_noFiguresWhenGone(self):
        """
        A server that has logged out shows no live figures (C{None}), not
        those of its last status.
        """
        self.master.statuses["chat-1"] = self.status(100, 0, [100, 100, 100, 100], 1.0)
        self.master.login("chat-1")
        self.master.statuses["chat-1"] = self.status(140, 2, [100, 120, 140, 140], 1.5)
        self.poll()
        self.assertEqual(self.record("chat-1")["clients"], 3)
        self.master.logout("chat-1")
        record = self.record("chat-1")
        self.assertNotIn(record["state"], ("up", "draining"))
        for key in ("clients", "sessions", "rps", "errors_per_second", "p50", "p99", "cpu", "rss"):
            self.assertIsNone(record[key], key)

    def test_noRatesAcrossRestart(self):
        """
        The first status of a new process gives no rates (its counters
        started again).
        """
        self.master.statuses["chat-1"] = self.status(100, 0, [100, 100, 100, 100], 1.0, pid=1)
        self.master.login("chat-1")
        self.master.statuses["chat-1"] = self.status(10, 0, [10, 10, 10, 10], 0.1, pid=2)
        self.poll()
        self.assertEqual((self.record("chat-1")["rps"], self.record("chat-1")["p50"]), (0.0, None))

    def test_history(self):
        """
        Each poll after the first adds a sample to the server's history;
        samples older than 10 minutes are dropped, and C{history(seconds)}
        gives the last ones.
        """
        self.master.login("chat-1")
        for _ in range(400):
            self.poll()
        history = self.fleet.history(600)
        self.assertEqual(history["interval"], 2.0)
        samples = history["servers"]["chat-1"]
        self.assertEqual(len(samples), 301)
        self.assertEqual(sorted(samples[-1]), ["clients", "cpu", "errors", "p50", "p99", "rps", "rss", "t"])
        self.assertEqual(samples[-1]["t"], self.clock.seconds())
        self.assertEqual(len(self.fleet.history(10)["servers"]["chat-1"]), 6)
        self.assertEqual(history["servers"]["chat-2"], [])

    def test_cluster(self):
        """
        The cluster's summary: its name, the master's pid and uptime, and
        how many servers it has and how many are up.
        """
        self.master.login("chat-1")
        self.master.login("gate-1")
        self.clock.advance(3)
        self.assertEqual(self.fleet.cluster(), {"name": "test", "master": {"pid": os.getpid(), "uptime": 3.0},
                                                "servers": 5, "up": 2})

    def test_servers(self):
        """
        Every server's record, in the cluster's order, or those of one type.
        """
        self.assertEqual([r["id"] for r in self.fleet.servers()], [s.id for s in SERVERS])
        self.assertEqual([r["id"] for r in self.fleet.servers("connector")], ["connector-1", "connector-2"])
        self.assertError(400, "unknown server type nope (types: chat, connector, gate)", self.fleet.servers, "nope")
        record = self.fleet.servers()[0]
        self.assertEqual(sorted(record), sorted([
            "id", "type", "host", "ports", "pid", "state", "ready", "uptime", "restarts", "clients", "sessions",
            "rps", "errors_per_second", "p50", "p99", "cpu", "rss", "frontend"]))
        self.assertEqual(record["ports"], {"node": 4010, "client": 3014, "tcp": 0, "ws": 0, "web": 0, "http": 0,
                                           "metrics": 0})
        json.dumps(self.fleet.servers())

    def test_unknownServer(self):
        """
        An unknown id is a 404 naming the known ones.
        """
        self.assertError(404, "no server chat-9 (servers: gate-1, connector-1", self.fleet.server, "chat-9")


class StopTests(FleetTestCase):
    """
    stop, kill and restart, by ids, by type or all.
    """

    def setUp(self):
        super().setUp()
        self.loginAll()

    def test_stop(self):
        """
        A stopped server gets SIGTERM and drains (draining while logged in,
        stopping once its link is gone), then is down and is not restarted.
        """
        self.assertEqual(self.fleet.stop(servers=["chat-1"]), ["chat-1"])
        self.assertEqual(self.supervisor.signals, [("chat-1", "TERM")])
        self.assertEqual(self.state("chat-1"), "draining")
        self.master.logout("chat-1")
        self.assertEqual(self.state("chat-1"), "stopping")
        self.supervisor.exit("chat-1")
        self.assertEqual(self.state("chat-1"), "down")
        self.assertFalse(self.supervisor.restart_pending("chat-1"))

    def test_kill(self):
        """
        A killed server gets SIGKILL and is not restarted.
        """
        self.assertEqual(self.fleet.kill(servers=["chat-1"]), ["chat-1"])
        self.assertEqual(self.supervisor.signals, [("chat-1", "KILL")])
        self.master.logout("chat-1")
        self.supervisor.exit("chat-1")
        self.assertEqual(self.state("chat-1"), "down")

    def test_restart(self):
        """
        A restarted server is stopped, then started once it has exited:
        restarting, then starting with a new pid; started once, not twice.
        """
        pid = self.supervisor.pids["chat-1"]
        self.assertEqual(self.fleet.restart(servers=["chat-1"]), ["chat-1"])
        self.assertEqual(self.supervisor.signals, [("chat-1", "TERM")])
        self.master.logout("chat-1")
        self.assertEqual(self.state("chat-1"), "stopping")
        self.supervisor.exit("chat-1")
        record = self.record("chat-1")
        self.assertEqual((record["state"], record["restarts"]), ("starting", 1))
        self.assertNotEqual(record["pid"], pid)
        self.assertFalse(self.supervisor.restart_pending("chat-1"))
        self.master.login("chat-1")
        self.assertEqual(self.state("chat-1"), "up")

    def test_restartDown(self):
        """
        Restarting a server that is down starts it.
        """
        self.fleet.stop(servers=["chat-1"])
        self.master.logout("chat-1")
        self.supervisor.exit("chat-1")
        self.assertEqual(self.fleet.restart(servers=["chat-1"]), ["chat-1"])
        self.assertEqual(self.state("chat-1"), "starting")
        self.assertEqual(self.supervisor.signals, [("chat-1", "TERM")])

    def test_stopWhileRestarting(self):
        """
        Stopping a server waiting for its restart delay holds it down.
        """
        self.master.logout("chat-1")
        self.supervisor.exit("chat-1")
        self.assertEqual(self.fleet.stop(servers=["chat-1"]), ["chat-1"])
        self.assertEqual(self.state("chat-1"), "down")

    def test_stopThenRestartDuringDrain(self):
        """
        A restart asked while the server drains from a stop starts it once
        it has exited; a stop asked during a restart keeps it down.
        """
        self.fleet.stop(servers=["chat-1"])
        self.fleet.restart(servers=["chat-1"])
        self.master.logout("chat-1")
        self.supervisor.exit("chat-1")
        self.assertEqual(self.state("chat-1"), "starting")
        self.fleet.restart(servers=["chat-2"])
        self.fleet.stop(servers=["chat-2"])
        self.supervisor.exit("chat-2")
        self.assertEqual(self.state("chat-2"), "down")

    def test_byType(self):
        """
        A type chooses its running servers; ones that are down are skipped.
        """
        self.fleet.stop(servers=["connector-2"])
        self.master.logout("connector-2")
        self.supervisor.exit("connector-2")
        self.assertEqual(self.fleet.stop(type="connector"), ["connector-1"])
        self.assertEqual(self.fleet.restart(type="connector"), ["connector-1", "connector-2"])

    def test_all(self):
        """
        C{all} chooses every server.
        """
        self.assertEqual(self.fleet.kill(all=True), [s.id for s in SERVERS])

    def test_notRunning(self):
        """
        Stopping or killing a server named by id that is down is a 409, and
        nothing is done to the others named with it.
        """
        self.fleet.stop(servers=["chat-1"])
        self.supervisor.exit("chat-1")
        self.supervisor.signals.clear()
        self.assertError(409, "server chat-1 is not running", self.fleet.stop, servers=["chat-2", "chat-1"])
        self.assertError(409, "server chat-1 is not running", self.fleet.kill, servers=["chat-1"])
        self.assertEqual(self.supervisor.signals, [])

    def test_otherMachine(self):
        """
        A server of another machine cannot be stopped from here (409), and a
        type or all skips it.
        """
        self.master.local.remove(self.master.cluster.server("chat-2"))
        fleet = self.another()
        self.assertError(409, "server chat-2 runs on 127.0.0.1, not under this master",
                         fleet.restart, servers=["chat-2"])
        self.assertEqual(fleet.stop(type="chat"), ["chat-1"])

    def test_badSelection(self):
        """
        Unknown ids are a 404, an unknown type a 400 naming the known ones,
        and anything but exactly one of servers, type or all a 400.
        """
        self.assertError(404, "no server chat-9", self.fleet.stop, servers=["chat-1", "chat-9"])
        self.assertError(400, "unknown server type area (types: chat, connector, gate)", self.fleet.kill, type="area")
        self.assertError(400, 'give one of "servers"', self.fleet.restart)
        self.assertError(400, 'give one of "servers"', self.fleet.restart, servers=["chat-1"], all=True)
        self.assertEqual(self.supervisor.signals, [])


class AddTests(FleetTestCase):
    """
    Servers added at run time, from a spec or from the cluster file.
    """

    spec = {"id": "chat-3", "type": "chat", "host": "127.0.0.1", "node_port": 6052}

    def test_addSpec(self):
        """
        A server added from a spec is started by the supervisor with
        C{--server-spec}, known to the master, told to every logged-in
        server, and starting.
        """
        self.master.login("connector-1")
        record = self.fleet.add(spec=self.spec)
        self.assertEqual((record["id"], record["state"], record["type"]), ("chat-3", "starting", "chat"))
        command = self.supervisor.processes["chat-3"]
        self.assertEqual(command[-4:-2], ["--server", "chat-3"])
        self.assertEqual(command[-2], "--server-spec")
        self.assertEqual(json.loads(command[-1]), self.spec)
        self.assertIn("GAMENET_MASTER_PID", self.supervisor.environments["chat-3"])
        self.assertEqual(self.master.cluster.server("chat-3").node_port, 6052)
        self.assertIn("chat-3", [s.id for s in self.master.local])
        self.assertEqual(self.calls("add_servers"), [("connector-1", {"specs": [self.spec]})])
        self.assertEqual(self.fleet.servers()[-1]["id"], "chat-3")

    def test_toldLater(self):
        """
        A server that logs in later is told the added servers (but not
        itself), and a frontend the block list.
        """
        self.fleet.add(spec=self.spec)
        self.master.login("chat-3")
        self.master.login("connector-1")
        self.assertEqual(self.calls("add_servers"), [("connector-1", {"specs": [self.spec]})])
        self.assertEqual(self.calls("set_blocked"), [("connector-1", {"networks": []})])

    def test_notAutoRestarted(self):
        """
        An added server with auto_restart = false is not restarted.
        """
        self.fleet.add(spec={**self.spec, "auto_restart": False})
        self.assertIn("chat-3", self.supervisor.no_restart)

    def assertNothingAdded(self, code, text, **body):
        cluster = self.master.cluster
        self.assertError(code, text, self.fleet.add, **body)
        self.assertIs(self.master.cluster, cluster)
        self.assertEqual(sorted(self.supervisor.processes), sorted(s.id for s in SERVERS))
        self.assertEqual(len(self.fleet.servers()), 5)

    def test_exists(self):
        """
        An id the cluster has is a 409.
        """
        self.assertNothingAdded(409, "server chat-1 already exists", spec={**self.spec, "id": "chat-1"})

    def test_portClash(self):
        """
        A port another server has on that host, or the master's, is a 409.
        """
        self.assertNothingAdded(409, "node_port 6050 of server chat-3 is also [server:chat-1] node_port",
                                spec={**self.spec, "node_port": 6050})
        import attrs

        self.master.cluster = attrs.evolve(self.master.cluster, master_port=3005, admin_port=3006)
        self.assertNothingAdded(409, "is also [cluster] master_port", spec={**self.spec, "node_port": 3005})
        self.assertNothingAdded(409, "is also [cluster] admin_port", spec={**self.spec, "node_port": 3006})

    def test_sharedClientPort(self):
        """
        A frontend may take the client port of one of its type when both set
        C{reuse_port} (it opens it with C{SO_REUSEPORT} beside it); without
        that on both, the port is a 409 saying so.
        """
        shared = frontend("connector-9", "connector", client_port=3050, node_port=4059, reuse_port=True)
        members = {"connector-1": Member(frontend("connector-1", "connector", client_port=3050, node_port=4050,
                                                  reuse_port=True), True)}
        refused: list[int] = []
        check(shared, self.master.cluster, members, {"127.0.0.1"}, lambda host, port: refused.append(port))
        self.assertEqual(refused, [4059])
        members = {"connector-1": Member(SERVERS[1], True)}
        with self.assertRaises(GamenetError) as raised:
            check(shared, self.master.cluster, members, {"127.0.0.1"}, lambda host, port: None)
        self.assertEqual((raised.exception.code, raised.exception.message),
                         (409, "client_port 3050 of server connector-9 is also [server:connector-1] client_port; "
                               "sharing a client port needs reuse_port = true in both"))

    def test_portInUse(self):
        """
        A port that cannot be opened on this machine is a 409 with the reason.
        """
        self.bind_refused[6052] = "Address already in use"
        self.assertNothingAdded(409, "node_port 6052 of server chat-3 cannot be opened on 127.0.0.1: "
                                     "Address already in use", spec=self.spec)

    def test_unknownType(self):
        """
        A type no server of the cluster has is a 400 naming the known ones.
        """
        self.assertNothingAdded(400, "unknown server type area (types: chat, connector, gate)",
                                spec={**self.spec, "type": "area"})

    def test_badSpec(self):
        """
        A spec with bad or missing fields is a 400 naming each.
        """
        self.assertNothingAdded(400, "server spec [server:chat-3] node_port: port 0 is outside 1-65535",
                                spec={**self.spec, "node_port": 0})
        self.assertNothingAdded(400, "server spec [server:chat-3] host: missing",
                                spec={"id": "chat-3", "type": "chat", "node_port": 6052})
        self.assertNothingAdded(400, "server spec: not a JSON object", spec=[1])

    def test_otherHost(self):
        """
        A server of another machine is a 400: a master starts only its own.
        """
        self.assertNothingAdded(400, "host 10.1.1.1 of server chat-3 is not this machine",
                                spec={**self.spec, "host": "10.1.1.1"})

    def test_neitherOrBoth(self):
        """
        Exactly one of a section and a spec.
        """
        self.assertNothingAdded(400, 'give either "section" or "spec"')
        self.assertNothingAdded(400, 'give either "section" or "spec"', section="server:chat-3", spec=self.spec)

    def clusterFile(self, extra=""):
        import attrs

        path = self.mktemp()
        servers = "".join(
            f"[server:{s.id}]\ntype = {s.type}\nhost = {s.host}\nnode_port = {s.node_port}\n"
            + (f"frontend = true\nclient_port = {s.client_port}\n" if s.frontend else "")
            for s in SERVERS
        )
        with open(path, "w") as f:
            f.write(f"[cluster]\nname = test\nsecret = s\n[frontend]\nheartbeat = 7\n{servers}{extra}")
        self.master.cluster = attrs.evolve(self.master.cluster, path=path)
        return path

    def test_addSection(self):
        """
        A section read from the cluster file as it is now (with its
        C{[frontend]} defaults) is added.
        """
        self.clusterFile("[server:connector-3]\ntype = connector\nhost = 127.0.0.1\nnode_port = 4052\n"
                         "frontend = true\nclient_port = 3052\n")
        self.assertEqual(self.fleet.add(section="server:connector-3")["state"], "starting")
        server = self.master.cluster.server("connector-3")
        self.assertEqual((server.client_port, server.options.heartbeat), (3052, 7.0))
        spec = json.loads(self.supervisor.processes["connector-3"][-1])
        self.assertEqual((spec["id"], spec["heartbeat"]), ("connector-3", 7.0))

    def test_noSection(self):
        """
        A section that is not in the file is a 404; a file that cannot be
        loaded now is a 400 with its problems.
        """
        path = self.clusterFile()
        self.assertNothingAdded(404, f"no section [server:chat-3] in {path}", section="server:chat-3")
        with open(path, "a") as f:
            f.write("colour = red\n")
        self.assertNothingAdded(400, f"{path} cannot be used now: {path} [server:chat-2] colour: unknown key",
                                section="chat-3")

    def test_serverPorts(self):
        """
        A server's ports by key, without the ones it does not open.
        """
        self.assertEqual(server_ports(SERVERS[0]), {"node_port": 4010, "client_port": 3014})
        self.assertEqual(server_ports(ServerConfig("x", "chat", "h", 5)), {"node_port": 5})


class RemoveTests(FleetTestCase):
    """
    Removing a server: drain-stop, forget, tell every server.
    """

    def setUp(self):
        super().setUp()
        self.loginAll()

    def test_remove(self):
        """
        A removed server is stopped; once it has exited it is forgotten by
        the fleet, the master and the supervisor, and every logged-in server
        is told.
        """
        self.fleet.remove("chat-2")
        self.assertEqual(self.supervisor.signals, [("chat-2", "TERM")])
        self.assertEqual(self.state("chat-2"), "draining")
        self.master.logout("chat-2")
        self.supervisor.exit("chat-2")
        self.assertError(404, "no server chat-2", self.fleet.server, "chat-2")
        self.assertNotIn("chat-2", self.supervisor.processes)
        self.assertNotIn("chat-2", [s.id for s in self.master.cluster.servers])
        self.assertNotIn("chat-2", [s.id for s in self.master.local])
        self.assertEqual(sorted(i for i, _ in self.calls("remove_servers")), ["chat-1", "connector-1", "connector-2",
                                                                              "gate-1"])
        self.assertEqual(self.calls("remove_servers")[0][1], {"ids": ["chat-2"]})

    def test_toldLater(self):
        """
        A server of the file that was removed is named to every server that
        logs in later; an added one that was removed is not.
        """
        self.fleet.remove("chat-2")
        self.master.logout("chat-2")
        self.supervisor.exit("chat-2")
        self.fleet.add(spec={"id": "chat-3", "type": "chat", "host": "127.0.0.1", "node_port": 6052})
        self.fleet.remove("chat-3")
        self.supervisor.exit("chat-3")
        self.master.calls.clear()
        self.master.logout("chat-1")
        self.master.login("chat-1")
        self.assertEqual(self.calls("remove_servers"), [("chat-1", {"ids": ["chat-2"]})])
        self.assertEqual(self.calls("add_servers"), [])

    def test_removeDown(self):
        """
        A server that is not running is forgotten at once.
        """
        self.fleet.kill(servers=["chat-2"])
        self.master.logout("chat-2")
        self.supervisor.exit("chat-2")
        self.fleet.remove("chat-2")
        self.assertNotIn("chat-2", [r["id"] for r in self.fleet.servers()])

    def test_readd(self):
        """
        A removed id can be added again.
        """
        self.fleet.remove("chat-2")
        self.supervisor.exit("chat-2")
        self.assertEqual(self.fleet.add(spec=server_spec(SERVERS[-1]))["id"], "chat-2")

    def test_bad(self):
        """
        An unknown id is a 404; a server being removed, or another
        machine's, a 409.
        """
        self.assertError(404, "no server chat-9", self.fleet.remove, "chat-9")
        self.fleet.remove("chat-2")
        self.assertError(409, "server chat-2 is being removed", self.fleet.remove, "chat-2")
        self.assertError(409, "server chat-2 is being removed", self.fleet.restart, servers=["chat-2"])
        self.master.local.remove(self.master.cluster.server("chat-1"))
        fleet = self.another()
        self.assertError(409, "not under this master", fleet.remove, "chat-1")


class ClientTests(FleetTestCase):
    """
    sessions, kick and broadcast go to the frontends that are up.
    """

    def setUp(self):
        super().setUp()
        self.loginAll()
        self.master.logout("connector-2")
        self.master.calls.clear()

    def test_kickUid(self):
        """
        A uid is kicked on every frontend that is up; the kicks add up.
        """
        self.master.answers["kick"] = lambda server_id, **kw: {"kicked": 2 if server_id == "connector-1" else 0}
        self.assertEqual(self.result(self.fleet.kick(uid="u1", reason="bye")), 2)
        self.assertEqual(self.calls("kick"), [("gate-1", {"uid": "u1", "reason": "bye"}),
                                              ("connector-1", {"uid": "u1", "reason": "bye"})])

    def test_kickFailedFrontend(self):
        """
        A frontend whose kick fails counts 0; the others still count.
        """
        self.master.answers["kick"] = lambda server_id, **kw: (
            fail(GamenetError("gone", 503)) if server_id == "gate-1" else {"kicked": 1})
        self.assertEqual(self.result(self.fleet.kick(uid="u1")), 1)
        self.assertEqual(self.calls("kick")[0][1]["reason"], "kicked by admin")

    def test_kickSession(self):
        """
        One session of one server.
        """
        self.master.answers["kick"] = lambda server_id, **kw: {"kicked": 1}
        self.assertEqual(self.result(self.fleet.kick(server="connector-1", session=7)), 1)
        self.assertEqual(self.calls("kick"), [("connector-1", {"session": 7, "reason": "kicked by admin"})])

    def test_kickNoSession(self):
        """
        A session the frontend does not have is a 404 naming it (a uid that
        is online nowhere is not an error: 0 kicked).
        """
        self.master.answers["kick"] = lambda server_id, **kw: {"kicked": 0}
        self.assertError(404, "no session 7 on connector-1", self.fleet.kick, server="connector-1", session=7)
        self.assertEqual(self.result(self.fleet.kick(uid="nobody")), 0)

    def test_kickBad(self):
        """
        An unknown server is a 404, one that is not up a 409; a uid and a
        session together, or neither, a 400.
        """
        self.assertError(404, "no server x", self.fleet.kick, server="x", session=1)
        self.assertError(409, "server connector-2 is not up", self.fleet.kick, server="connector-2", session=1)
        self.assertError(400, 'give either "uid"', self.fleet.kick)
        self.assertError(400, 'give either "uid"', self.fleet.kick, uid="u", server="connector-1", session=1)
        self.assertError(400, 'give either "uid"', self.fleet.kick, server="connector-1")
        self.assertError(400, "server chat-1 is not a frontend", self.fleet.kick, server="chat-1", session=1)
        self.assertEqual(self.calls("kick"), [])

    def test_sessions(self):
        """
        One frontend's sessions, as it lists them, with its id and their total.
        """
        listed = [{"id": 3, "uid": "bob", "address": "127.0.0.1", "transport": "tcp", "seconds": 2.0}]
        self.master.answers["sessions"] = lambda server_id, **kw: {"total": 7, "sessions": listed}
        self.assertEqual(self.result(self.fleet.sessions("connector-1", limit=1)),
                         {"server": "connector-1", "total": 7, "sessions": listed})
        self.assertEqual(self.result(self.fleet.sessions("gate-1", uid="bob")),
                         {"server": "gate-1", "total": 7, "sessions": listed})
        self.assertEqual(self.calls("sessions"), [("connector-1", {"limit": 1}),
                                                  ("gate-1", {"uid": "bob", "limit": 100})])

    def test_sessionsBad(self):
        """
        An unknown server is a 404, a backend a 400, a frontend that is not
        up a 409; none is asked.
        """
        self.assertError(404, "no server x", self.fleet.sessions, "x")
        self.assertError(400, "server chat-1 is not a frontend: it has no client sessions", self.fleet.sessions,
                         "chat-1")
        self.assertError(409, "server connector-2 is not up", self.fleet.sessions, "connector-2")
        self.assertEqual(self.calls("sessions"), [])

    def test_broadcast(self):
        """
        A broadcast goes to every frontend that is up; its sessions add up.
        """
        self.master.answers["broadcast"] = lambda server_id, **kw: {"sessions": 3}
        self.assertEqual(self.result(self.fleet.broadcast("onNews", {"text": "hi"})), 6)
        self.assertEqual([i for i, _ in self.calls("broadcast")], ["gate-1", "connector-1"])
        self.assertEqual(self.calls("broadcast")[0][1], {"route": "onNews", "msg": {"text": "hi"}})


class BlockTests(FleetTestCase):
    """
    The block list: checked, saved, then pushed to every frontend that is up.
    """

    def setUp(self):
        super().setUp()
        self.loginAll()
        self.master.calls.clear()

    def test_block(self):
        """
        New entries join the list in canonical form (once each), are saved,
        and the list is pushed to every frontend that is up.
        """
        self.assertEqual(self.result(self.fleet.block(["10.0.0.0/8", "::1"])), ["10.0.0.0/8", "::1/128"])
        self.assertEqual(self.result(self.fleet.block(["::1", "192.0.2.7", "192.0.2.7/32"])),
                         ["10.0.0.0/8", "192.0.2.7/32", "::1/128"])
        self.assertEqual(self.store.networks, ["10.0.0.0/8", "192.0.2.7/32", "::1/128"])
        self.assertEqual(self.result(self.fleet.blocked()), ["10.0.0.0/8", "192.0.2.7/32", "::1/128"])
        pushed = self.calls("set_blocked")
        self.assertEqual([i for i, _ in pushed], ["gate-1", "connector-1", "connector-2"] * 2)
        self.assertEqual(pushed[-1][1], {"networks": ["10.0.0.0/8", "192.0.2.7/32", "::1/128"]})

    def test_badEntry(self):
        """
        An entry that is not an address or a network is a 400; nothing is
        saved or pushed.
        """
        self.assertError(400, "'nope' is not an IPv4 or IPv6 address or network", self.fleet.block,
                         ["10.0.0.1", "nope"])
        self.assertError(400, "'10.0.0.1/8' has host bits set", self.fleet.unblock, ["10.0.0.1/8"])
        self.assertEqual((self.store.saves, self.calls("set_blocked")), ([], []))

    def test_unblock(self):
        """
        Unblocked entries leave the list, saved and pushed; one that is not
        blocked is a 404 and nothing changes.
        """
        self.result(self.fleet.block(["10.0.0.0/8", "::1"]))
        self.assertError(404, "192.0.2.1/32 is not blocked (blocked: 10.0.0.0/8, ::1/128)",
                         self.fleet.unblock, ["::1", "192.0.2.1"])
        self.assertEqual(self.store.networks, ["10.0.0.0/8", "::1/128"])
        self.assertEqual(self.result(self.fleet.unblock(["::1"])), ["10.0.0.0/8"])
        self.assertEqual(self.store.networks, ["10.0.0.0/8"])
        self.assertEqual(self.calls("set_blocked")[-1], ("connector-2", {"networks": ["10.0.0.0/8"]}))

    def test_loaded(self):
        """
        The list is loaded from the store at start (in canonical form) and
        pushed to each frontend when it logs in.
        """
        self.store.networks = ["192.0.2.0/24", "192.0.2.9"]
        fleet = self.another()
        self.master.logout("connector-1")
        self.master.login("connector-1")
        self.assertIn(("connector-1", {"networks": ["192.0.2.0/24", "192.0.2.9/32"]}), self.calls("set_blocked"))
        self.assertEqual(self.result(fleet.blocked()), ["192.0.2.0/24", "192.0.2.9/32"])

    def test_storeDown(self):
        """
        A store that fails is a 503, nothing pushed; a list that could not
        be loaded is not pushed to frontends that log in (they keep theirs).
        """
        self.store.broken = True
        fleet = self.another()
        self.assertError(503, "cannot load the block list: disk on fire", fleet.blocked)
        self.master.logout("connector-1")
        self.master.login("connector-1")
        self.assertEqual(self.calls("set_blocked"), [])
        self.store.broken = False
        self.result(fleet.blocked())
        self.store.broken = True
        self.assertError(503, "cannot save the block list: disk on fire", fleet.block, ["10.0.0.1"])
        self.assertEqual(self.result(fleet.blocked()), [])
        self.flushLoggedErrors(OSError)


class _Process:
    """
    A pretend child process: its pid and the signals sent to it.
    """

    def __init__(self, pid):
        self.pid = pid
        self.signals = []

    def signalProcess(self, signal):
        self.signals.append(signal)


class ProcessClock(Clock):
    """
    A clock that spawns pretend processes.
    """

    def __init__(self):
        super().__init__()
        self.processes = []

    def spawnProcess(self, protocol, executable, args=(), env=None, path=None, uid=None, gid=None, usePTY=0,
                     childFDs=None):
        process = _Process(100 + len(self.processes))
        self.processes.append(process)
        protocol.makeConnection(process)
        return process


class SupervisorTests(SynchronousTestCase):
    """
    The hooks of L{Supervisor} the fleet uses: process events, pids, held
    children, starting and killing.
    """

    def setUp(self):
        from twisted.internet.error import ProcessDone
        from twisted.python.failure import Failure

        self.clock = ProcessClock()
        self.supervisor = Supervisor(self.clock, set())
        self.events = []
        self.supervisor.process_listeners.append(lambda name, pid: self.events.append((name, pid)))
        self.supervisor.addProcess("chat-1", ["twistd", "chat-1"])
        self.supervisor.startService()
        self.clock.advance(5)
        self.exit = lambda: self.supervisor.protocols["chat-1"].processEnded(Failure(ProcessDone(0)))

    def test_events(self):
        """
        A child's start and exit are told with its pid, then C{None}; a
        crashed child waits for its restart delay, then starts again.
        """
        self.assertEqual((self.events, self.supervisor.pid("chat-1")), ([("chat-1", 100)], 100))
        self.exit()
        self.assertEqual((self.events[-1], self.supervisor.pid("chat-1")), (("chat-1", None), None))
        self.clock.advance(0)
        self.assertEqual(self.events[-1], ("chat-1", 101))
        self.exit()
        self.assertTrue(self.supervisor.restart_pending("chat-1"))
        self.clock.advance(1)
        self.assertEqual(self.events[-1], ("chat-1", 102))

    def test_held(self):
        """
        A held child is not restarted when it exits, and a pending restart
        is cancelled, until C{start_process}.
        """
        self.supervisor.hold("chat-1")
        self.supervisor.stop_processes(["chat-1"])
        self.assertEqual(self.clock.processes[0].signals, ["TERM"])
        self.exit()
        self.clock.advance(60)
        self.assertEqual((len(self.clock.processes), self.supervisor.restart_pending("chat-1")), (1, False))
        self.supervisor.start_process("chat-1")
        self.assertEqual((self.events[-1], self.supervisor.held), (("chat-1", 101), set()))
        self.exit()
        self.assertTrue(self.supervisor.restart_pending("chat-1"))
        self.supervisor.hold("chat-1")
        self.clock.advance(60)
        self.assertEqual((len(self.clock.processes), self.supervisor.restart_pending("chat-1")), (2, False))

    def test_startNow(self):
        """
        C{start_process} starts a child waiting for its restart delay at
        once, and only once.
        """
        self.exit()
        self.clock.advance(0)
        self.exit()
        self.supervisor.start_process("chat-1")
        self.clock.advance(60)
        self.assertEqual(len(self.clock.processes), 3)

    def test_kill(self):
        """
        C{kill_process} sends C{SIGKILL} to a running child; to one that is
        not running, nothing.
        """
        self.supervisor.hold("chat-1")
        self.supervisor.kill_process("chat-1")
        self.assertEqual(self.clock.processes[0].signals, ["KILL"])
        self.exit()
        self.supervisor.kill_process("chat-1")
        self.assertEqual(self.clock.processes[0].signals, ["KILL"])
