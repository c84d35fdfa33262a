"""
Crons: jobs run on a schedule, as Pomelo's crons file, C{app.addCrons} and
C{app.removeCrons} (see C{doc/crons.md}). A cron is a record C{{"id", "time",
"action", "serverId"?}}: C{time} is six fields, seconds first; C{action} is
C{"cronName.method"}, a method of a component registered with
L{gamenet.component.cron_handler}. Parsing is pure (times by cronsim);
L{CronService} takes its time from the reactor.

Tested by tests/test_cron.py.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone, tzinfo
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

import attrs
from cronsim import CronSim, CronSimError
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from ._jsonfile import read_json
from ._settle import settle
from .component import CRON

if TYPE_CHECKING:
    from .app import Application

log = Logger()

FIELDS = "second minute hour day-of-month month day-of-week"
_KEYS = frozenset({"id", "serverId", "time", "action"})

Components = Callable[[], Mapping[str, Mapping[str, Callable[[], Any]]]]


def _month(item: str) -> str:
    """
    One item of a Pomelo month list in cron's months: Pomelo counts them
    from 0 (January) to 11, as JavaScript does, cron from 1 to 12. Pomelo's
    C{r/p} is the months whose number leaves C{r} when divided by C{p}.
    """
    period = re.fullmatch(r"(\d+)/(\d+)", item)
    if period is None:
        return re.sub(r"^\d+|(?<=-)\d+", lambda number: str(int(number.group()) + 1), item)
    remainder, step = map(int, period.groups())
    months = [str(month + 1) for month in range(12) if step and month % step == remainder]
    if not months:
        raise CronSimError("Bad month")
    return ",".join(months)


def _schedule(time: str, start: datetime) -> CronSim:
    """
    The moments after C{start} of a Pomelo time, as cronsim computes them,
    with Pomelo's months and its rule for the two day fields: a day must
    match both (cron's rule is either, when both are restricted).
    """
    fields = time.split()
    fields[4] = ",".join(_month(item) for item in fields[4].split(","))
    schedule = CronSim(" ".join(fields), start)
    schedule.day_and = True
    return schedule


def check_time(time: Any) -> str:
    """
    A Pomelo cron time, checked: six fields, seconds first.

    @raise ValueError: it is not six fields, a field is out of range, or no
        moment in the next fifty years matches it.
    """
    if not isinstance(time, str) or len(time.split()) != 6:
        raise ValueError(f"time {time!r} is not six fields ({FIELDS})")
    try:
        next(_schedule(time, datetime.fromtimestamp(0, timezone.utc)))
    except CronSimError as e:
        raise ValueError(f"time {time!r}: {str(e).lower()}") from None
    except StopIteration:
        raise ValueError(f"time {time!r} never comes") from None
    return time


def next_time(time: str, after: float, tz: tzinfo | None = None) -> float:
    """
    The first moment strictly after C{after} (seconds since the epoch) that
    the checked C{time} names, read in C{tz} (the machine's local time, as
    Pomelo's, when C{None}).
    """
    start = datetime.fromtimestamp(after, timezone.utc).astimezone(tz)
    return next(_schedule(time, start)).timestamp()


@attrs.frozen
class CronEntry:
    """
    One cron record, checked.

    @ivar id: the record's C{id} as text (C{1} and C{"1"} are one id).
    @ivar server_id: the one server it runs on, or C{None} for every server
        of its type.
    @ivar where: where it was written, for messages (C{"development.chat[0]"}).
    """

    id: str
    time: str
    action: str
    server_id: str | None = None
    where: str = attrs.field(default="", eq=False)

    @classmethod
    def parse(cls, raw: Any, where: str = "") -> CronEntry:
        """
        A Pomelo cron record: C{{"id", "time", "action", "serverId"?}}.

        @raise ValueError: a key is missing, unknown or malformed.
        """
        if not isinstance(raw, Mapping):
            raise ValueError("not a JSON object")
        unknown = sorted(set(raw) - _KEYS)
        if unknown:
            raise ValueError(f"unknown key {', '.join(map(repr, unknown))} (expected id, serverId, time, action)")
        cron_id = raw.get("id")
        if isinstance(cron_id, bool) or not isinstance(cron_id, (int, str)) or cron_id == "":
            raise ValueError("id: missing (a number or a string)")
        action = raw.get("action")
        if not isinstance(action, str) or action.count(".") != 1 or not all(action.split(".")):
            raise ValueError(f"action {action!r} is not cronName.method")
        server_id = raw.get("serverId")
        if server_id is not None and (not isinstance(server_id, str) or not server_id):
            raise ValueError(f"serverId {server_id!r} is not a server id")
        return cls(str(cron_id), check_time(raw.get("time")), action, server_id, where)


def _type_table(value: Any, where: str) -> dict[str, list[CronEntry]]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where or 'the file'} is not an object of server types")
    table: dict[str, list[CronEntry]] = {}
    for server_type, records in value.items():
        at = f"{where}.{server_type}" if where else server_type
        if not isinstance(records, list):
            raise ValueError(f"{at} is not a list of crons")
        entries = table[server_type] = []
        for i, raw in enumerate(records):
            try:
                entries.append(CronEntry.parse(raw, f"{at}[{i}]"))
            except ValueError as e:
                raise ValueError(f"{at}[{i}]: {e}") from None
    return table


def parse_crons(data: Any) -> dict[str | None, dict[str, list[CronEntry]]]:
    """
    A decoded crons file in Pomelo's shape: server types to lists of cron
    records, either at the top (for every environment) or under the name of
    each environment, as C{{"development": {"chat": [...]}}}.

    @return: environment name (C{None}: every environment) to server type to entries.
    @raise ValueError: a sentence naming the first bad entry.
    """
    if not isinstance(data, Mapping):
        raise ValueError("not a JSON object of environments or server types")
    plain = {key: value for key, value in data.items() if isinstance(value, list)}
    crons: dict[str | None, dict[str, list[CronEntry]]] = {None: _type_table(plain, "")}
    for env, value in data.items():
        if env not in plain:
            crons[env] = _type_table(value, env)
    return crons


def read_crons(path: str) -> dict[str | None, dict[str, list[CronEntry]]]:
    """
    L{parse_crons} of the file at C{path}.

    @raise ValueError: it cannot be read, is not JSON, or has a bad entry;
        the sentence names the file.
    """
    data = read_json(path)
    try:
        return parse_crons(data)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def select(crons: Mapping[str | None, Mapping[str, list[CronEntry]]], env: str, server_type: str,
           server_id: str) -> list[CronEntry]:
    """
    The entries one server runs: those of its environment's section (the
    top-level server types when the file has no such section, as Pomelo
    reads it) for its type, whose C{serverId} is absent or its id.
    """
    table = crons[env] if env in crons else crons[None]
    return [e for e in table.get(server_type, ()) if e.server_id in (None, server_id)]


def _listed(crons: Any, call: str) -> list[Any]:
    """
    The list given to C{add_crons} or C{remove_crons}.

    @raise TypeError: one record, an id or anything else but a list was given.
    """
    if isinstance(crons, (str, bytes, Mapping)) or not isinstance(crons, Iterable):
        raise TypeError(f"{call} takes a list of crons, not {type(crons).__name__}")
    return list(crons)


@attrs.define(eq=False)
class Job:
    """
    A cron entry scheduled on this server, and what it has done.

    @ivar runs: how many times it was started.
    @ivar failures: how many runs raised.
    @ivar overlaps: how many times it was due while its last run had not
        finished, and so was not started.
    @ivar next_run: when it runs next (seconds since the epoch), or C{None}.
    """

    entry: CronEntry
    function: Callable[[], Any]
    runs: int = 0
    failures: int = 0
    overlaps: int = 0
    running: bool = False
    next_run: float | None = None
    call: Any = None


class CronService(Service):
    """
    Runs one server's crons: those of the crons file for its environment,
    type and id, and those added at run time.

    The file is read and every action resolved when the server starts
    (C{privilegedStartService}, so that a mistake ends the start before it
    serves); jobs are scheduled from C{startService} on, after the
    components' C{init}, and are cancelled when it stops. A job runs when
    its time comes unless its last run (a Deferred or coroutine) has not
    finished; one that raises is logged and runs again at its next time.

    @ivar jobs: the jobs by id.
    """

    def __init__(self, clock: Any, server_id: str, server_type: str, env: str, path: str,
                 components: Components, tz: tzinfo | None = None) -> None:
        """
        @param path: the crons file, or C{""} for none.
        @param components: the cron components made for this server, by
            name, each a mapping of method name to callable.
        @param tz: the time zone times are read in; local time when C{None}.
        """
        self.clock = clock
        self.server_id = server_id
        self.server_type = server_type
        self.env = env
        self.path = path
        self.components = components
        self.tz = tz
        self.jobs: dict[str, Job] = {}
        self._waiting: list[CronEntry] = []
        self._loaded = False

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        if self.path:
            entries = select(read_crons(self.path), self.env, self.server_type, self.server_id)
            try:
                self._add(entries)
            except ValueError as e:
                raise ValueError(f"{self.path}: {e}") from None
        waiting, self._waiting = self._waiting, []
        self._add(waiting)

    def _add(self, entries: list[CronEntry]) -> list[Job]:
        components = self.components()
        jobs: dict[str, Job] = {}
        for entry in entries:
            label = f"{entry.where} (id {entry.id})" if entry.where else f"id {entry.id}"
            if entry.id in self.jobs or entry.id in jobs:
                raise ValueError(f"{label}: id {entry.id} is already a cron of {self.server_id}")
            name, method = entry.action.split(".")
            if name not in components:
                raise ValueError(f"{label}: action {entry.action!r}: no cron component {name!r} "
                                 f"on {self.server_type} servers")
            function = components[name].get(method)
            if function is None:
                raise ValueError(f"{label}: action {entry.action!r}: cron {name!r} has no method {method!r}")
            jobs[entry.id] = Job(entry, function)
        self.jobs.update(jobs)
        if self.running:
            for job in jobs.values():
                self._schedule(job, self.clock.seconds())
        return list(jobs.values())

    def add(self, crons: Iterable[Any]) -> list[Job]:
        """
        Pomelo's C{addCrons}: schedule cron records at run time. Records
        whose C{serverId} names another server are left out; all are checked
        before any is added.

        @return: the jobs added (none until the server starts, when records
            added before are scheduled with the file's).
        @raise ValueError: a record is malformed, its id is taken, or its
            action names no cron method of this server.
        @raise TypeError: C{crons} is not a list.
        """
        entries = []
        for i, raw in enumerate(_listed(crons, "add_crons")):
            try:
                entry = CronEntry.parse(raw)
            except ValueError as e:
                raise ValueError(f"cron {i}: {e}") from None
            if entry.server_id in (None, self.server_id):
                entries.append(entry)
        if not self._loaded:
            self._waiting.extend(entries)
            return []
        return self._add(entries)

    def remove(self, crons: Iterable[Any]) -> list[str]:
        """
        Pomelo's C{removeCrons}: cancel jobs by id, each given as an id or
        as a record with an C{id}; a run in progress finishes. An id this
        server does not have is logged.

        @return: the ids removed.
        @raise TypeError: C{crons} is not a list.
        """
        removed = []
        for cron in _listed(crons, "remove_crons"):
            cron_id = str(cron.get("id") if isinstance(cron, Mapping) else cron)
            job = self.jobs.pop(cron_id, None)
            if job is None:
                log.warn("cron {id} is not a cron of {server_id}", id=cron_id, server_id=self.server_id)
                continue
            self._cancel(job)
            removed.append(cron_id)
        return removed

    def _schedule(self, job: Job, after: float) -> None:
        job.next_run = next_time(job.entry.time, after, self.tz)
        job.call = self.clock.callLater(max(0.0, job.next_run - self.clock.seconds()), self._due, job)

    def _cancel(self, job: Job) -> None:
        if job.call is not None and job.call.active():
            job.call.cancel()
        job.call = job.next_run = None

    def _due(self, job: Job) -> None:
        if not self.running:
            return
        due = job.next_run
        assert due is not None
        self._schedule(job, max(due, self.clock.seconds()))
        if job.running:
            job.overlaps += 1
            log.warn("cron {id} ({action}) of {server_id} is still running at its next time: not started again",
                     id=job.entry.id, action=job.entry.action, server_id=self.server_id)
            return
        Deferred.fromCoroutine(self._run(job))

    async def _run(self, job: Job) -> None:
        job.running = True
        job.runs += 1
        try:
            await settle(job.function())
        except Exception:
            job.failures += 1
            log.failure("cron {id} ({action}) of {server_id} failed",
                        id=job.entry.id, action=job.entry.action, server_id=self.server_id)
        finally:
            job.running = False

    def privilegedStartService(self) -> None:
        self._load()
        super().privilegedStartService()

    def startService(self) -> None:
        self._load()
        super().startService()
        now = self.clock.seconds()
        for job in self.jobs.values():
            self._schedule(job, now)

    def stopService(self) -> None:
        super().stopService()
        for job in self.jobs.values():
            self._cancel(job)


def attach(app: Application) -> CronService:
    """
    Make C{app.crons}: the server's crons, from the cluster file's C{crons}
    file and the cron components made for it, as a child service named C{crons}.
    """
    service = CronService(
        app.reactor, app.server_id, app.server_type, app.env, app.cluster.crons,
        lambda: {b.registration.name: b.methods for b in app.components if b.registration.kind == CRON},
    )
    service.setName("crons")
    service.setServiceParent(app)
    return service
