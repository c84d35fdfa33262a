"""
CPU time, memory and open file descriptors of processes, from /proc (Linux
only): what the load robot measures of the server processes it is given and
of its own workers, and what bench/soak.py samples of a cluster's servers.
"""

from __future__ import annotations

import os


def run_seconds(pid: int) -> float:
    """
    The time every thread of a process has spent on a CPU so far, from
    /proc/<pid>/task/*/schedstat: nanosecond counts, where /proc/<pid>/stat
    counts clock ticks (10 ms). A thread running at the moment of reading is
    counted up to its last scheduler event.
    """
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat", "rb") as f:
                total += int(f.read().split()[0])
        except (OSError, IndexError, ValueError):
            pass  # a thread that ended since the listing
    return total / 1e9


def peak_rss_kib(pid: int) -> int:
    """
    The process's peak resident set size (VmHWM) in KiB, from /proc/<pid>/status.
    """
    return _status_kib(pid, "VmHWM:")


def _status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    raise ValueError(f"no {key} for pid {pid}")


def alive(pid: int) -> bool:
    """
    Whether /proc knows the process.
    """
    return os.path.exists(f"/proc/{pid}/stat")


def rss_kib(pid: int) -> int:
    """
    The process's resident set size now (VmRSS) in KiB, from /proc/<pid>/status.
    """
    return _status_kib(pid, "VmRSS:")


def open_fds(pid: int) -> int:
    """
    How many file descriptors the process has open now, from /proc/<pid>/fd
    (a process of the same user, or any with the right to trace it).
    """
    return len(os.listdir(f"/proc/{pid}/fd"))
