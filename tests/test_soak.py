"""
The soak with faults (C{bench/soak.py}): its 60-second version against the
chat example under its master, and its ledger and verdict on made-up
figures, so that each way it can fail is seen to fail. (Its figures from 30
minutes are in doc/benchmarks.md.)
"""

from __future__ import annotations

import importlib
import os
import random
import sys

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from .test_bench import REPO, run_script


def bench_module(test: SynchronousTestCase, name: str):
    """
    Import C{bench/NAME.py} (bench/ is not a package: its scripts import each other by name).
    """
    path = str(REPO / "bench")
    if path not in sys.path:
        sys.path.insert(0, path)
        test.addCleanup(sys.path.remove, path)
    return importlib.import_module(name)


class SoakTests(TestCase):
    """
    C{bench/soak.py} for 60 seconds: a chat server and a connector killed.
    """

    timeout = 300

    async def test_soak(self):
        """
        Under 60 s of chat load with users coming and going, a chat server
        and then a connector are SIGKILLed and restarted by the master;
        every acknowledged message reaches every member of its room (the
        killed connector's clients aside, who enter again), every room
        works again after each restart, every server's descriptors are back
        at their level, and the script says PASS, writes its PNG and exits 0.
        """
        png = os.path.abspath(self.mktemp()) + ".png"
        code, summary, text = await run_script(
            self, "soak", "--duration", 60, "--rooms", 6, "--users-per-room", 4, "--rate", 20, "--churn", 1,
            "--kill-interval", 12, "--recovery-bound", 10, "--sample-interval", 2, "--seed", 1, "--png", png)
        self.assertEqual(code, 0, text)
        self.assertIn("verdict: PASS", text)
        self.assertEqual(summary["failed"], [])
        self.assertEqual(sorted(f["server"].split("-")[0] for f in summary["faults"]), ["chat", "connector"], text)
        messages = summary["messages"]
        self.assertGreater(messages["acked"], 500, text)
        self.assertEqual(messages["lost"], 0, text)
        self.assertEqual(messages["delivered"] + messages["missing_killed_connector"], messages["expected"], text)
        self.assertGreater(summary["counts"]["connections killed with their connector"], 0, text)
        self.assertGreater(summary["counts"]["left"], 20, text)
        for fault in summary["faults"]:
            self.assertIsNotNone(fault["back"], text)
            self.assertEqual((fault["rooms_checked"], fault["broken"]), (6, []), text)
        for row in summary["descriptors"]:
            self.assertTrue(all(level["back"] for level in row["levels"].values()), text)
        self.assertEqual(set(summary["memory"]), {"gate-1", "connector-1", "connector-2", "chat-1", "chat-2",
                                                  "master"})
        with open(png, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")


class LedgerTests(SynchronousTestCase):
    """
    The soak's ledger (C{bench/_soak_load.py}) on messages made up here.
    """

    def setUp(self):
        load = bench_module(self, "_soak_load")
        self.load = load.ChatLoad(Clock(), 1, {}, random.Random(1))
        self.Message = load.Message

    def message(self, n, expected, received, acked=True):
        message = self.Message(n, "r", 0.0, set(expected), set(received), acked)
        self.load.messages[n] = message
        self.load.completed.setdefault("r", [])
        return message

    def test_lost(self):
        """
        An acknowledged message not heard by a member connected when it was
        sent is a loss, named with the room and the member; one never
        acknowledged is not.
        """
        self.message(0, [("a", 1), ("b", 1)], [("a", 1)])
        self.message(1, [("a", 1), ("b", 1)], [], acked=False)
        tally = self.load.tally()
        self.assertEqual((tally["acked"], tally["expected"], tally["delivered"], tally["lost"]), (1, 2, 1, 1))
        self.assertEqual(tally["losses"], [{"id": 0, "room": "r", "sent": 0.0, "missing": ["b#1 (connected)"]}])

    def test_killedConnectorApart(self):
        """
        A member whose connection ended with its connector killed is counted
        apart, not lost, and does not keep the message from being complete
        for the recovery checks.
        """
        message = self.message(0, [("a", 1), ("b", 2)], [("a", 1)])
        self.load.ended[("b", 2)] = "killed"
        self.load.recheck()
        tally = self.load.tally()
        self.assertEqual((tally["lost"], tally["missing_killed_connector"]), (0, 1))
        self.assertIsNotNone(message.done)
        self.assertEqual(len(self.load.completed["r"]), 1)

    def test_broken(self):
        """
        A room with members is broken after a restart unless a message sent
        since then was complete within the bound: one sent before, or
        complete too late, does not count.
        """
        user = bench_module(self, "_soak_load").User("a", "r", "tcp", member=True)
        self.load.rooms["r"] = [user]
        for room in ("r", "late", "empty"):
            self.load.completed[room] = []
        self.load.rooms["late"] = [bench_module(self, "_soak_load").User("b", "late", "tcp", member=True)]
        self.load.completed["r"] += [(9.0, 10.5), (10.5, 12.0)]
        self.load.completed["late"] += [(9.0, 11.0), (11.0, 16.0)]
        self.assertEqual(self.load.broken(["r", "late", "empty"], 10.0, 5.0), ["late"])

    def test_heard(self):
        """
        A push heard twice, or in the wrong room, is counted and not taken
        as a delivery.
        """
        message = self.message(0, [("a", 1)], [])
        user = bench_module(self, "_soak_load").User("a", "r", "tcp")
        self.load._heard(user, 1, {"msg": "0"})
        self.load._heard(user, 1, {"msg": "0"})
        self.load._heard(bench_module(self, "_soak_load").User("a", "elsewhere", "tcp"), 1, {"msg": "0"})
        self.assertEqual(message.received, {("a", 1)})
        self.assertEqual((self.load.counts["deliveries twice"], self.load.counts["deliveries to the wrong room"]),
                         (1, 1))


class VerdictTests(SynchronousTestCase):
    """
    The verdict and the figures behind it (C{bench/_soak_report.py}).
    """

    def setUp(self):
        self.report = bench_module(self, "_soak_report")
        self.tally = {"acked": 10, "lost": 0, "messages_with_losses": 0}

    def test_pass(self):
        """
        Nothing missed, nothing said.
        """
        self.assertEqual(self.report.verdict(self.tally, [], {}, [], []), [])

    def test_reasons(self):
        """
        Each missed target is one sentence: lost deliveries, a server not
        back, a room broken after a restart, memory growth, descriptors not
        back; problems of the run come first.
        """
        faults = [{"server": "chat-1", "killed": 10.0, "back": None, "broken": []},
                  {"server": "chat-2", "killed": 20.0, "back": 22.0, "broken": ["room3"], "bound": 5.0}]
        memory = {"gate-1": {"growth_pct_per_10min": 2.5}, "chat-1": {"growth_pct_per_10min": None}}
        fds = [{"server": "chat-2", "killed": 20.0, "levels": {"gate-1": {"before": 20, "after": 25, "back": False}}}]
        failed = self.report.verdict({"acked": 10, "lost": 3, "messages_with_losses": 2}, faults, memory, fds,
                                     ["the master exited with 1"])
        self.assertEqual(failed, [
            "the master exited with 1",
            "3 deliveries of acknowledged messages lost (2 messages)",
            "chat-1 killed at 10s was not back in time",
            "after chat-2 was back at 22s, no message reached every member within 5s in: room3",
            "gate-1 RSS grew 2.5% per 10 minutes after warm-up (target: under 2%)",
            "gate-1 held 25 descriptors after chat-2 was killed at 20s and back, 20 before",
        ])

    def sample(self, t, pid, rss, fds=20, clients=0):
        return {"t": t, "server": "s", "pid": pid, "rss_kib": rss, "fds": fds, "cpu_s": t / 10, "clients": clients}

    def test_memoryPooled(self):
        """
        Memory growth is one slope over the incarnations' samples after
        their warm-up, whatever their levels; too short a span is not measured.
        """
        samples = [self.sample(t, 1, 1000 + (500 if t < 100 else t)) for t in range(0, 400, 5)]
        samples += [self.sample(t, 2, 5000 + t - 400) for t in range(400, 700, 5)]
        [row] = self.report.memory(samples, 100).values()
        self.assertEqual(row["incarnations"], 2)
        mean = sum(s["rss_kib"] for s in samples if s["t"] >= 100 and (s["pid"] == 1 or s["t"] >= 500)) / (
            len([s for s in samples if s["t"] >= 100 and (s["pid"] == 1 or s["t"] >= 500)]))
        self.assertAlmostEqual(row["growth_pct_per_10min"], round(600 / mean * 100, 2), places=1)
        [short] = self.report.memory(samples[:30], 100).values()
        self.assertIsNone(short["growth_pct_per_10min"])

    def test_descriptors(self):
        """
        Descriptors are compared without the soak's own connections, before
        the kill and once the server has been back a while.
        """
        samples = [self.sample(t, 1, 1000, fds=20 + c, clients=c) for t, c in ((0, 3), (2, 4), (4, 5))]
        samples += [self.sample(t, 1, 1000, fds=30 + c, clients=c) for t, c in ((20, 1), (22, 2), (24, 1))]
        [row] = self.report.descriptors(samples, [{"server": "x", "killed": 5.0, "back": 8.0}])
        self.assertEqual(row["levels"]["s"], {"before": 20, "after": 30, "back": False})
