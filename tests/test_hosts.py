"""
A cluster on several hosts, as doc/cluster.md runs it on several machines:
three hosts made with Linux network namespaces on a private bridge
(L{tests._netns}), each with its own address and its own master, one
cluster file, discovery through Redis. This process, in the root namespace,
has an address on the bridge too, and plays the players' side: its clients
reach the gate and the connector at their host's address.

Also L{gamenet.cluster.master.local_hosts}, which tells each master which
servers are its own.
"""

from __future__ import annotations

from typing import Any, NoReturn

import attrs
from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from gamenet.client import Client
from gamenet.cluster.master import MasterService, local_hosts, own_address
from gamenet.testing import RedisServer, backend, cluster_config, free_ports

from ._netns import make_hosts
from ._processes import CHAT_EXAMPLE, POLL, MasterProcess, alive, cluster_section, eventually, server_section

HOSTS = {"one": (), "two": ("gate-1", "connector-1"), "three": ("chat-1", "chat-2")}
"""
The servers of each host; host C{one} has Redis and the master of
C{master_host}, to which every server logs in, and no server.
"""

SERVERS = [server_id for ids in HOSTS.values() for server_id in ids]
TTL = 3
"""
C{discovery_ttl}: a dead server's registration lapses within it.
"""
REDIS_PASSWORD = "hosts-redis-password"
WAIT = 45.0


class LocalHostsTests(SynchronousTestCase):
    """
    L{local_hosts}: an IP address of one of this machine's interfaces names
    it, whatever the host name resolves to.
    """

    def test_ownAddress(self) -> None:
        """
        An address a socket can be bound to here is this machine's; one of
        another machine, or a name, is not.
        """
        self.assertTrue(own_address("127.0.0.2"))
        self.assertFalse(own_address("198.51.100.77"))
        self.assertFalse(own_address("gamenet.invalid"))

    def test_candidates(self) -> None:
        """
        Of the candidates, only this machine's addresses are added to its
        names; loopback and the host name are there without them.
        """
        hosts = local_hosts(["127.0.0.2", "198.51.100.77", "gamenet.invalid"])
        self.assertIn("127.0.0.2", hosts)
        self.assertNotIn("198.51.100.77", hosts)
        self.assertNotIn("gamenet.invalid", hosts)
        self.assertLessEqual({"127.0.0.1", "localhost"}, hosts)
        self.assertNotIn("127.0.0.2", local_hosts())

    def test_master(self) -> None:
        """
        A master starts the servers whose host is an address of this
        machine, and not those of another machine's address.
        """
        here, elsewhere = (attrs.evolve(backend(f"chat-{n}", "chat"), host=host)
                           for n, host in ((1, "127.0.0.2"), (2, "198.51.100.77")))
        master = MasterService(cluster_config(here, elsewhere), reactor=Clock())
        self.assertEqual(master.local, [here])


