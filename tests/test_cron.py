"""
Tests for L{gamenet.cron}: Pomelo's crons file, C{app.add_crons} and
C{app.remove_crons}, with time from a C{Clock}.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from typing import Any

import attrs
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from gamenet import config
from gamenet.client import Client
from gamenet.config import ConfigError
from gamenet.cron import CronEntry, CronService, check_time, next_time, parse_crons, read_crons, select
from gamenet.component import cron_handler
from gamenet.plugins import discover
from gamenet.testing import MemoryCluster, backend, cluster_config

from ._processes import eventually
from .test_chat import GARDEN, LOBBY, PLUGINS, chat_cluster
from .test_twistd import START_TIMEOUT, TwistdTestCase, default_cluster


class ScheduleTests(SynchronousTestCase):
    """
    Times are six fields, seconds first, as Pomelo's.
    """

    def test_sixFields(self) -> None:
        """
        A time of five or seven fields is refused, naming the six expected.
        """
        for time in ("* * * * *", "* * * * * * *", 5):
            with self.assertRaises(ValueError) as e:
                check_time(time)
            self.assertIn("is not six fields (second minute hour day-of-month month day-of-week)", str(e.exception))

    def test_outOfRange(self) -> None:
        """
        A field out of range is refused, naming the field.
        """
        with self.assertRaises(ValueError) as e:
            check_time("61 * * * * *")
        self.assertEqual(str(e.exception), "time '61 * * * * *': bad second")
        with self.assertRaises(ValueError) as e:
            check_time("0 0 0 31 1 *")
        self.assertEqual(str(e.exception), "time '0 0 0 31 1 *': bad day-of-month")
        for time, problem in [("0 0 0 1 12 *", "bad month"), ("0 0 0 1 7/5 *", "bad month"),
                              ("0 0 0 31 1 1", "never comes")]:
            with self.assertRaises(ValueError) as e:
                check_time(time)
            self.assertIn(problem, str(e.exception))

    def test_pomeloMonths(self) -> None:
        """
        Months are Pomelo's, counted from 0 (January) to 11 as JavaScript
        counts them: a number, a range, Pomelo's C{r/p} (the months whose
        number leaves C{r} divided by C{p}) and cron's C{*/p} and names.
        """
        january_1971 = datetime(1971, 1, 1, tzinfo=timezone.utc).timestamp()
        after = datetime(1970, 2, 10, tzinfo=timezone.utc).timestamp()
        for time, expected in [("0 0 0 1 0 *", january_1971), ("0 0 0 1 JAN *", january_1971),
                               ("0 0 0 1 11 *", datetime(1970, 12, 1, tzinfo=timezone.utc).timestamp()),
                               ("0 0 0 1 1-2 *", datetime(1970, 3, 1, tzinfo=timezone.utc).timestamp()),
                               ("0 0 0 1 0/3 *", datetime(1970, 4, 1, tzinfo=timezone.utc).timestamp()),
                               ("0 0 0 1 */3 *", datetime(1970, 4, 1, tzinfo=timezone.utc).timestamp()),
                               ("0 0 0 1 2,4-5/1 *", datetime(1970, 3, 1, tzinfo=timezone.utc).timestamp())]:
            self.assertEqual(next_time(check_time(time), after, timezone.utc), expected, time)

    def test_bothDays(self) -> None:
        """
        When both day fields are restricted a day must match both, as in
        Pomelo (cron takes either): C{13} and Friday is Friday the 13th.
        """
        after = datetime(1970, 1, 1, tzinfo=timezone.utc).timestamp()
        self.assertEqual(next_time("0 0 0 13 * 5", after, timezone.utc),
                         datetime(1970, 2, 13, tzinfo=timezone.utc).timestamp())
        self.assertEqual(next_time("0 0 0 * * 5", after, timezone.utc),
                         datetime(1970, 1, 2, tzinfo=timezone.utc).timestamp())

    def test_secondsFirst(self) -> None:
        """
        The first field is the second: C{"30 * * * * *"} comes at second 30
        of every minute, strictly after the moment asked about.
        """
        self.assertEqual(next_time("30 * * * * *", 0, timezone.utc), 30)
        self.assertEqual(next_time("30 * * * * *", 29.9, timezone.utc), 30)
        self.assertEqual(next_time("30 * * * * *", 30, timezone.utc), 90)
        self.assertEqual(next_time("0 */5 * * * *", 0, timezone.utc), 300)
        self.assertEqual(next_time("0 30 10 * * *", 0, timezone.utc), 10 * 3600 + 1800)


class FileTests(SynchronousTestCase):
    """
    The crons file: Pomelo's shape, per environment, checked entry by entry.
    """

    def write(self, data: Any) -> str:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(data if isinstance(data, str) else json.dumps(data))
        return path

    def test_environments(self) -> None:
        """
        Server types under an environment's name apply to that environment;
        those at the top level to any environment without a section.
        """
        crons = parse_crons({
            "development": {"chat": [{"id": 1, "time": "0 * * * * *", "action": "roomCron.stats"}]},
            "chat": [{"id": "top", "time": "0 0 * * * *", "action": "roomCron.hourly"}],
        })
        self.assertEqual([e.id for e in select(crons, "development", "chat", "chat-1")], ["1"])
        self.assertEqual([e.id for e in select(crons, "production", "chat", "chat-1")], ["top"])
        self.assertEqual(select(crons, "development", "connector", "connector-1"), [])

    def test_perServer(self) -> None:
        """
        An entry with a C{serverId} runs only on that server; one without,
        on every server of its type.
        """
        crons = parse_crons({"chat": [
            {"id": 1, "time": "0 * * * * *", "action": "a.b"},
            {"id": 2, "serverId": "chat-2", "time": "0 * * * * *", "action": "a.b"},
        ]})
        self.assertEqual([e.id for e in select(crons, "any", "chat", "chat-1")], ["1"])
        self.assertEqual([e.id for e in select(crons, "any", "chat", "chat-2")], ["1", "2"])

    def test_badEntries(self) -> None:
        """
        A bad entry is reported with where it is in the file.
        """
        good = {"id": 1, "time": "0 * * * * *", "action": "a.b"}
        cases = [
            ({"development": {"chat": [good, {**good, "time": "0 * * * *"}]}},
             "development.chat[1]: time '0 * * * *' is not six fields"),
            ({"chat": [{**good, "action": "stats"}]}, "chat[0]: action 'stats' is not cronName.method"),
            ({"chat": [{**good, "serverID": "chat-1"}]}, "chat[0]: unknown key 'serverID'"),
            ({"chat": [{"time": "0 * * * * *", "action": "a.b"}]}, "chat[0]: id: missing"),
            ({"development": {"chat": good}}, "development.chat is not a list of crons"),
            ({"development": 3}, "development is not an object of server types"),
        ]
        for data, message in cases:
            with self.assertRaises(ValueError) as e:
                parse_crons(data)
            self.assertIn(message, str(e.exception))

    def test_readErrors(self) -> None:
        """
        A missing file, or one that is not JSON, is reported with its path.
        """
        missing = self.mktemp()
        with self.assertRaises(ValueError) as e:
            read_crons(missing)
        self.assertEqual(str(e.exception), f"cannot read {missing}: No such file or directory")
        path = self.write("{nope")
        with self.assertRaises(ValueError) as e:
            read_crons(path)
        self.assertIn(f"{path} is not JSON", str(e.exception))
        path = self.write({"chat": [{"id": 1, "time": "x", "action": "a.b"}]})
        with self.assertRaises(ValueError) as e:
            read_crons(path)
        self.assertTrue(str(e.exception).startswith(f"{path}: chat[0]: time 'x'"))

    def test_clusterKey(self) -> None:
        """
        C{[cluster] crons} is read relative to the cluster file and checked
        when the file loads; a bad entry is a problem of that key naming the
        crons file and the entry.
        """
        directory = self.mktemp()
        os.makedirs(os.path.join(directory, "config"))
        crons = os.path.join(directory, "config", "crons.json")
        with open(crons, "w") as f:
            json.dump({"chat": [{"id": 1, "time": "0 * * * * *", "action": "a.b"}]}, f)
        ini = os.path.join(directory, "cluster.ini")
        with open(ini, "w") as f:
            f.write("[cluster]\nname = t\nsecret = s\ncrons = config/crons.json\n"
                    "[server:chat-1]\ntype = chat\nhost = 127.0.0.1\nnode_port = 6050\n")
        self.assertEqual(config.load(ini).crons, os.path.abspath(crons))
        with open(crons, "w") as f:
            json.dump({"chat": [{"id": 1, "time": "0 * * * *", "action": "a.b"}]}, f)
        with self.assertRaises(ConfigError) as e:
            config.load(ini)
        self.assertEqual(e.exception.problems, [
            f"{ini} [cluster] crons: {os.path.abspath(crons)}: chat[0]: time '0 * * * *' is not six fields "
            "(second minute hour day-of-month month day-of-week)",
        ])


class RoomCron:
    """
    A cron component whose jobs record their calls; C{slow} returns a
    Deferred the test fires, C{broken} raises.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, float]] = []
        self.clock: Clock | None = None
        self.pending: list[Deferred[None]] = []

    def stats(self) -> None:
        assert self.clock is not None
        self.calls.append(("stats", self.clock.seconds()))

    def broken(self) -> None:
        self.stats()
        raise RuntimeError("no rooms")

    def slow(self) -> Deferred[None]:
        self.stats()
        d: Deferred[None] = Deferred()
        self.pending.append(d)
        return d

    async def later(self) -> None:
        d: Deferred[None] = Deferred()
        self.pending.append(d)
        await d
        self.stats()


