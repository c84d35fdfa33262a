"""
C{connector.workHandler.work}: the body back, after C{msg["steps"]} steps
of pure-Python arithmetic, a stand-in for a game's own logic on the
frontend (what one more frontend process per core is for): the shared-port
benchmark (bench/reuseport.py).
"""

from __future__ import annotations

from typing import Any

from gamenet import route_handler


def work(msg: Any, session: Any) -> Any:
    """
    Burn C{msg["steps"]} steps of CPU, then answer the body as it came.
    """
    total = 0
    for step in range(int(msg.get("steps", 0))):
        total += step * step
    return msg


work_route = route_handler("connector.workHandler.work", work)
