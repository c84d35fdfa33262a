"""
One helper for game code that may answer with a value, a Deferred or a coroutine.
"""

from __future__ import annotations

import inspect
from typing import Any

from twisted.internet.defer import Deferred


async def settle(value: Any) -> Any:
    """
    C{value}, awaited first when it is a Deferred or a coroutine.
    """
    if isinstance(value, Deferred) or inspect.iscoroutine(value):
        return await value
    return value