class SeveralHostsTests(TestCase):
    """
    The chat example on three hosts: Redis and the master of C{master_host}
    on C{one}, the gate and a connector on C{two}, both chat servers on
    C{three}; each host runs C{twistd -n gamenet --config cluster.ini} with
    the same file, in its own directory.
    """

    timeout = 120

    async def setUp(self) -> None:
        self.hosts = make_hosts(self, HOSTS)
        address = self.hosts.addresses
        # Reached from other hosts, Redis needs a password (doc/storage.md).
        self.redis = RedisServer(host=address["one"], prefix=self.hosts.prefix("one"),
                                 arguments=("--requirepass", REDIS_PASSWORD))
        self.redis.start()
        self.addCleanup(self.redis.stop)
        names = ["master", *(f"{i}.node" for i in SERVERS), "gate-1.client", "connector-1.client"]
        self.ports = dict(zip(names, free_ports(len(names))))
        text = cluster_section("hosts", self.ports["master"], address["one"], **CHAT_EXAMPLE, rpc_timeout=2,
                               drain_timeout=0, discovery="redis", redis_host=address["one"],
                               redis_port=self.redis.port, redis_password=REDIS_PASSWORD, discovery_ttl=TTL)
        text += "".join(server_section(server_id, self.ports, address[host])
                        for host, ids in HOSTS.items() for server_id in ids)
        self.masters: dict[str, MasterProcess] = {}
        for host in HOSTS:
            master = self.masters[host] = MasterProcess(self)
            master.write(text)
            master.start(30, self.hosts.prefix(host))
        self.clients: list[Client] = []
        self.addCleanup(lambda: [client.close() for client in self.clients])

    def log(self) -> str:
        """
        The logs of every master, one after the other.
        """
        return "".join(f"--- host {host} ---\n{master.log()[-8000:]}\n" for host, master in self.masters.items())

    def fail_with_logs(self, text: str) -> NoReturn:
        self.fail(f"{text}\n{self.log()}")

    async def eventually(self, attempt: Any, what: str) -> Any:
        return await eventually(attempt, WAIT, what, self.fail_with_logs, POLL)

    async def logged(self, host: str, lines: list[str]) -> bool:
        """
        Whether the log of C{host}'s master has every one of C{lines}.
        """
        log = self.masters[host].log()
        return all(line in log for line in lines)

    async def holds(self, items: list[Any], item: Any) -> bool:
        return item in items

    async def dead(self, pids: set[int]) -> bool:
        return not any(alive(pid) for pid in pids)

    async def connect(self, host: str, port: int) -> Client:
        client = await Client.connect(reactor, host, port, "tcp", timeout=5)
        self.clients.append(client)
        return client

    async def enter(self, user: str, room: str, heard: list[Any]) -> tuple[Client, Any]:
        """
        C{user} asks the gate for a connector, connects to it and enters
        C{room}, its pushes in C{heard}; its client on the connector, and
        the answer to the enter.
        """
        gate = await self.connect(self.hosts.addresses["two"], self.ports["gate-1.client"])
        entry = await gate.request("gate.gateHandler.queryEntry", {"uid": user}).addTimeout(10, reactor)
        await gate.close()
        self.assertEqual(entry, {"code": 200, "host": self.hosts.addresses["two"],
                                 "port": self.ports["connector-1.client"]})
        client = await self.connect(entry["host"], entry["port"])
        client.on("*", heard.append)
        answer = await client.request("connector.entryHandler.enter", {"username": user, "rid": room}).addTimeout(
            10, reactor)
        return client, answer

    async def test_chatAcrossHosts(self) -> None:
        """
        Each master starts the servers whose host is its own address, and
        every server logs in to the master of C{master_host} on another
        host; a player on the outside completes the chat scenario through
        the gate and the connector of one host and a chat server of another.
        Once every process of the chat host is killed, every server left
        drops both chat servers within the registration TTL, and a chat
        request is answered at once, by no dead server.
        """
        started = {host: f"master of cluster hosts: starting {', '.join(ids) or 'no local server'}"
                   for host, ids in HOSTS.items()}
        for host, line in started.items():
            await self.eventually(lambda: self.logged(host, [line]), f"the master of host {host}: {line!r}")
        await self.eventually(lambda: self.logged("one", [f"server {i} is up" for i in SERVERS]),
                              "every server logged in to the master of host one")
        links = {host: [f"{a}: node link to {b} up" for a in ids for b in SERVERS if a != b]
                 for host, ids in HOSTS.items()}
        for host, lines in links.items():
            await self.eventually(lambda: self.logged(host, lines), f"the node links of host {host} up")

        heard: dict[str, list[Any]] = {"alice": [], "bob": []}
        _, answer = await self.enter("alice", "lobby", heard["alice"])
        self.assertEqual(answer["users"], ["alice"])
        bob, answer = await self.enter("bob", "lobby", heard["bob"])
        self.assertEqual(sorted(answer["users"]), ["alice", "bob"])
        self.assertEqual(await bob.request("chat.chatHandler.send", {"content": "hi", "target": "*"}), {})
        said = ("onChat", {"msg": "hi", "from": "bob", "target": "*"})
        for user in heard:
            await self.eventually(lambda: self.holds(heard[user], said), f"{user} hearing bob")

        three = {self.masters["three"].process.pid, *self.masters["three"].children().values()}
        self.assertEqual(len(three), 3)
        killed = self.hosts.kill("three")
        self.assertLessEqual(three, killed)
        await self.eventually(lambda: self.dead(killed), "every process of host three gone")
        dropped = [f"{a}: server {b} is no longer registered; dropping it"
                   for a in HOSTS["two"] for b in HOSTS["three"]]
        await self.eventually(lambda: self.logged("two", dropped), "host two's servers dropping the chat servers")
        # At once: not 504 after rpc_timeout, nor 503 "went away" from a dead server.
        answer = await bob.request("chat.chatHandler.send", {"content": "anyone?", "target": "*"}).addTimeout(
            10, reactor)
        self.assertEqual(answer, {"code": 503, "message": "no chat server is available"})
