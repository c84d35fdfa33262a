"""
Helpers for tests that start real gamenet processes: the twistd command,
a clean environment, a master started and stopped for a test
(L{MasterProcess}), a look at processes and ports from outside, and a bounded
wait for what they do.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Awaitable, Callable, Iterable, NoReturn

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POLL = 0.05
LOG_TAIL = 20000

CHAT_EXAMPLE = {"plugins": "examples.chat.plugins", "extra_routes": "onChat onAdd onLeave"}
"""
The keys of C{[cluster]} that serve the chat example (its plugins and the
routes it pushes), for L{cluster_section}.
"""


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


def cluster_section(name: str, master_port: int, master_host: str = "127.0.0.1", **keys: object) -> str:
    """
    The C{[cluster]} section of a test's cluster file: C{name}, the secret
    C{<name>-secret}, this repository as the plugin path, the master on
    C{master_host}:C{master_port}, then C{keys} in their order (C{plugins}
    among them; L{CHAT_EXAMPLE} has the chat example's).
    """
    text = (f"[cluster]\nname = {name}\nsecret = {name}-secret\nplugin_path = {REPO}\n"
            f"master_host = {master_host}\nmaster_port = {master_port}\n")
    return text + "".join(f"{key} = {value}\n" for key, value in keys.items())


def server_section(server: str, ports: dict[str, int], host: str = "127.0.0.1") -> str:
    """
    The C{[server:<server>]} section of a server on C{host} of the type its
    id names (C{chat-2} is a C{chat}), with the node port
    C{ports["<server>.node"]}; with C{metrics_port} when C{ports} has
    C{<server>.metrics}, and a frontend with C{client_port} when it has
    C{<server>.client}.
    """
    text = (f"\n[server:{server}]\ntype = {server.rsplit('-', 1)[0]}\nhost = {host}\n"
            f"node_port = {ports[server + '.node']}\n")
    if server + ".metrics" in ports:
        text += f"metrics_port = {ports[server + '.metrics']}\n"
    if server + ".client" in ports:
        text += f"frontend = true\nclient_port = {ports[server + '.client']}\n"
    return text


def stop_process(process: subprocess.Popen[bytes], timeout: float) -> None:
    """
    SIGTERM C{process} if it runs and wait C{timeout} seconds for it to exit;
    if it has not, SIGKILL it and wait as long again.
    """
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


class MasterProcess:
    """
    The master of a cluster of processes that a test starts as an operator
    does: C{twistd -n --pidfile= gamenet --config cluster.ini} run in a new
    directory of the test with L{environ}, its output and its children's in
    C{master.log} there. The processes run the installed gamenet (the twistd
    beside the running Python, from that directory, so the source tree is
    not on their path).

    Every process started for the test names the directory in its command
    line (the master and its children the cluster file, by its absolute
    path): L{ours} finds them that way, and L{stop} ends them all.

    @ivar test: the test it runs for, which it fails (L{fail}) and whose
        cleanup stops it.
    @ivar directory: the test's new directory, by its absolute path.
    @ivar config: the cluster file, C{cluster.ini} in C{directory}; written
        by L{write} or by the test.
    @ivar log_path: the master's output, C{master.log} in C{directory}.
    @ivar process: the master, once L{start}ed.
    """

    def __init__(self, test: SynchronousTestCase) -> None:
        """
        Make the directory of C{test}; nothing runs yet.
        """
        self.test = test
        self.directory = os.path.abspath(test.mktemp())
        os.makedirs(self.directory)
        self.config = os.path.join(self.directory, "cluster.ini")
        self.log_path = os.path.join(self.directory, "master.log")
        self.process: subprocess.Popen[bytes]

    def write(self, text: str) -> None:
        """
        Write C{text} as the cluster file.
        """
        with open(self.config, "w", encoding="utf-8") as f:
            f.write(text)

    def start(self, stop_timeout: float, prefix: Iterable[str] = ()) -> None:
        """
        Start the master, and L{stop} it at the test's cleanup with
        C{stop_timeout}.

        @param prefix: the start of its command line, before twistd: for
            example C{ip netns exec NAME}, which runs it (as the same
            process) in a network namespace.
        """
        with open(self.log_path, "wb") as out:
            self.process = subprocess.Popen(
                [*prefix, *twistd_command(), "-n", "--pidfile=", "gamenet", "--config", self.config],
                cwd=self.directory, env=environ(), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            )
        self.test.addCleanup(self.stop, stop_timeout)

    def stop(self, timeout: float) -> None:
        """
        SIGTERM the master (which stops its children first) and wait
        C{timeout} seconds for it, SIGKILL it if it is still there (as
        L{stop_process}); then SIGKILL what is left of L{ours} after a grace
        (as L{kill_leftovers}).
        """
        stop_process(self.process, timeout)
        kill_leftovers(self.ours, POLL)

    def ours(self) -> dict[int, list[str]]:
        """
        Every live process started for the test, the master included: pid to
        command line.
        """
        return {
            pid: cmdline for pid, (_, state, cmdline) in process_table().items()
            if state not in ("Z", "X") and any(self.directory in arg for arg in cmdline)
        }

    def children(self) -> dict[str, int]:
        """
        The master's live children: pid by the server id of their
        C{--server}.
        """
        found = {}
        for pid, (ppid, state, cmdline) in process_table().items():
            if ppid == self.process.pid and state not in ("Z", "X") and "--server" in cmdline[:-1]:
                found[cmdline[cmdline.index("--server") + 1]] = pid
        return found

    def log(self) -> str:
        """
        The master's output so far.
        """
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    async def linked(self, server_ids: Iterable[str]) -> bool:
        """
        Whether every one of C{server_ids} has logged its node link to every
        other one up: from then on every server routes to every other, and a
        test's users do not meet the routing of a cluster still forming (two
        servers holding one room for a moment, doc/channels.md).
        """
        log = self.log()
        ids = list(server_ids)
        return all(f"{a}: node link to {b} up" in log for a in ids for b in ids if a != b)

    def fail(self, text: str) -> NoReturn:
        """
        Fail the test with C{text} and the end of the master's log.
        """
        self.test.fail(f"{text}\n--- master log ---\n{self.log()[-LOG_TAIL:]}")

    def fail_if_exited(self) -> None:
        """
        Fail the test, as L{fail}, when the master has exited.
        """
        if self.process.poll() is not None:
            self.fail(f"the master exited with {self.process.returncode}")


def is_error(answer: Any) -> bool:
    """
    Whether a response body is a gamenet error response.
    """
    return isinstance(answer, dict) and "code" in answer and "message" in answer
