"""
The operator's command line: C{gamenet list|status|sessions|stop|kill|restart|
add|remove|kick|block|unblock|broadcast}, each one or a few calls of the master's
admin API (L{gamenet.admin}) over HTTP with treq.

The master's address and token come from the cluster file (C{--config},
C{etc/cluster.ini} by default: C{admin_host}, C{admin_port}, C{admin_token},
HTTPS when C{admin_tls_cert} is set, that certificate trusted), or from
C{--url} and C{--token} (or C{$GAMENET_ADMIN_TOKEN}). Answers are printed as
tables, or as the API's JSON with C{--json}. The exit status is 0 when every
call succeeded, 1 when one failed (one line on stderr: the master is
unreachable, refused the token, or answered the API's error sentence) and 2
on a usage error.

Tested in C{tests.test_cli} (a scripted master through C{treq.testing}) and
C{tests.test_operations} (a real cluster).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import IO, Any, Mapping, NoReturn, Sequence
from urllib.parse import quote, urlencode

from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater, react

from ..config import ADMIN_TOKEN_ENVIRONMENT
from ._client import Api, Failed, http_client, locate

POLL_INTERVAL = 0.5
ROLLING_WAIT = 60.0


class UsageError(Exception):
    """
    Arguments that do not make a command.
    """


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.format_usage().strip()}\n{self.prog}: error: {message}")


def parser() -> argparse.ArgumentParser:
    """
    The arguments of every command; C{args.command} names the one given,
    C{args.parser} is its own parser.
    """
    common = _Parser(add_help=False)
    common.add_argument("--config", default="etc/cluster.ini",
                        help="the cluster file naming the master's admin address and token (default: %(default)s)")
    common.add_argument("--url", help="the admin API's address, e.g. http://127.0.0.1:3006 (overrides --config)")
    common.add_argument("--token", help=f"the admin token (default: ${ADMIN_TOKEN_ENVIRONMENT}, then the file's)")
    common.add_argument("--json", action="store_true", help="print the API's JSON answers instead of tables")
    top = _Parser(prog="gamenet", description="Operate a running gamenet cluster through its master.")
    sub = top.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name: str, text: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, parents=[common], help=text, description=text)
        command.set_defaults(parser=command)
        return command

    command("list", "List the servers.").add_argument("--type", help="only servers of this type")
    command("status", "The cluster, or one server with its routes.").add_argument("server", nargs="?")
    sessions = command("sessions", "The sessions of a frontend, to kick one.")
    sessions.add_argument("server", metavar="ID")
    sessions.add_argument("--uid", help="only the sessions of this user id")
    sessions.add_argument("--limit", type=int, help="at most this many, by id (default: the server's, 100)")
    for verb, text in (("stop", "Stop servers: they drain, then exit."), ("kill", "Kill servers (SIGKILL)."),
                       ("restart", "Restart servers: stop, then start again.")):
        selection = command(verb, text)
        selection.add_argument("servers", nargs="*", metavar="ID")
        selection.add_argument("--type", help="every server of this type")
        selection.add_argument("--all", action="store_true", help="every server")
        if verb == "restart":
            selection.add_argument("--rolling", action="store_true",
                                   help="one at a time, each back up and ready before the next")
            selection.add_argument("--wait", type=float,
                                   help=f"with --rolling: seconds a server may take to come back "
                                        f"(default: {ROLLING_WAIT:g})")
    add = command("add", "Add a server: from a section of the cluster file, a JSON spec, or KEY=VALUE pairs.")
    add.add_argument("pairs", nargs="*", metavar="KEY=VALUE", help="the keys of a [server:ID] section, and id=ID")
    add.add_argument("--section", help="a section of the master's cluster file, e.g. server:chat-3")
    add.add_argument("--spec", help="a JSON object of the keys of a [server:ID] section, and id")
    command("remove", "Remove a stopped or running server from the cluster.").add_argument("server", metavar="ID")
    kick = command("kick", "Kick a user (by uid) or one session of a frontend.")
    kick.add_argument("--uid")
    kick.add_argument("--server", help="the frontend holding the session")
    kick.add_argument("--session", type=int, help="the session id on that frontend")
    kick.add_argument("--reason", help="the kick reason the client sees")
    command("block", "Block client addresses or networks on every frontend; none: list them.").add_argument(
        "networks", nargs="*", metavar="NETWORK")
    command("unblock", "Unblock client addresses or networks.").add_argument("networks", nargs="+", metavar="NETWORK")
    broadcast = command("broadcast", "Push a message on a route to every client of the cluster.")
    broadcast.add_argument("route")
    broadcast.add_argument("msg", nargs="?", default="null", help="a JSON value (default: null)")
    return top


async def run(argv: Sequence[str], reactor: Any, out: IO[str], err: IO[str],
              environ: Mapping[str, str], http: Any = None) -> int:
    """
    Run one command; its exit status.

    @param reactor: the clock of waits and timeouts, and the reactor of the
        HTTP client when C{http} is not given.
    @param http: treq's interface to call the master through; a fresh
        L{http_client} by default.
    """
    try:
        args, extra = parser().parse_known_args(argv)
        if extra:
            args.parser.error(f"unrecognized arguments: {' '.join(extra)}")
        body = _body(args)
    except UsageError as e:
        print(e, file=err)
        return 2
    except SystemExit as e:  # --help
        return int(e.code or 0)
    try:
        master = locate(args.config, args.url, args.token, environ)
        api = Api(http if http is not None else http_client(reactor, master.trust), master, reactor)
        if args.command == "restart" and args.rolling:
            return await _rolling(api, args, reactor, out, err)
        answer = await _COMMANDS[args.command](api, args, body)
    except Failed as e:
        print(f"gamenet: {e}", file=err)
        return 1
    if args.json:
        print(json.dumps(answer, indent=2, sort_keys=True), file=out)
    else:
        print(_show(args, answer), file=out)
    return 0


def main(argv: Sequence[str]) -> NoReturn:
    """
    Run one command (C{argv} starts with its name) and end the process with its exit status.
    """

    async def command(reactor: Any) -> None:
        code = await run(argv, reactor, sys.stdout, sys.stderr, os.environ)
        if code:
            raise SystemExit(code)

    react(lambda reactor: Deferred.fromCoroutine(command(reactor)))


def _body(args: argparse.Namespace) -> Any:
    """
    The JSON body of the command's call, checked before anything is sent.

    @raise UsageError: arguments that make no call.
    """
    if args.command in ("stop", "kill", "restart"):
        if bool(args.servers) + bool(args.type) + args.all != 1:
            raise UsageError(f"gamenet {args.command}: give server ids, --type TYPE or --all (one of them)")
        if args.command == "restart" and args.wait is not None:
            if not args.rolling:
                raise UsageError("gamenet restart: --wait goes with --rolling")
            if not 0 < args.wait < math.inf:
                raise UsageError(f"gamenet restart: --wait must be a number of seconds above 0, not {args.wait:g}")
        if args.servers:
            return {"servers": args.servers}
        return {"type": args.type} if args.type else {"all": True}
    if args.command == "add":
        if bool(args.pairs) + bool(args.section) + bool(args.spec) != 1:
            raise UsageError("gamenet add: give --section, --spec or KEY=VALUE pairs (one of them)")
        if args.section:
            return {"section": args.section}
        if args.spec:
            try:
                return {"spec": json.loads(args.spec)}
            except ValueError as e:
                raise UsageError(f"gamenet add: --spec is not JSON: {e}") from None
        if not all("=" in pair for pair in args.pairs):
            raise UsageError(f"gamenet add: not KEY=VALUE: {next(p for p in args.pairs if '=' not in p)}")
        return {"spec": dict(pair.split("=", 1) for pair in args.pairs)}
    if args.command == "kick":
        by_session = args.server is not None or args.session is not None
        if bool(args.uid) == by_session or by_session and (args.server is None or args.session is None):
            raise UsageError("gamenet kick: give --uid UID, or --server ID and --session N")
        target = {"uid": args.uid} if args.uid else {"server": args.server, "session": args.session}
        return {**target, **({"reason": args.reason} if args.reason else {})}
    if args.command in ("block", "unblock"):
        return {"networks": args.networks}
    if args.command == "broadcast":
        try:
            return {"route": args.route, "msg": json.loads(args.msg)}
        except ValueError as e:
            raise UsageError(f"gamenet broadcast: the message is not JSON: {e}") from None
    return None


async def _list(api: Api, args: argparse.Namespace, body: Any) -> Any:
    return {"servers": await api.servers(args.type)}


async def _status(api: Api, args: argparse.Namespace, body: Any) -> Any:
    return await (api.server(args.server) if args.server else api.call("GET", "/api/cluster"))


async def _sessions(api: Api, args: argparse.Namespace, body: Any) -> Any:
    given = {"uid": args.uid, "limit": args.limit}
    query = urlencode({key: value for key, value in given.items() if value is not None})
    return await api.call("GET", f"/api/servers/{quote(args.server, safe='')}/sessions{'?' if query else ''}{query}")


async def _post(api: Api, args: argparse.Namespace, body: Any) -> Any:
    answer = await api.call("POST", f"/api/{args.command}", body)
    if args.command in ("stop", "kill", "restart") and not answer.get("servers"):
        raise Failed(f"no server to {args.command}")
    return answer


async def _add(api: Api, args: argparse.Namespace, body: Any) -> Any:
    return await api.call("POST", "/api/servers", body)


async def _remove(api: Api, args: argparse.Namespace, body: Any) -> Any:
    return await api.call("DELETE", f"/api/servers/{quote(args.server, safe='')}")


async def _block(api: Api, args: argparse.Namespace, body: Any) -> Any:
    return await (api.call("POST", "/api/block", body) if args.networks else api.call("GET", "/api/blocked"))


_COMMANDS = {"list": _list, "status": _status, "sessions": _sessions, "stop": _post, "kill": _post, "restart": _post,
             "add": _add, "remove": _remove, "kick": _post, "block": _block, "unblock": _post, "broadcast": _post}


async def _rolling(api: Api, args: argparse.Namespace, clock: Any, out: IO[str], err: IO[str]) -> int:
    """
    Restart the chosen servers one at a time: each must be up, ready and
    running a new process within C{--wait} seconds before the next one is
    restarted; the first that is not stops the run (exit status 1).
    """
    wait = ROLLING_WAIT if args.wait is None else args.wait
    ids = args.servers or [record["id"] for record in await api.servers(args.type)]
    if not ids:
        raise Failed(f"no server of type {args.type}" if args.type else "no server to restart")
    progress = err if args.json else out
    done: list[dict[str, Any]] = []
    for n, server_id in enumerate(ids, 1):
        old = (await api.server(server_id)).get("pid")
        print(f"[{n}/{len(ids)}] restarting {server_id} (pid {_value(old)})", file=progress, flush=True)
        start = clock.seconds()
        await api.call("POST", "/api/restart", {"servers": [server_id]})
        while True:
            await deferLater(clock, POLL_INTERVAL, lambda: None)
            record = await api.server(server_id)
            elapsed = clock.seconds() - start
            if record.get("state") == "up" and record.get("ready") and record.get("pid") not in (None, old):
                break
            if elapsed >= wait:
                left = ", ".join(ids[n:]) or "none"
                raise Failed(f"{server_id} did not come back within {wait:g} s (state {record.get('state')}, "
                             f"ready {_value(record.get('ready'))}, pid {_value(record.get('pid'))}); "
                             f"stopped the rolling restart; not restarted: {left}")
        print(f"[{n}/{len(ids)}] {server_id} is back: pid {record['pid']}, ready after {elapsed:.1f} s",
              file=progress, flush=True)
        done.append({"id": server_id, "old_pid": old, "pid": record["pid"], "seconds": round(elapsed, 1)})
    if args.json:
        print(json.dumps({"servers": done}, indent=2, sort_keys=True), file=out)
    return 0


_SERVER_COLUMNS = ("ID", "TYPE", "STATE", "PID", "UPTIME", "CLIENTS", "SESSIONS", "RPS", "P99", "CPU", "RSS")


def _show(args: argparse.Namespace, answer: Any) -> str:
    """
    The answer of a command, for a person.
    """
    if args.command == "list":
        return _table(_SERVER_COLUMNS, [_server_row(record) for record in answer["servers"]], text=3)
    if args.command == "status":
        return _server_status(answer) if args.server else (
            f"cluster {answer['name']}: {answer['up']} of {answer['servers']} servers up; "
            f"master pid {answer['master']['pid']}, up {_duration(answer['master'].get('uptime'))}")
    if args.command == "sessions":
        return _sessions_table(answer)
    if args.command in ("stop", "kill", "restart"):
        verb = {"stop": "stopping", "kill": "killed", "restart": "restarting"}[args.command]
        return f"{verb}: {', '.join(answer['servers'])}"
    if args.command == "add":
        record = answer["server"]
        return f"added {record['id']} ({record['type']}), {record['state']}"
    if args.command == "remove":
        return f"removed {answer['removed']}"
    if args.command == "kick":
        return f"kicked {answer['kicked']} session{'' if answer['kicked'] == 1 else 's'}"
    if args.command == "broadcast":
        return f"sent to {answer['sessions']} session{'' if answer['sessions'] == 1 else 's'}"
    return "\n".join(answer["blocked"]) or "no address is blocked"


def _sessions_table(answer: Mapping[str, Any]) -> str:
    sessions, total = answer["sessions"], answer["total"]
    if not sessions:
        return f"no session on {answer['server']}"
    rows = [[_value(s.get("id")), _value(s.get("uid")), _value(s.get("address")), _value(s.get("transport")),
             _duration(s.get("seconds"))] for s in sessions]
    table = _table(("SESSION", "UID", "ADDRESS", "TRANSPORT", "CONNECTED"), rows, text=4)
    if total > len(sessions):
        table += f"\n({len(sessions)} of {total} sessions; --limit N for more)"
    return table


def _server_row(record: Mapping[str, Any]) -> list[str]:
    return [record["id"], record["type"], record["state"], _value(record.get("pid")),
            _duration(record.get("uptime")), _value(record.get("clients")), _value(record.get("sessions")),
            _number(record.get("rps"), "{:.1f}"), _ms(record.get("p99")), _number(record.get("cpu"), "{:.1f}%"),
            _bytes(record.get("rss"))]


def _server_status(record: Mapping[str, Any]) -> str:
    ports = ", ".join(f"{name} {port}" for name, port in sorted((record.get("ports") or {}).items()) if port)
    lines = [
        f"{record['id']} ({record['type']}{', frontend' if record.get('frontend') else ''}) on {record.get('host')}: "
        f"{record['state']}{', ready' if record.get('ready') else ', not ready'}",
        f"  pid {_value(record.get('pid'))}, up {_duration(record.get('uptime'))}, "
        f"restarts {_value(record.get('restarts'))}, ports: {ports or '-'}",
        f"  clients {_value(record.get('clients'))}, sessions {_value(record.get('sessions'))}, "
        f"{_number(record.get('rps'), '{:.1f}')} requests/s, {_number(record.get('errors_per_second'), '{:.1f}')} "
        f"errors/s, p50 {_ms(record.get('p50'))}, p99 {_ms(record.get('p99'))}, "
        f"CPU {_number(record.get('cpu'), '{:.1f}%')}, RSS {_bytes(record.get('rss'))}",
    ]
    routes = record.get("routes") or {}
    if routes:
        rows = [[route, _value(r.get("requests")), _value(r.get("errors")), _number(r.get("rps"), "{:.1f}"),
                 _ms(r.get("p50")), _ms(r.get("p99"))] for route, r in sorted(routes.items())]
        lines += ["", _table(("ROUTE", "REQUESTS", "ERRORS", "RPS", "P50", "P99"), rows)]
    return "\n".join(lines)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], text: int = 1) -> str:
    """
    Columns padded to their widest cell: the first C{text} (words)
    left-aligned, the others (figures) right-aligned.
    """
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows)]

    def line(row: Sequence[str]) -> str:
        cells = [cell.ljust(width) if i < text else cell.rjust(width)
                 for i, (cell, width) in enumerate(zip(row, widths))]
        return "  ".join(cells).rstrip()

    return "\n".join(line(row) for row in (headers, *rows))


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _number(value: Any, form: str) -> str:
    return "-" if value is None else form.format(value)


def _ms(seconds: Any) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}ms"


def _bytes(size: Any) -> str:
    return "-" if size is None else f"{size / 2**20:.1f}M"


def _duration(seconds: Any) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    if hours >= 24:
        return f"{hours // 24}d{hours % 24:02d}h"
    if hours:
        return f"{hours}h{rest // 60:02d}m"
    return f"{rest // 60}m{rest % 60:02d}s" if rest >= 60 else f"{rest}s"
