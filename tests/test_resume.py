"""
Sessions that survive a dropped connection (L{gamenet.session.suspend},
L{gamenet.session.resume}): the tokens, and the chat example's users
dropping and resuming on the same connector or the other one, in a
L{MemoryCluster}; L{ResumeProcessTests} does it under the master, with
L{gamenet.client.Client}'s own resume.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail
from twisted.trial.unittest import SynchronousTestCase, TestCase

from gamenet.client import Client
from gamenet.plugins import discover
from gamenet.errors import GamenetError
from gamenet.session import resume
from gamenet.session.resume import Claims, TokenError
from gamenet.session.suspend import CONFIRM_RETRY, CONFIRM_WITHIN
from gamenet.testing import MemoryCluster, backend, cluster_config, free_ports, frontend

from ._processes import CHAT_EXAMPLE, MasterProcess, cluster_section, eventually, server_section
from .test_chat import PLUGINS, ROUTES, added, chat, left
from .test_config import MINIMAL, ConfigTestCase

ROOM = "lobby"


class TokenTests(SynchronousTestCase):
    """
    L{resume.issue} and L{resume.verify}.
    """

    def test_roundTrip(self):
        """
        A token says which frontend holds which session of which uid, with its nonce.
        """
        token = resume.issue("s3cret", "connector-1", 7, "alice*lobby", "n0nce")
        self.assertEqual(resume.verify("s3cret", token), Claims("connector-1", 7, "alice*lobby", "n0nce"))

    def test_forged(self):
        """
        A token signed with another secret, one whose claims were changed,
        and anything that is not a token are refused.
        """
        token = resume.issue("s3cret", "connector-1", 7, "alice*lobby", "n0nce")
        other = resume.issue("s3cret", "connector-1", 7, "mallory*lobby", "n0nce")
        version, _, signature = token.split(".")
        changed = ".".join([version, other.split(".")[1], signature])
        for bad in (resume.issue("guess", "connector-1", 7, "alice*lobby", "n0nce"), changed, "", "a.b.c",
                    None, 42, token + "x", "r1." * 400):
            with self.assertRaises(TokenError, msg=repr(bad)):
                resume.verify("s3cret", bad)

    def test_unguessable(self):
        """
        Nonces are fresh and long: tokens of the same session never repeat.
        """
        nonces = {resume.new_nonce() for _ in range(100)}
        self.assertEqual(len(nonces), 100)
        self.assertTrue(all(len(nonce) >= 20 for nonce in nonces))


class ConfigTests(ConfigTestCase):
    """
    C{resume_window} and C{resume_buffer} in a cluster file.
    """

    def test_values(self):
        """
        Defaults 30 s and 64 KiB; set in C{[frontend]} and again per server.
        """
        options = self.load(MINIMAL).server("gate-1").options
        self.assertEqual((options.resume_window, options.resume_buffer), (30.0, 65536))
        text = MINIMAL.replace("[server:gate-1]", "[frontend]\nresume_window = 0\n\n[server:gate-1]")
        options = self.load(text + "resume_buffer = 1000\n").server("gate-1").options
        self.assertEqual((options.resume_window, options.resume_buffer), (0.0, 1000))

    def test_problems(self):
        """
        A negative window and a buffer below 1 byte are one line each.
        """
        self.assertProblem(MINIMAL + "resume_window = -1\n", "[server:gate-1] resume_window",
                           "must not be negative, not -1.0")
        self.assertProblem(MINIMAL + "resume_buffer = 0\n", "[server:gate-1] resume_buffer",
                           "must be at least 1, not 0")


def chat_cluster(**options):
    """
    The chat example: a gate, two connectors with C{options}, one chat server.
    """
    return cluster_config(
        frontend("gate-1", "gate", 3014),
        frontend("connector-1", "connector", 3050, **options),
        frontend("connector-2", "connector", 3051, **options),
        backend("chat-1", "chat"),
        extra_routes=ROUTES,
    )


class ChatMixin:
    """
    Users of the chat example in one room: alice asked for resume, bob did not.
    """

    options: dict[str, Any] = {}

    def setUp(self):
        self.cluster = MemoryCluster(chat_cluster(**self.options), discover(PLUGINS))
        self.cluster.start()
        self.addCleanup(self.cluster.stop)
        self.pushes = {}
        self.clients = {}
        self.enter("alice", "connector-1")
        self.enter("bob", "connector-2", resume=False)
        self.assertEqual(self.pushes["alice"], [added("bob")])
        self.pushes["alice"].clear()
        self.token = self.clients["alice"].resume_token
        self.assertIsNotNone(self.token)

    def connect(self, name, server_id, **options):
        """
        A client of C{name} connected in memory to C{server_id}, its pushes
        recorded from its first byte on (a resumed session's held pushes
        come right after the handshake).
        """
        self.pushes[name] = []
        self.clients[name] = self.cluster.client(server_id, self.pushes[name].append, refused=True, **options)
        return self.clients[name]

    def request(self, name, route, msg):
        d = self.clients[name].request(route, msg)
        self.cluster.flush()
        return self.successResultOf(d)

    def enter(self, name, server_id, resume=True):
        self.connect(name, server_id, resume=resume)
        answer = self.request(name, "connector.entryHandler.enter", {"username": name, "rid": ROOM})
        self.assertIn(name, answer["users"])

    def say(self, name, content):
        self.assertEqual(self.request(name, "chat.chatHandler.send", {"content": content, "target": "*"}), {})

    def drop(self, name):
        """
        Drop C{name}'s connection as a network does: the server sees a
        reset, not a close.
        """
        self.cluster.drop(self.clients[name])

    def resume(self, name, server_id, token):
        """
        C{name} connects to C{server_id} presenting C{token}; the client,
        whose C{handshake} is the answer.
        """
        return self.connect(name, server_id, user={"resume": token})

    def members(self):
        channel = self.cluster.apps["chat-1"].channels.get_channel(ROOM)
        return {uid: channel.get_member(uid)[1] for uid in channel.get_members()}

    def refused(self, client, reason):
        self.assertEqual(client.handshake, {"code": resume.REFUSED_CODE, "message": reason})
        self.assertFalse(client._open)


class ResumeTests(ChatMixin, SynchronousTestCase):
    """
    Alice's connection drops.
    """

    def test_otherFrontend(self):
        """
        Alice drops; bob says three things; alice resumes on the other
        connector: the handshake says so with a new token, she gets the
        three messages in order, once, is still in the room (now on the
        other connector), and goes on talking; nobody was told she left.
        """
        self.drop("alice")
        for n in range(3):
            self.say("bob", f"m{n}")
        client = self.resume("alice", "connector-2", self.token)
        user = client.handshake["user"]
        self.assertEqual((user["resumed"], user["uid"]), (True, "alice*lobby"))
        self.assertNotEqual(user["token"], self.token)
        self.assertEqual(self.pushes["alice"], [chat(f"m{n}", "bob") for n in range(3)])
        self.assertEqual(self.members(), {"alice*lobby": "connector-2", "bob*lobby": "connector-2"})
        self.say("alice", "back")
        self.assertEqual(self.pushes["alice"][3:], [chat("back", "alice")])
        self.assertEqual(self.pushes["bob"], [chat(f"m{n}", "bob") for n in range(3)] + [chat("back", "alice")])
        self.assertEqual(len(self.cluster.apps["connector-1"].sessions), 0)
        session, = self.cluster.apps["connector-2"].sessions.get_by_uid("alice*lobby")
        self.assertEqual(session.get("rid"), ROOM)

    def test_endsWhereResumed(self):
        """
        A session resumed on the other connector ends there, once: when
        it closes, the room is told she left, once.
        """
        self.drop("alice")
        self.resume("alice", "connector-2", self.token)
        self.clients["alice"].close()
        self.cluster.flush()
        self.assertEqual(self.pushes["bob"], [left("alice")])
        self.assertEqual(self.members(), {"bob*lobby": "connector-2"})

    def test_sameFrontend(self):
        """
        Resumed on the connector that held it, the session is the same one.
        """
        session, = self.cluster.apps["connector-1"].sessions.get_by_uid("alice*lobby")
        self.drop("alice")
        self.say("bob", "while away")
        self.resume("alice", "connector-1", self.token)
        self.assertEqual(self.pushes["alice"], [chat("while away", "bob")])
        self.assertEqual(self.cluster.apps["connector-1"].sessions.get_by_uid("alice*lobby"), [session])
        self.say("bob", "again")
        self.assertEqual(self.pushes["alice"], [chat("while away", "bob"), chat("again", "bob")])

    def test_liveConnection(self):
        """
        A client that resumes before its old connection is seen to drop
        (a new network) takes its session; the old connection is kicked.
        """
        old = self.clients["alice"]
        self.resume("alice", "connector-2", self.token)
        self.assertEqual(self.successResultOf(old.closed), "resumed elsewhere")
        self.say("bob", "hi")
        self.assertEqual(self.pushes["alice"], [chat("hi", "bob")])
        self.assertEqual(self.pushes["bob"], [chat("hi", "bob")])

    def test_windowEnds(self):
        """
        Not resumed within C{resume_window}, the session ends as a closed
        one does (the room is told she left), and its token is refused; she
        can then enter again as a new user.
        """
        self.drop("alice")
        self.cluster.advance(29)
        self.assertEqual(self.pushes["bob"], [])
        self.cluster.advance(1.5)
        self.assertEqual(self.pushes["bob"], [left("alice")])
        self.refused(self.resume("alice", "connector-2", self.token), "the resume window has passed")
        self.enter("alice", "connector-2")
        self.assertEqual(self.members(), {"bob*lobby": "connector-2", "alice*lobby": "connector-2"})

    def test_reused(self):
        """
        A token is good once: presented again, on either connector, it is
        refused and gives nothing.
        """
        self.drop("alice")
        self.resume("alice", "connector-2", self.token)
        self.drop("alice")
        for server_id in ("connector-1", "connector-2"):
            self.refused(self.resume(f"mallory-{server_id}", server_id, self.token),
                         "the resume token was already used")
            self.assertEqual(self.pushes[f"mallory-{server_id}"], [])

    def test_wrong(self):
        """
        A token not signed by the cluster, or for a session that does not
        exist, is refused; the suspended session is untouched.
        """
        claims = resume.verify("test-secret", self.token)
        forged = resume.issue("guessed", claims.frontend_id, claims.session_id, claims.uid, claims.nonce)
        other = resume.issue("test-secret", claims.frontend_id, claims.session_id, "bob*lobby", claims.nonce)
        gone = resume.issue("test-secret", claims.frontend_id, 999, claims.uid, claims.nonce)
        self.drop("alice")
        self.say("bob", "kept")
        for token, reason in ((forged, "invalid resume token"), ("nonsense", "invalid resume token"),
                              (other, "the resume token was already used"), (gone, "no session to resume")):
            self.refused(self.resume("mallory", "connector-2", token), reason)
            self.assertEqual(self.pushes["mallory"], [])
        self.resume("alice", "connector-2", self.token)
        self.assertEqual(self.pushes["alice"], [chat("kept", "bob")])
        self.assertEqual(self.cluster.apps["connector-1"].sessions.resumer.metrics["resumes_refused"], 2)

    def test_cleanClose(self):
        """
        A client that closes its connection ends its session at once.
        """
        self.clients["alice"].close()
        self.cluster.flush()
        self.assertEqual(self.pushes["bob"], [left("alice")])

    def test_notAsked(self):
        """
        A client that did not ask for resume in its handshake gets no token
        and its dropped session ends at once, as before resume existed.
        """
        self.assertIsNone(self.clients["bob"].resume_token)
        self.drop("bob")
        self.assertEqual(self.pushes["alice"], [left("bob")])


class BufferTests(ChatMixin, SynchronousTestCase):
    """
    The pushes held for a suspended session are bounded by C{resume_buffer}.
    """

    options = {"resume_buffer": 200}

    def test_full(self):
        """
        The push that passes C{resume_buffer} gives the session up: it
        ends (the room is told), and its token is refused saying why.
        """
        self.drop("alice")
        self.say("bob", "x" * 50)
        self.assertEqual(self.pushes["bob"], [chat("x" * 50, "bob")])
        self.say("bob", "y" * 150)
        self.assertEqual(self.pushes["bob"][-1], left("alice"))
        self.refused(self.resume("alice", "connector-2", self.token),
                     "the session has ended (resume buffer full)")


class OffTests(ChatMixin, SynchronousTestCase):
    """
    C{resume_window = 0}: nothing is suspended, and a token is refused.
    """

    options = {"resume_window": 0}

    def test_off(self):
        """
        A dropped session ends at once, and resume is refused as off.
        """
        self.drop("alice")
        self.assertEqual(self.pushes["bob"], [left("alice")])
        self.refused(self.resume("alice", "connector-1", self.token), "resume is off on this server")


PROCESS_SERVERS = ["gate-1", "connector-1", "connector-2", "chat-1"]
WAIT = 60.0
POLL = 0.1


class ResumeProcessMixin:
    """
    The chat example under its master: alice (L{Client} with C{resume})
    on connector-1 and bob on connector-2 in one room; alice's TCP
    connection is reset. C{resume_window} is L{window}.
    """

    timeout = 180
    window = 30

    async def setUp(self) -> None:
        self.away: Deferred[Any] | None = None
        names = ["master", *(f"{i}.node" for i in PROCESS_SERVERS), "connector-1.client", "connector-2.client",
                 "gate-1.client"]
        self.ports = dict(zip(names, free_ports(len(names))))
        self.master = MasterProcess(self)
        text = cluster_section("resume", self.ports["master"], **CHAT_EXAMPLE, rpc_timeout=5, drain_timeout=0)
        text += f"\n[frontend]\nresume_window = {self.window}\n"
        self.master.write(text + "".join(server_section(i, self.ports) for i in PROCESS_SERVERS))
        self.master.start(30)
        self.clients: dict[str, Client] = {}
        self.pushes: dict[str, list[Any]] = {}
        self.addCleanup(self.close_clients)
        await self.eventually(lambda: self.master.linked(PROCESS_SERVERS), "every node link up")
        await self.eventually(lambda: self.enter("alice", "connector-1", resume=True,
                                                 resume_to=self.resume_to), "alice entering")
        await self.eventually(lambda: self.enter("bob", "connector-2"), "bob entering")
        await self.eventually(lambda: self.heard("alice", added("bob")), "alice told bob came")
        await self.eventually(self.alice_token, "alice's resume token")

    def close_clients(self) -> None:
        for client in self.clients.values():
            client.close()

    async def eventually(self, attempt: Any, what: str) -> Any:
        async def attempt_now() -> Any:
            self.master.fail_if_exited()
            return await attempt()

        return await eventually(attempt_now, WAIT, what, self.master.fail, POLL)

    def address(self, server_id: str) -> tuple[str, int]:
        return ("127.0.0.1", self.ports[f"{server_id}.client"])

    def resume_to(self) -> Any:
        """
        Where alice resumes: held until the test says (C{away} fires).
        """
        self.away = Deferred()
        return self.away

    async def enter(self, name: str, server_id: str, **options: Any) -> bool:
        """
        C{name} enters the room on C{server_id}; whether it did (the
        cluster may still be starting).
        """
        client = await Client.connect(reactor, *self.address(server_id), "tcp", timeout=5, **options)
        self.clients[name], self.pushes[name] = client, []
        client.on("*", self.pushes[name].append)
        answer = await client.request("connector.entryHandler.enter", {"username": name, "rid": ROOM}).addTimeout(
            10, reactor)
        if name in answer.get("users", []):
            return True
        await client.close()
        return False

    async def heard(self, name: str, push: Any) -> bool:
        return push in self.pushes[name]

    async def alice_token(self) -> bool:
        return self.clients["alice"].resume_token is not None

    async def logged(self, text: str) -> bool:
        return text in self.master.log()

    async def say(self, name: str, content: str) -> None:
        answer = await self.clients[name].request("chat.chatHandler.send", {"content": content, "target": "*"})
        self.assertEqual(answer, {})

    async def refused(self, server_id: str, token: str) -> str:
        """
        The reason a handshake presenting C{token} to C{server_id} is refused.
        """
        try:
            client = await Client.connect(reactor, *self.address(server_id), "tcp", timeout=5,
                                          user={"resume": token})
        except Exception as e:
            return str(e)
        await client.close()
        self.fail(f"{server_id} resumed a session with {token!r}")

    def chats(self, name: str) -> list[str]:
        return [body["msg"] for route, body in self.pushes[name] if route == "onChat"]

    async def count(self, client: Client, attribute: str, value: int) -> bool:
        return getattr(client, attribute) == value


class ResumeProcessTests(ResumeProcessMixin, TestCase):
    """
    Alice resumes on the other connector within the window.
    """

    async def test_resumedElsewhere(self) -> None:
        """
        Alice's connection is reset; bob says three things; alice resumes
        on connector-2 and gets the three, in order, once, and is still in
        the room: what she and bob say next reaches both, and bob never
        heard that she left. Her old token, and a forged one, are then
        refused on either connector.
        """
        alice = self.clients["alice"]
        old_token = alice.resume_token
        alice.drop()
        await self.eventually(lambda: self.logged("of alice*lobby suspended (connection lost)"), "alice suspended")
        for n in range(3):
            await self.say("bob", f"m{n}")
        self.away.callback(self.address("connector-2"))
        await self.eventually(lambda: self.count(alice, "resumes", 1), "alice resumed")
        await self.eventually(lambda: self.logged("handed over to connector-2 with 3 held pushes"), "the hand-over")
        await self.say("bob", "after")
        await self.say("alice", "me too")
        await self.eventually(lambda: self.heard("alice", chat("me too", "alice")), "alice hearing herself")
        await self.eventually(lambda: self.heard("bob", chat("me too", "alice")), "bob hearing alice")
        self.assertEqual(self.chats("alice"), ["m0", "m1", "m2", "after", "me too"])
        self.assertNotIn(left("alice"), self.pushes["bob"])
        self.assertNotEqual(alice.resume_token, old_token)
        for server_id in ("connector-1", "connector-2"):
            self.assertIn("the resume token was already used", await self.refused(server_id, old_token))
        claims = resume.verify("resume-secret", old_token)
        forged = resume.issue("guessed", "connector-2", 1, claims.uid, claims.nonce)
        self.assertIn("invalid resume token", await self.refused("connector-2", forged))


class ResumeWindowProcessTests(ResumeProcessMixin, TestCase):
    """
    A window of 3 seconds, which passes.
    """

    window = 3

    async def test_windowPasses(self) -> None:
        """
        Not resumed within the window, alice's session ends as a closed one
        does (bob is told she left, once); her client's resume is refused
        saying why, and she enters again as a new user.
        """
        alice = self.clients["alice"]
        token = alice.resume_token
        alice.drop()
        await self.eventually(lambda: self.logged("of alice*lobby not resumed within 3s"), "the window to pass")
        await self.eventually(lambda: self.heard("bob", left("alice")), "bob told alice left")
        self.away.callback(self.address("connector-2"))
        reason = await alice.closed
        self.assertEqual(reason, "resume refused: the resume window has passed")
        self.assertIn("the resume window has passed", await self.refused("connector-1", token))
        await self.eventually(lambda: self.enter("alice", "connector-2"), "alice entering again")
        await self.eventually(lambda: self.heard("bob", added("alice")), "bob told alice came again")
        self.assertEqual(self.pushes["bob"].count(left("alice")), 1)


class UniqueTests(ChatMixin, SynchronousTestCase):
    """
    With C{unique_session = cluster}, the uid's claim moves with the session.
    """

    options = {"unique_session": "cluster"}

    def test_claimMoves(self):
        """
        Resumed on the other connector, the session holds its uid there: a
        new login of the uid on the first connector replaces it there.
        """
        self.drop("alice")
        self.resume("alice", "connector-2", self.token)
        resumed = self.clients["alice"]
        self.connect("alice-again", "connector-1")
        self.request("alice-again", "connector.entryHandler.enter", {"username": "alice", "rid": ROOM})
        self.assertEqual(self.successResultOf(resumed.closed), "logged in elsewhere")


class HandOverTests(ChatMixin, SynchronousTestCase):
    """
    Hand-overs that do not complete: the session ends once, where it was,
    with its close callbacks (the room is told she left), and no channel
    keeps her.
    """

    options = {"resume_buffer": 200}

    def assertEndedOnce(self):
        self.assertEqual(self.pushes["bob"].count(left("alice")), 1)
        self.assertEqual(self.members(), {"bob*lobby": "connector-2"})
        for server_id in ("connector-1", "connector-2"):
            self.assertEqual(self.cluster.apps[server_id].sessions.get_by_uid("alice*lobby"), [])

    def test_lateAnswer(self):
        """
        Connector-1 hangs while connector-2 asks it for alice's session:
        her resume is refused; connector-1 completes the hand-over later,
        is told the session did not arrive, and ends it there, once.
        """
        self.drop("alice")
        self.cluster.freeze("connector-1")
        client = self.resume("alice", "connector-2", self.token)
        self.cluster.advance(11)
        self.refused(client, "the session could not be reached on connector-1")
        self.cluster.thaw("connector-1")
        self.cluster.advance(1)
        self.assertEndedOnce()
        self.refused(self.resume("alice-again", "connector-2", self.token),
                     "the session has ended (the resume did not complete)")
        self.cluster.advance(60)
        self.assertEndedOnce()

    def test_bufferFullArriving(self):
        """
        The pushes reaching connector-2 while the hand-over goes on pass
        C{resume_buffer}: the resume is refused saying so, and the session
        ends on connector-1, once.
        """
        resumer = self.cluster.apps["connector-2"].sessions.resumer
        call = resumer._sys_call

        def sys_call(frontend_id, name, args):
            def flood(answer):
                if name == "resume_take":
                    self.cluster.apps["connector-2"].sessions.send_message_by_uid("alice*lobby", "onChat",
                                                                                  {"msg": "x" * 300})
                return answer
            return call(frontend_id, name, args).addCallback(flood)

        resumer._sys_call = sys_call
        self.drop("alice")
        self.refused(self.resume("alice", "connector-2", self.token), "the session has ended (resume buffer full)")
        self.cluster.flush()
        self.assertEndedOnce()

    def whileTaken(self, act):
        """
        Alice resumes on connector-2; connector-1 calls C{act} with her
        session there once the channels have moved her, before it answers.
        """
        sessions = self.cluster.apps["connector-1"].sessions
        move = sessions.resumer._move

        def moving(uid, from_id, to_id):
            session, = sessions.get_by_uid(uid)
            sessions.resumer._move = move
            return move(uid, from_id, to_id).addCallback(lambda moved: act(session))

        sessions.resumer._move = moving
        self.drop("alice")
        return self.resume("alice", "connector-2", self.token)

    def test_kickedWhileTaken(self):
        """
        A kick of the session while it is handed over ends it once the
        channels moved her back, once, and refuses the resume saying so.
        """
        client = self.whileTaken(lambda session: session.kick("kicked by admin"))
        self.refused(client, "the session has ended (kicked by admin)")
        self.cluster.flush()
        self.assertEndedOnce()

    def test_bufferFullTaken(self):
        """
        The pushes held on connector-1 while the channels move her pass
        C{resume_buffer}: the session ends there, once.
        """
        client = self.whileTaken(lambda session: session.send("onChat", {"msg": "x" * 300}))
        self.refused(client, "the session has ended (resume buffer full)")
        self.cluster.flush()
        self.assertEndedOnce()

    def test_unboundWhileTaken(self):
        """
        A session unbound while it is handed over is not resumed: it ends
        on connector-1, once, its room membership moved back there (the
        chat example leaves rooms only for a bound session).
        """
        client = self.whileTaken(lambda session: session.unbind())
        self.refused(client, "the session was unbound")
        self.cluster.flush()
        self.assertEqual(self.pushes["bob"].count(left("alice")), 0)
        self.assertEqual(self.members(), {"bob*lobby": "connector-2", "alice*lobby": "connector-1"})

    def test_frontendStops(self):
        """
        A frontend that stops ends its suspended sessions, once.
        """
        self.drop("alice")
        self.cluster.stop("connector-1")
        self.assertEqual(self.pushes["bob"].count(left("alice")), 1)
        self.assertEqual(self.members(), {"bob*lobby": "connector-2"})

    def test_notConfirmed(self):
        """
        Connector-2 took the session but cannot tell connector-1 so: it
        gives it up after trying for half of L{CONFIRM_WITHIN} (the client
        is kicked), and connector-1 ends it at that deadline, once.
        """
        resumer = self.cluster.apps["connector-2"].sessions.resumer
        call = resumer._sys_call
        tries = []

        def sys_call(frontend_id, name, args):
            if name == "resume_settle":
                tries.append(args)
                return fail(GamenetError("the link is down", 503))
            return call(frontend_id, name, args)

        resumer._sys_call = sys_call
        self.drop("alice")
        client = self.resume("alice", "connector-2", self.token)
        self.assertEqual(client.handshake["user"]["resumed"], True)
        self.cluster.advance(CONFIRM_WITHIN / 2)
        self.assertEqual(self.successResultOf(client.closed), "resume failed")
        self.assertEqual(self.pushes["bob"], [])
        self.cluster.advance(CONFIRM_WITHIN / 2)
        self.assertEndedOnce()
        self.assertEqual(len(tries), CONFIRM_WITHIN / 2 / CONFIRM_RETRY)

    def test_stopsBeforeConfirmed(self):
        """
        Connector-1 stops before connector-2 says it took the session: the
        session ends on connector-1, once, and connector-2, told so, gives
        its copy up.
        """
        resumer = self.cluster.apps["connector-2"].sessions.resumer
        call = resumer._sys_call
        held = []

        def sys_call(frontend_id, name, args):
            if name == "resume_settle" and not held:
                held.append(Deferred())
                return held[0].addCallback(lambda _: call(frontend_id, name, args))
            return call(frontend_id, name, args)

        resumer._sys_call = sys_call
        self.drop("alice")
        client = self.resume("alice", "connector-2", self.token)
        self.assertEqual(client.handshake["user"]["resumed"], True)
        d = self.cluster.apps["connector-1"].frontend.stop()
        self.cluster.flush()
        self.assertEqual(self.pushes["bob"].count(left("alice")), 1)
        self.assertEqual(self.members(), {"bob*lobby": "connector-2"})
        held[0].callback(None)
        self.cluster.flush()
        self.assertEqual(self.successResultOf(client.closed), "resume failed")
        self.assertEndedOnce()
        self.successResultOf(d)

    def test_windowPassesWhileTaken(self):
        """
        The channels take longer than the window and connector-2's call to
        move her: its resume is refused, and the session, whose window
        passed while it was taken, ends on connector-1 once the moves are
        done, once.
        """
        resumer = self.cluster.apps["connector-1"].sessions.resumer
        move, slow = resumer._move, Deferred()

        def moving(*args):
            resumer._move = move
            return slow.addCallback(lambda _: move(*args))

        resumer._move = moving
        self.drop("alice")
        client = self.resume("alice", "connector-2", self.token)
        self.cluster.advance(31)
        self.refused(client, "the session could not be reached on connector-1")
        self.assertEqual(self.pushes["bob"], [])
        slow.callback(None)
        self.cluster.flush()
        self.assertEndedOnce()
