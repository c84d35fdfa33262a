"""
C{app.rpc}: calling remotes on other servers, Pomelo style.

C{app.rpc.chat.chatRemote.add(route_param, *args)} routes by C{route_param}
with the route function of server type C{chat} (which the remote does not
receive) and returns a Deferred of the remote's result. C{.to(server_id)(*args)}
calls one server; C{.broadcast(*args)} calls every available server of the type.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from twisted.internet.defer import Deferred, fail

from ..errors import GamenetError

if TYPE_CHECKING:
    from .service import ClusterNode


class RpcCall:
    """
    One remote call as the C{rpc_before} and C{rpc_after} hooks see it.

    @ivar server_id: the server called.
    @ivar route: C{serverType.remoteName.method}.
    @ivar args: the arguments (a list; a before hook may change it).
    @ivar result: the result, once there is one.
    @ivar error: the exception that failed the call, if one did.
    """

    __slots__ = ("server_id", "route", "args", "result", "error")

    def __init__(self, server_id: str, route: str, args: list[Any]) -> None:
        self.server_id = server_id
        self.route = route
        self.args = args
        self.result: Any = None
        self.error: BaseException | None = None


class RemoteMethod:
    """
    C{app.rpc.<type>.<remote>.<method>}.
    """

    def __init__(self, node: ClusterNode, server_type: str, route: str) -> None:
        self._node = node
        self._server_type = server_type
        self.route = route

    def __call__(self, route_param: Any, *args: Any) -> Deferred[Any]:
        """
        Call the server the route function picks for C{route_param}.
        """
        arguments = list(args)
        try:
            server = self._node.pick(self._server_type, route_param, self.route, arguments)
        except GamenetError as e:
            return fail(e)
        return self._node.call_remote(server.id, self.route, arguments)

    def to(self, server_id: str) -> Callable[..., Deferred[Any]]:
        """
        A function calling this method on one server by id.
        """
        return lambda *args: self._node.call_remote(server_id, self.route, list(args))

    def broadcast(self, *args: Any) -> Deferred[dict[str, Any]]:
        """
        Call every available server of the type; fires with a dict of server
        id to result, or to the exception for a server whose call failed.
        """
        return Deferred.fromCoroutine(self._broadcast(list(args)))

    async def _broadcast(self, args: list[Any]) -> dict[str, Any]:
        calls = {
            server.id: self._node.call_remote(server.id, self.route, list(args))
            for server in self._node.available(self._server_type)
        }
        results: dict[str, Any] = {}
        for server_id, d in calls.items():
            try:
                results[server_id] = await d
            except Exception as e:
                results[server_id] = e
        return results


class _Names:
    def __init__(self, make: Callable[[str], Any]) -> None:
        self._make = make
        self._cache: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        value = self._cache.get(name)
        if value is None:
            value = self._cache[name] = self._make(name)
        return value


def rpc_proxy(node: ClusterNode) -> Any:
    """
    The C{app.rpc} object.
    """
    return _Names(
        lambda server_type: _Names(
            lambda remote: _Names(
                lambda method: RemoteMethod(node, server_type, f"{server_type}.{remote}.{method}")
            )
        )
    )
