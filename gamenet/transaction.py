"""
Transactions, as Pomelo's C{app.transaction(name, conditions, handlers,
retry)}: every condition must pass before any handler runs; a failing
handler is tried again, up to C{retry} times in all; each transaction is
written to the server's transaction log, one JSON line per event, so that an
operator can find what failed, and what a crash interrupted (see
C{doc/transactions.md}).

L{run} is the pure core; L{TransactionLog} the file; L{Transactions} the
service behind C{app.transactions}.

Tested by tests/test_transaction.py.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Union

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from ._settle import settle

if TYPE_CHECKING:
    from .app import Application

log = Logger()

COMMITTED = "committed"
CONDITIONS_FAILED = "conditions failed"
HANDLERS_FAILED = "handlers failed"

Functions = Union[Mapping[str, Callable[[], Any]], Iterable[Callable[[], Any]]]


@attrs.frozen
class Step:
    """
    What one condition or handler did.

    @ivar attempts: how many times it was called (conditions: 1).
    @ivar error: why its last call failed (C{"ValueError: no money"}), or
        C{None} when it passed.
    """

    name: str
    attempts: int = 1
    error: str | None = None


@attrs.frozen
class Outcome:
    """
    How a transaction ended.

    @ivar status: L{COMMITTED}, L{CONDITIONS_FAILED} (no handler ran) or
        L{HANDLERS_FAILED} (a handler failed every attempt; those after it did not run).
    @ivar conditions: the conditions called, in order; a failed one is last.
    @ivar handlers: the handlers called, in order; a failed one is last.
    """

    id: str
    name: str
    status: str
    conditions: tuple[Step, ...]
    handlers: tuple[Step, ...]

    @property
    def committed(self) -> bool:
        """
        Whether every condition passed and every handler succeeded.
        """
        return self.status == COMMITTED


@attrs.frozen
class Unfinished:
    """
    A transaction whose log has a C{started} line but no end: the server
    stopped (crashed) while its handlers ran.

    @ivar started: when it started, in seconds since the epoch.
    @ivar handlers: the handlers that had ended by then.
    """

    id: str
    name: str
    started: float
    handlers: tuple[Step, ...]


Named = list[tuple[str, Callable[[], Any]]]


def named(what: str, functions: Functions) -> Named:
    """
    Conditions or handlers as C{(name, function)} pairs: a mapping's items,
    or the functions of a list named by their C{__name__}.

    @param what: C{"conditions"} or C{"handlers"}, for the error.
    @raise TypeError: C{functions} is neither a mapping nor a list, or one
        of them is not callable (so that nothing runs).
    """
    if isinstance(functions, Mapping):
        pairs = list(functions.items())
    elif isinstance(functions, (str, bytes)) or not isinstance(functions, Iterable):
        raise TypeError(f"{what} must be a mapping of names to functions or a list of functions, "
                        f"not {type(functions).__name__}")
    else:
        pairs = [(getattr(fn, "__name__", str(i)), fn) for i, fn in enumerate(functions)]
    for key, fn in pairs:
        if not callable(fn):
            raise TypeError(f"{what}: {key!r} is {type(fn).__name__}, not a function")
    return [(str(key), fn) for key, fn in pairs]


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


async def _check(conditions: Named) -> tuple[Step, ...]:
    steps = []
    for name, condition in conditions:
        try:
            error = "returned False" if await settle(condition()) is False else None
        except Exception as e:
            error = _describe(e)
        steps.append(Step(name, 1, error))
        if error is not None:
            break
    return tuple(steps)


async def _attempt(name: str, handler: Callable[[], Any], tries: int) -> Step:
    error = None
    for attempt in range(1, tries + 1):
        try:
            await settle(handler())
            return Step(name, attempt)
        except Exception as e:
            error = _describe(e)
            log.warn("transaction handler {handler} failed (attempt {attempt} of {tries}): {error}",
                     handler=name, attempt=attempt, tries=tries, error=error)
    return Step(name, tries, error)


async def run(
    transaction_id: str, name: str, conditions: Named, handlers: Named, retry: int = 1,
    started: Callable[[tuple[Step, ...]], None] = lambda conditions: None,
    ended: Callable[[Step], None] = lambda step: None,
) -> Outcome:
    """
    Run a transaction: each condition in order until one fails (raises, or
    answers C{False}); when all pass, C{started(conditions)}, then each
    handler in order, called again when it raises up to C{retry} times in
    all (Pomelo's meaning: 1, no retry), with C{ended(step)} after each;
    a handler that fails every attempt ends the transaction.

    @param conditions: functions of no argument with their names (see
        L{named}); each may answer a value, a Deferred or a coroutine.
    @param handlers: the same.
    @param started: told before any handler runs; if it raises, none runs.
    """
    checked = await _check(conditions)
    if checked and checked[-1].error is not None:
        return Outcome(transaction_id, name, CONDITIONS_FAILED, checked, ())
    started(checked)
    steps = []
    for handler_name, handler in handlers:
        step = await _attempt(handler_name, handler, max(1, retry))
        steps.append(step)
        ended(step)
        if step.error is not None:
            return Outcome(transaction_id, name, HANDLERS_FAILED, checked, tuple(steps))
    return Outcome(transaction_id, name, COMMITTED, checked, tuple(steps))


def unfinished(records: Iterable[Mapping[str, Any]]) -> list[Unfinished]:
    """
    The transactions of a log's records that started but did not end, in
    the order they started.
    """
    open_: dict[str, Unfinished] = {}
    for record in records:
        event, transaction_id = record.get("event"), str(record.get("id"))
        if event == "started":
            open_[transaction_id] = Unfinished(transaction_id, str(record.get("name")), record.get("time", 0), ())
        elif event == "handler" and transaction_id in open_:
            known = open_[transaction_id]
            step = Step(str(record.get("handler")), record.get("attempts", 1), record.get("error"))
            open_[transaction_id] = attrs.evolve(known, handlers=(*known.handlers, step))
        elif event in ("finished", "interrupted"):
            open_.pop(transaction_id, None)
    return list(open_.values())


class TransactionLog:
    """
    A transaction log file: one JSON object a line, each written, flushed
    and synced to the disk before L{write} returns, so that a line written
    before a crash is there after it. The file and its directory are made
    on the first write.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._file: Any = None

    def write(self, record: Mapping[str, Any]) -> None:
        """
        Append C{record}.

        @raise OSError: the file cannot be made or written.
        """
        if self._file is None:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            self._file = open(self.path, "a+", encoding="utf-8")
            if self._file.tell() and not self._ends_line():
                self._file.write("\n")
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def _ends_line(self) -> bool:
        """
        Whether the file ends with a whole line (not one a crash cut short).
        """
        with open(self.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"

    def read(self) -> list[dict[str, Any]]:
        """
        The records written so far (none when there is no file); a line that
        is not a JSON object, such as one cut short by a crash, is logged
        and left out.
        """
        try:
            with open(self.path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return []
        records = []
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if isinstance(record, dict):
                records.append(record)
            elif line.strip():
                log.warn("{path} line {number} is not a transaction record; left out", path=self.path, number=number)
        return records

    def close(self) -> None:
        """
        Close the file; a later write opens it again.
        """
        if self._file is not None:
            self._file.close()
            self._file = None


class Transactions(Service):
    """
    One server's transactions and their log (C{app.transactions}).

    When the server starts, or at its first transaction if that comes
    first, the log is read: each transaction that started but did not end
    is logged, kept in L{unfinished} and closed in the log with an
    C{interrupted} line, so that it is reported once.

    @ivar unfinished: the transactions found interrupted at this start.
    """

    def __init__(self, clock: Any, server_id: str, path: str) -> None:
        """
        @param path: the transaction log file.
        """
        self.clock = clock
        self.server_id = server_id
        self.log = TransactionLog(path)
        self.unfinished: list[Unfinished] = []
        self._recovered = False

    def _write(self, event: str, transaction_id: str, name: str, **fields: Any) -> None:
        self.log.write({"event": event, "id": transaction_id, "name": name, "server": self.server_id,
                        "time": self.clock.seconds(), **fields})

    def recover(self) -> list[Unfinished]:
        """
        Find and report the transactions a crash interrupted (once).
        """
        if not self._recovered:
            self._recovered = True
            self.unfinished = unfinished(self.log.read())
            for found in self.unfinished:
                log.error("transaction {name} {id} started at {started} on {server_id} did not finish; handlers "
                          "done: {done}", name=found.name, id=found.id, started=found.started,
                          server_id=self.server_id, done=", ".join(step.name for step in found.handlers) or "none")
                self._write("interrupted", found.id, found.name, handlers=[attrs.asdict(s) for s in found.handlers])
        return self.unfinished

    def run(self, name: str, conditions: Functions, handlers: Functions, retry: int = 1) -> Deferred[Outcome]:
        """
        Run a transaction (see L{gamenet.transaction.run}) and log it: a
        C{started} line before its first handler, a C{handler} line after
        each, and a C{finished} line with its outcome.

        @return: a Deferred firing with its L{Outcome}; it fails only when
            the log cannot be written (then no handler has run if the
            C{started} line could not be).
        @raise TypeError: C{name} is not a non-empty string, C{retry} not a
            whole number, or C{conditions} or C{handlers} not functions (see
            L{named}); nothing has run.
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"a transaction's name must be a non-empty string, not {name!r}")
        if isinstance(retry, bool) or not isinstance(retry, int):
            raise TypeError(f"retry must be a whole number of attempts, not {retry!r}")
        return Deferred.fromCoroutine(self._run(name, named("conditions", conditions), named("handlers", handlers),
                                                retry))

    async def _run(self, name: str, conditions: Named, handlers: Named, retry: int) -> Outcome:
        self.recover()
        transaction_id = uuid.uuid4().hex

        def started(checked: tuple[Step, ...]) -> None:
            self._write("started", transaction_id, name, conditions=[attrs.asdict(s) for s in checked])

        def ended(step: Step) -> None:
            self._write("handler", transaction_id, name, handler=step.name, attempts=step.attempts, error=step.error)

        outcome = await run(transaction_id, name, conditions, handlers, retry, started, ended)
        self._write("finished", transaction_id, name, status=outcome.status,
                    conditions=[attrs.asdict(s) for s in outcome.conditions],
                    handlers=[attrs.asdict(s) for s in outcome.handlers])
        if outcome.committed:
            log.info("transaction {name} {id} committed", name=name, id=transaction_id)
        else:
            failed = (outcome.handlers or outcome.conditions)[-1]
            log.error("transaction {name} {id} on {server_id}: {status} at {step}: {error}", name=name,
                      id=transaction_id, server_id=self.server_id, status=outcome.status, step=failed.name,
                      error=failed.error)
        return outcome

    def privilegedStartService(self) -> None:
        self.recover()
        super().privilegedStartService()

    def startService(self) -> None:
        self.recover()
        super().startService()

    def stopService(self) -> None:
        super().stopService()
        self.log.close()


def attach(app: Application) -> Transactions:
    """
    Make C{app.transactions}, logging to C{transaction-<server id>.log} in
    the cluster file's C{transaction_log_dir} (a C{logs} directory beside
    the cluster file by default), as a child service named C{transactions}.
    """
    directory = app.cluster.transaction_log_dir or os.path.join(os.path.dirname(os.path.abspath(app.cluster.path)),
                                                                "logs")
    service = Transactions(app.reactor, app.server_id, os.path.join(directory, f"transaction-{app.server_id}.log"))
    service.setName("transactions")
    service.setServiceParent(app)
    return service
