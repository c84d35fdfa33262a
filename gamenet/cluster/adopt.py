"""
Servers that outlive their master: the pid files the master keeps of its
children, how a new master recognises a server still running from an
earlier one (L{adoptable}) and watches it (L{Adopted}), and where such a
server writes its output once its master is gone (L{detach_output}).

A master that dies (SIGKILL, a crash) leaves its servers serving their
players: only a master stopped cleanly stops them.
"""

from __future__ import annotations

import os
import signal
from typing import Any, Callable

from twisted.internet.error import ProcessExitedAlready, ProcessTerminated
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..config import ClusterConfig

log = Logger()

POLL = 0.5
"""
How often, in seconds, the master looks whether an adopted server still runs.
"""


def run_directory(cluster: ClusterConfig) -> str:
    """
    The run directory of a cluster file: beside it (symbolic links
    resolved), named after it without its extension and with C{.run}
    (C{cluster.run} for C{cluster.ini}). It holds a pid file per server the
    master started (C{SERVER.pid}) and the output of a server whose master
    is gone (C{SERVER.log}).
    """
    return os.path.splitext(os.path.realpath(cluster.path))[0] + ".run"


def pid_path(cluster: ClusterConfig, server_id: str) -> str:
    """
    The pid file of one server in the L{run_directory}.
    """
    return os.path.join(run_directory(cluster), f"{server_id}.pid")


def write_pid(path: str, pid: int) -> None:
    """
    Write C{pid} to the pid file C{path}, making its directory; log a
    warning when it cannot.
    """
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="ascii") as f:
            f.write(f"{pid}\n")
    except OSError as e:
        log.warn("cannot write the pid file {path}: {error}; if this master dies, the next one will not adopt "
                 "that server", path=path, error=e.strerror or e)


def remove_pid(path: str, pid: int | None) -> None:
    """
    Remove the pid file C{path} if it names C{pid} (or C{pid} is C{None}).
    """
    if pid is None or read_pid(path) == pid:
        try:
            os.remove(path)
        except OSError:
            pass


def read_pid(path: str) -> int | None:
    """
    The process id in the pid file C{path}, or C{None} when there is none.
    """
    try:
        with open(path, encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def runs_server(pid: int, config_path: str, server_id: str, proc: str = "/proc") -> bool:
    """
    Whether process C{pid} is alive (not a zombie) and runs server
    C{server_id} of the cluster file C{config_path}: its command line has
    C{--config} with that file's absolute path (symbolic links resolved)
    and C{--server} with that id, as the master starts it. A pid recycled by
    another process does not.
    """
    try:
        with open(os.path.join(proc, str(pid), "stat"), encoding="utf-8", errors="replace") as f:
            stat = f.read()
        with open(os.path.join(proc, str(pid), "cmdline"), "rb") as f:
            cmdline = [part.decode("utf-8", "replace") for part in f.read().split(b"\0")]
    except OSError:
        return False
    if stat[stat.rindex(")") + 2:].split()[:1] in (["Z"], ["X"]):
        return False
    pairs = list(zip(cmdline, cmdline[1:]))
    config = os.path.realpath(config_path)
    return ("--server", server_id) in pairs and any(
        flag == "--config" and os.path.realpath(value) == config for flag, value in pairs)


def adoptable(cluster: ClusterConfig, server_id: str, proc: str = "/proc") -> int | None:
    """
    The process id of server C{server_id} still running from an earlier
    master, from its pid file (see L{runs_server}); C{None} when there is
    none, the pid file removed when it is stale.
    """
    path = pid_path(cluster, server_id)
    pid = read_pid(path)
    if pid is None:
        return None
    if runs_server(pid, cluster.path, server_id, proc):
        return pid
    remove_pid(path, pid)
    return None


class AdoptedGone(ProcessTerminated):
    """
    An adopted server's process has gone: it was not a child of this
    master, so how it ended is not known.
    """

    def __init__(self, pid: int | None) -> None:
        super().__init__()
        self.pid = pid

    def __str__(self) -> str:
        return f"adopted process {self.pid} is gone (not a child of this master: its exit status is unknown)"


class _AdoptedTransport:
    """
    What the supervisor uses of a child's transport, for an adopted server:
    its C{pid}, and signals sent by pid.
    """

    def __init__(self, pid: int) -> None:
        self.pid: int | None = pid

    def signalProcess(self, name: str | int) -> None:
        if self.pid is None:
            raise ProcessExitedAlready()
        number = name if isinstance(name, int) else getattr(signal, f"SIG{name}")
        try:
            os.kill(self.pid, number)
        except ProcessLookupError:
            raise ProcessExitedAlready() from None


class Adopted:
    """
    The supervisor's protocol for a server adopted from an earlier master:
    it is not a child of this master, so its exit cannot be waited for;
    its process is polled every L{POLL} seconds instead, and when it is gone
    C{exited(name, reason)} is called, as a child's protocol does.

    @ivar transport: signals it by pid (C{transport.pid}, C{signalProcess}).
    """

    def __init__(self, name: str, pid: int, still_runs: Callable[[int], bool],
                 exited: Callable[[str, Failure], None], clock: Any) -> None:
        self.name = name
        self.transport = _AdoptedTransport(pid)
        self._still_runs = still_runs
        self._exited = exited
        self._poll = LoopingCall(self._check)
        self._poll.clock = clock
        self._poll.start(POLL, now=False)

    def _check(self) -> None:
        pid = self.transport.pid
        if pid is not None and self._still_runs(pid):
            return
        self._poll.stop()
        self.transport.pid = None
        self._exited(self.name, Failure(AdoptedGone(pid)))


def detach_output(path: str) -> bool:
    """
    Send this process's standard output and error (its log, under a master)
    to the file C{path}, appended: for a server whose master is gone, whose
    pipes lead nowhere.

    @return: whether it could.
    """
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError:
        return False
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    return True
