"""
Test kit for games and for gamenet itself.

L{MemoryCluster} runs a whole cluster inside one trial test: every server's
L{Application}, node links over Perspective Broker pumped in memory, client
connections to frontends pumped in memory, and time from one clock. No socket
is opened, so tests are fast and deterministic::

    cluster = MemoryCluster(cluster_config(frontend("connector-1", "connector"),
                                           backend("chat-1", "chat")), registrations)
    cluster.start()
    client = cluster.client("connector-1")
    d = client.request("chat.chatHandler.send", {"content": "hi"})
    cluster.flush()
    self.assertEqual(self.successResultOf(d), {})

L{start_server} starts one server on real loopback sockets instead.

The cluster descriptions are in C{_config}, free ports in C{_ports}, servers
on sockets in C{_servers}, L{RedisServer} in C{_redis}, L{MemoryCluster} in
C{_memory}, and the fakes of the master's parts in C{_fakes}.
"""

from ._config import backend, cluster_config, frontend
from ._fakes import FakeFleet, FakeMaster, FakeSupervisor, server_record
from ._memory import MemoryCluster
from ._ports import free_ports
from ._redis import RedisServer
from ._servers import client_port, start_server

__all__ = [
    "FakeFleet",
    "FakeMaster",
    "FakeSupervisor",
    "MemoryCluster",
    "backend",
    "client_port",
    "cluster_config",
    "RedisServer",
    "free_ports",
    "frontend",
    "server_record",
    "start_server",
]
