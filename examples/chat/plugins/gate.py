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
        Pick a connector by the uid as the demo does: C{{"code": 200, "host", "port"}},
        or C{{"code": 500}} without a uid or a connector.
        """
        uid = msg.get("uid") if isinstance(msg, dict) else None
        # By id, so that every gate picks the same connector for a uid.
        connectors = sorted(self.app.servers_by_type("connector"), key=lambda server: server.id)
        if not uid or not connectors:
            return {"code": 500}
        chosen = dispatch(str(uid), connectors)
        return {"code": 200, "host": chosen.client_host, "port": chosen.client_port}


gate = handler(GateHandler, "gate")
