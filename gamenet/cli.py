"""
The C{gamenet} console script: C{gamenet bench ...} runs the load robot
(L{gamenet.robot}); C{gamenet bench --help} lists its options. C{gamenet
list}, C{stop}, C{restart} and the other operations call the master's admin
API (L{gamenet.admin.cli}).
"""

from __future__ import annotations

import json
import sys
from typing import Callable, Sequence


def bench(argv: Sequence[str]) -> int:
    """
    Run the load robot; 0 on a run without errors, 1 with errors, 2 on a usage error.
    """
    from .robot import options, report, runner

    try:
        args = options.parse(argv)
        run = runner.run(args, progress=None if args.quiet else sys.stderr)
    except (options.UsageError, ValueError, runner.WorkerError) as e:
        print(f"gamenet bench: error: {e}", file=sys.stderr)
        return 2
    document = report.to_json(run)
    if args.json == "-":
        print(json.dumps(document, indent=2))
    else:
        print(report.table(document))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(document, f, indent=2)
    if args.png:
        try:
            report.plot(document, args.png)
        except RuntimeError as e:
            print(f"gamenet bench: error: {e}", file=sys.stderr)
            return 2
    return 1 if document["error_count"] else 0


def _admin(name: str) -> Callable[[Sequence[str]], int]:
    """
    C{gamenet NAME ...}: a call of the master's admin API (L{gamenet.admin.cli}).
    """

    def command(argv: Sequence[str]) -> int:
        from .admin import cli

        return cli.main([name, *argv])

    return command


ADMIN_COMMANDS = ("list", "status", "sessions", "stop", "kill", "restart", "add", "remove", "kick", "block", "unblock",
                  "broadcast")
COMMANDS = {"bench": bench, **{name: _admin(name) for name in ADMIN_COMMANDS}}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        asked = argv[:1] in (["-h"], ["--help"])
        print("usage: gamenet bench [options]   (gamenet bench --help for the options)\n"
              f"       gamenet {'|'.join(ADMIN_COMMANDS)} [options]   (gamenet list --help, ...)",
              file=sys.stdout if asked else sys.stderr)
        return 0 if asked else 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
