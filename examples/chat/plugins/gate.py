"""
The gate: tells a client which connector to use, as Pomelo's chat demo does.
"""

from __future__ import annotations

from typing import Any

from gamenet import Handler, handler

from ..dispatcher import dispatch


class GateHandler(Handler):
    """
    C{gate.gateHandler.*}.
    """

    def queryEntry(self, msg: Any, session: Any) -> dict[str, Any]:
        """
        Pick one of the available connectors by the uid as the demo does:
        C{{"code": 200, "host", "port"}}, or C{{"code": 500}} without a uid or
        an available connector.
        """
        uid = msg.get("uid") if isinstance(msg, dict) else None
        # The connectors that take clients now (a stopped or draining one
        # does not), by id, so that every gate picks the same one for a uid;
        # while the gate has no link up to any (it has just started), every
        # connector of the cluster, as the demo does.
        connectors = self.app.node.available("connector") or sorted(
            self.app.servers_by_type("connector"), key=lambda server: server.id)
        if not uid or not connectors:
            return {"code": 500}
        chosen = dispatch(str(uid), connectors)
        return {"code": 200, "host": chosen.client_host, "port": chosen.client_port}


gate = handler(GateHandler, "gate")
