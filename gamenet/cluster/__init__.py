"""
The cluster: node links over Perspective Broker, forwarding, C{app.rpc},
backend sessions, routing and the master supervisor.
"""

from .backend import BackendSession, BackendSessionService
from .link import NodeLink
from .master import MasterService
from .node import NodeServer, RemoteError
from .rpc import RpcCall
from .service import ClusterNode

__all__ = [
    "BackendSession",
    "BackendSessionService",
    "ClusterNode",
    "MasterService",
    "NodeLink",
    "NodeServer",
    "RemoteError",
    "RpcCall",
]
