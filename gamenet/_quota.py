"""
A bound on how many lines of one kind a server logs, so that a flood of bad
requests (a client making up routes, a handler failing on every call) cannot
fill the disk or drown the lines that matter; what is held back is counted
and said.
"""

from __future__ import annotations

from typing import Any

import attrs


@attrs.define
class LogQuota:
    """
    At most C{burst} lines in a window of C{period} seconds, the window
    starting at its first line; the lines held back in a window are said,
    as a count, with the first line let through after it.

    @ivar clock: gives the time (C{seconds()}): the server's reactor, or a
        C{Clock} in tests.
    """

    clock: Any
    burst: int = 100
    period: float = 10.0
    _window_end: float = float("-inf")
    _used: int = 0
    _held: int = 0

    def take(self) -> int | None:
        """
        Ask to log one line.

        @return: C{None} when the line is to be held back; otherwise how many
            lines were held back before it (0 most of the time), to be said
            with it.
        """
        now = self.clock.seconds()
        if now >= self._window_end:
            held, self._held = self._held, 0
            self._window_end, self._used = now + self.period, 1
            return held
        if self._used < self.burst:
            self._used += 1
            return 0
        self._held += 1
        return None