class ServiceTests(SynchronousTestCase):
    """
    L{CronService} runs jobs when their time comes on its clock.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.jobs = RoomCron()
        self.jobs.clock = self.clock
        self.path = ""

    def service(self, entries: dict[str, Any] | None = None, start: bool = True) -> CronService:
        if entries is not None:
            self.path = self.mktemp()
            with open(self.path, "w") as f:
                json.dump(entries, f)
        methods = {name: getattr(self.jobs, name) for name in ("stats", "broken", "slow", "later")}
        service = CronService(self.clock, "chat-1", "chat", "development", self.path,
                              lambda: {"roomCron": methods}, timezone.utc)
        if start:
            service.privilegedStartService()
            service.startService()
        return service

    def everyMinute(self, action: str = "roomCron.stats", cron_id: Any = 1) -> dict[str, Any]:
        return {"chat": [{"id": cron_id, "time": "0 * * * * *", "action": action}]}

    def test_boundaries(self) -> None:
        """
        An every-minute job runs at each minute, not before.
        """
        service = self.service(self.everyMinute())
        self.clock.advance(59.9)
        self.assertEqual(self.jobs.calls, [])
        self.clock.advance(0.1)
        self.assertEqual(self.jobs.calls, [("stats", 60)])
        self.clock.advance(60)
        self.assertEqual(self.jobs.calls, [("stats", 60), ("stats", 120)])
        self.assertEqual(service.jobs["1"].runs, 2)
        self.assertEqual(service.jobs["1"].next_run, 180)

    def test_raising(self) -> None:
        """
        A job that raises is logged and runs again at its next time.
        """
        service = self.service(self.everyMinute("roomCron.broken"))
        self.clock.advance(60)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.clock.advance(60)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.jobs.calls, [("stats", 60), ("stats", 120)])
        self.assertEqual(service.jobs["1"].failures, 2)

    def test_notStartedTwice(self) -> None:
        """
        A job whose last run (a Deferred) has not finished when its next time
        comes is not started again, and that is counted; once it finishes,
        it runs at its next time.
        """
        service = self.service(self.everyMinute("roomCron.slow"))
        self.clock.advance(60)
        self.clock.advance(60)
        self.assertEqual(self.jobs.calls, [("stats", 60)])
        self.assertEqual(service.jobs["1"].overlaps, 1)
        self.jobs.pending.pop().callback(None)
        self.clock.advance(60)
        self.assertEqual(self.jobs.calls, [("stats", 60), ("stats", 180)])

    def test_coroutine(self) -> None:
        """
        An C{async def} job is running until its coroutine ends.
        """
        service = self.service(self.everyMinute("roomCron.later"))
        self.clock.advance(60)
        self.assertTrue(service.jobs["1"].running)
        self.jobs.pending.pop().callback(None)
        self.assertFalse(service.jobs["1"].running)
        self.assertEqual(self.jobs.calls, [("stats", 60)])

    def test_remove(self) -> None:
        """
        Removed by id, or by a record with the id, a job runs no more; an id
        the server does not have is logged and ignored.
        """
        service = self.service({"chat": [
            {"id": 1, "time": "0 * * * * *", "action": "roomCron.stats"},
            {"id": "two", "time": "30 * * * * *", "action": "roomCron.stats"},
        ]})
        self.assertEqual(service.remove([1, {"id": "two"}, 3]), ["1", "two"])
        self.clock.advance(120)
        self.assertEqual(self.jobs.calls, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_addAtRunTime(self) -> None:
        """
        Records added while running are scheduled from now; one for another
        server is left out; a taken id or an unknown action is refused.
        """
        service = self.service()
        self.clock.advance(30)
        added = service.add([
            {"id": 7, "time": "0 * * * * *", "action": "roomCron.stats"},
            {"id": 8, "serverId": "chat-2", "time": "0 * * * * *", "action": "roomCron.stats"},
        ])
        self.assertEqual([job.entry.id for job in added], ["7"])
        self.clock.advance(30)
        self.assertEqual(self.jobs.calls, [("stats", 60)])
        for records, message in [
            ([{"id": 7, "time": "0 * * * * *", "action": "roomCron.stats"}], "id 7 is already a cron of chat-1"),
            ([{"id": 9, "time": "0 * * * * *", "action": "roomCron.nope"}], "cron 'roomCron' has no method 'nope'"),
            ([{"id": 9, "time": "0 * * * * *", "action": "other.stats"}], "no cron component 'other'"),
            ([{"id": 9, "time": "0 * * *", "action": "roomCron.stats"}], "cron 0: time '0 * * *' is not six"),
        ]:
            with self.assertRaises(ValueError) as e:
                service.add(records)
            self.assertIn(message, str(e.exception))
        self.assertEqual(list(service.jobs), ["7"])

    def test_notAList(self) -> None:
        """
        One record, or one id, given where a list is expected is a TypeError
        saying so; nothing is added or removed.
        """
        service = self.service(self.everyMinute())
        record = {"id": 2, "time": "0 * * * * *", "action": "roomCron.stats"}
        for call, argument, message in [(service.add, record, "add_crons takes a list of crons, not dict"),
                                        (service.remove, 1, "remove_crons takes a list of crons, not int"),
                                        (service.remove, "1", "remove_crons takes a list of crons, not str")]:
            with self.assertRaises(TypeError) as e:
                call(argument)
            self.assertEqual(str(e.exception), message)
        self.assertEqual(list(service.jobs), ["1"])

    def test_addBeforeStart(self) -> None:
        """
        Records added before the server starts are scheduled when it starts,
        with the file's.
        """
        service = self.service(self.everyMinute(), start=False)
        self.assertEqual(service.add([{"id": 2, "time": "30 * * * * *", "action": "roomCron.stats"}]), [])
        service.privilegedStartService()
        service.startService()
        self.clock.advance(30)
        self.clock.advance(30)
        self.assertEqual(self.jobs.calls, [("stats", 30), ("stats", 60)])

    def test_unknownAction(self) -> None:
        """
        A file entry whose action names no cron method ends the start with
        one line naming the file and the entry.
        """
        for action, problem in [("roomCron.nope", "cron 'roomCron' has no method 'nope'"),
                                ("other.stats", "no cron component 'other' on chat servers")]:
            service = self.service(self.everyMinute(action), start=False)
            with self.assertRaises(ValueError) as e:
                service.privilegedStartService()
            self.assertEqual(str(e.exception), f"{self.path}: chat[0] (id 1): action {action!r}: {problem}")

    def test_duplicateInFile(self) -> None:
        """
        Two entries of one server with one id end the start.
        """
        entry = {"id": 1, "time": "0 * * * * *", "action": "roomCron.stats"}
        service = self.service({"chat": [entry, {**entry, "serverId": "chat-1"}]}, start=False)
        with self.assertRaises(ValueError) as e:
            service.privilegedStartService()
        self.assertEqual(str(e.exception), f"{self.path}: chat[1] (id 1): id 1 is already a cron of chat-1")

    def test_stop(self) -> None:
        """
        Stopping cancels every pending run.
        """
        service = self.service(self.everyMinute())
        service.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertIsNone(service.jobs["1"].next_run)


class Counter:
    """
    A cron component counting its runs per server.
    """

    runs: dict[str, int] = {}

    def __init__(self, app: Any) -> None:
        self.app = app

    def tick(self) -> None:
        self.runs[self.app.server_id] = self.runs.get(self.app.server_id, 0) + 1


class ApplicationTests(SynchronousTestCase):
    """
    Crons in a whole cluster: the file's entries per server type and id,
    cron components registered with L{cron}, C{app.add_crons} and
    C{app.remove_crons}.
    """

    def setUp(self) -> None:
        Counter.runs = {}
        path = self.mktemp()
        with open(path, "w") as f:
            json.dump({"test": {"chat": [
                {"id": 1, "time": "0 * * * * *", "action": "counter.tick"},
                {"id": 2, "serverId": "chat-2", "time": "30 * * * * *", "action": "counter.tick"},
            ]}}, f)
        servers = (backend("chat-1", "chat"), backend("chat-2", "chat"), backend("area-1", "area"))
        self.cluster = MemoryCluster(attrs.evolve(cluster_config(*servers), crons=path),
                                     [cron_handler(Counter, "chat")])
        self.cluster.start()
        self.addCleanup(self.cluster.stop)

    def test_perTypeAndId(self) -> None:
        """
        Every chat server runs the entry without C{serverId}; only chat-2 the
        one naming it; the area server none.
        """
        self.cluster.advance(60)
        self.assertEqual(Counter.runs, {"chat-1": 1, "chat-2": 2})
        self.assertEqual(self.cluster.apps["area-1"].crons.jobs, {})

    def test_addAndRemove(self) -> None:
        """
        C{app.add_crons} and C{app.remove_crons} are Pomelo's C{addCrons} and
        C{removeCrons}.
        """
        app = self.cluster.apps["chat-1"]
        app.add_crons([{"id": 3, "time": "15 * * * * *", "action": "counter.tick"}])
        self.assertEqual(app.remove_crons([{"id": 1}]), ["1"])
        self.cluster.advance(60)
        self.assertEqual(Counter.runs["chat-1"], 1)

    def test_entryDefaults(self) -> None:
        """
        L{CronEntry} ids compare as text.
        """
        self.assertEqual(CronEntry.parse({"id": 1, "time": "0 * * * * *", "action": "a.b"}).id, "1")


CHAT_CRONS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "examples", "chat", "config", "crons.json")


class ChatCronTests(SynchronousTestCase):
    """
    The chat example's cron: every minute, C{onRoomStats} to each room's
    members from the chat server holding the room.
    """

    def setUp(self) -> None:
        self.cluster = MemoryCluster(attrs.evolve(chat_cluster([3014, 3050, 3051]), crons=CHAT_CRONS),
                                     discover(PLUGINS))
        self.cluster.start()
        self.addCleanup(self.cluster.stop)
        self.pushes: dict[str, list[Any]] = {}

    def enter(self, user: str) -> None:
        """
        Put C{user} (C{"name@room"}) in its room through connector-1,
        recording the C{onRoomStats} pushes it gets.
        """
        name, rid = user.split("@")
        client = self.cluster.client("connector-1")
        self.addCleanup(client.close)
        self.pushes[user] = []
        client.on("onRoomStats", self.pushes[user].append)
        d = client.request("connector.entryHandler.enter", {"username": name, "rid": rid})
        self.cluster.flush()
        self.successResultOf(d)

    def test_roomStats(self) -> None:
        """
        At each minute, every member of a room gets the number of users in
        it, once (the two chat servers each push only for the rooms they
        hold), and nothing in between.
        """
        for user in (f"alice@{LOBBY}", f"bob@{LOBBY}", f"dave@{GARDEN}"):
            self.enter(user)
        holders = {app.server_id for app in self.cluster.apps.values()
                   if app.server_type == "chat" and any(app.channels.get_channel(r) for r in (LOBBY, GARDEN))}
        self.assertEqual(holders, {"chat-1", "chat-2"})
        self.cluster.advance(59.9 - self.cluster.reactor.seconds() % 60)
        self.assertEqual(self.pushes, {f"alice@{LOBBY}": [], f"bob@{LOBBY}": [], f"dave@{GARDEN}": []})
        self.cluster.advance(0.2)
        lobby, garden = {"rid": LOBBY, "users": 2}, {"rid": GARDEN, "users": 1}
        self.assertEqual(self.pushes, {f"alice@{LOBBY}": [lobby], f"bob@{LOBBY}": [lobby],
                                       f"dave@{GARDEN}": [garden]})
        self.cluster.advance(60)
        self.assertEqual(self.pushes[f"dave@{GARDEN}"], [garden, garden])


class ChatCronProcessTests(TwistdTestCase):
    """
    The chat example's cron in a real process: the crons file named by the
    cluster file, run on the reactor's clock, pushing to a real client.
    """

    async def test_roomStats(self) -> None:
        """
        With the example's crons file changed to every second, a user in a
        room of the chat cluster (C{twistd gamenet --all}) gets
        C{onRoomStats} with its room's count, again and again.
        """
        crons = os.path.join(self.directory, "crons.json")
        with open(CHAT_CRONS, encoding="utf-8") as f:
            data = json.load(f)
        data["chat"][0]["time"] = "* * * * * *"
        with open(crons, "w", encoding="utf-8") as f:
            json.dump(data, f)
        path, frontends, _ = default_cluster(self.directory)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        changed = text.replace(f"crons = {os.path.normpath(CHAT_CRONS)}", f"crons = {crons}")
        self.assertNotEqual(changed, text, "etc/cluster.ini: expected the example's crons file")
        with open(path, "w", encoding="utf-8") as f:
            f.write(changed)
        self.start_twistd("--config", path, "--all")
        port = next(port for kind, port in frontends.values() if kind == "connector")
        stats: list[Any] = []

        async def enter() -> bool:
            # The connector's links to the chat servers may still be coming up.
            client = await Client.connect(reactor, "127.0.0.1", port, "tcp", timeout=5)
            self.addCleanup(client.close)
            client.on("onRoomStats", stats.append)
            answer = await client.request("connector.entryHandler.enter", {"username": "ann", "rid": "r1"})
            if answer != {"users": ["ann"]}:
                await client.close()
                return False
            return True

        await eventually(enter, START_TIMEOUT, "ann to enter room r1", self.fail, 0.2)
        await eventually(lambda: succeed(len(stats) >= 2), 10, "two onRoomStats pushes", self.fail, 0.05)
        self.assertEqual(stats[:2], [{"rid": "r1", "users": 1}] * 2)
