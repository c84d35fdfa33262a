"""
Helpers for tests that start real gamenet processes: the twistd command,
a clean environment, a look at processes and ports from outside, and a
bounded wait for what they do.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from typing import Any, Awaitable, Callable, Iterable, NoReturn

from twisted.internet import reactor
from twisted.internet.task import deferLater


def kill_leftovers(ours: Callable[[], Iterable[int]], poll: float, grace: float = 5.0) -> None:
    """
    Give the processes C{ours()} lists C{grace} seconds to end on their own,
    then SIGKILL those still there (a test ends only processes it started).
    """
    deadline = time.monotonic() + grace
    while ours() and time.monotonic() < deadline:
        time.sleep(poll)
    for pid in ours():
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


async def eventually(attempt: Callable[[], Awaitable[Any]], timeout: float, what: str,
                     fail: Callable[[str], NoReturn], interval: float) -> Any:
    """
    Run C{attempt()} every C{interval} seconds until it returns a true value
    without raising, and return that value; after C{timeout} seconds, call
    C{fail} with a message naming C{what} and the last problem.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = await attempt()
            if value:
                return value
            last = value
        except Exception as e:
            last = e
        if time.monotonic() > deadline:
            fail(f"timed out after {timeout:g}s waiting for {what}; last: {last!r}")
        await deferLater(reactor, interval, lambda: None)


def twistd_command() -> list[str]:
    """
    The twistd installed beside the running Python.
    """
    script = os.path.join(os.path.dirname(sys.executable), "twistd")
    if os.access(script, os.X_OK):
        return [script]
    return [sys.executable, "-c", "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()"]


def environ(**extra: str) -> dict[str, str]:
    """
    This process's environment without gamenet's own variables, plus C{extra}.
    """
    own = ("GAMENET_SECRET", "GAMENET_MASTER_PID", "GAMENET_ADMIN_TOKEN")
    env = {key: value for key, value in os.environ.items() if key not in own}
    env.update(extra)
    return env


def accepts(port: int) -> bool:
    """
    Whether something accepts connections on 127.0.0.1:C{port}.
    """
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def process_table() -> dict[int, tuple[int, str, list[str]]]:
    """
    Every process: pid to (parent pid, state, command line).
    """
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="utf-8", errors="replace") as f:
                stat = f.read()
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmdline = [part.decode("utf-8", "replace") for part in f.read().split(b"\0") if part]
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        table[int(name)] = (int(fields[1]), fields[0], cmdline)
    return table


def alive(pid: int) -> bool:
    """
    Whether C{pid} runs (a zombie waiting for its parent does not).
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] not in ("Z", "X")


def is_error(answer: Any) -> bool:
    """
    Whether a response body is a gamenet error response.
    """
    return isinstance(answer, dict) and "code" in answer and "message" in answer
