"""
The gate: answers which connector a client should use.
"""

from __future__ import annotations

import zlib
from typing import Any

from gamenet import Handler, handler


class GateHandler(Handler):
    """
    C{gate.gateHandler.*}.
    """

    def queryEntry(self, msg: Any, session: Any) -> dict[str, Any]:
        """
        C{{"code": 200, "host", "port", "id"}} of the connector chosen by the
        crc32 of C{uid}; C{{"code": 500}} without a uid.
        """
        uid = msg.get("uid") if isinstance(msg, dict) else None
        connectors = self.app.servers_by_type("connector")
        if not uid or not connectors:
            return {"code": 500}
        chosen = connectors[zlib.crc32(str(uid).encode("utf-8")) % len(connectors)]
        return {"code": 200, "host": chosen.client_host, "port": chosen.client_port, "id": chosen.id}


gate = handler(GateHandler, "gate")
