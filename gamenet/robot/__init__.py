"""
The load robot behind C{gamenet bench}: simulated Pomelo clients spread over
worker processes, driving a gamenet server (or any Pomelo server) with a
route or a scenario module, and reporting what the server's CPU cost per
request, throughput, latency, pushes and errors were.

One module per concept:

- L{options}: the command line and the target check (loopback only unless told);
- L{runner}: the parent process (workers, aggregation, progress, deadline);
- L{worker}: one worker process (a reactor with its share of the clients);
- L{scenarios}: the route scenario, the scenario context, loading a module;
- L{stats}: latency histograms and per-second series, mergeable across workers;
- L{report}: the terminal table, the JSON document, the PNG plot;
- L{procstat}: CPU time and memory of processes, from /proc.

L{measure} runs the robot from Python (the bench scripts do) and returns the
JSON report.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence, TextIO

__all__ = ["measure"]


def measure(argv: Sequence[str], progress: TextIO | None = None,
            on_window: Callable[[], None] | None = None) -> dict[str, Any]:
    """
    Run the robot with the C{gamenet bench} command line C{argv} and return
    its report (the document C{--json} writes); C{progress} gets the
    progress line if given; C{on_window} is called when the measured window
    opens (to start a profiler, say).

    @raise gamenet.robot.options.UsageError: the command line is refused.
    @raise ValueError: a C{--pid} is not running.
    @raise gamenet.robot.runner.WorkerError: a worker process did not start.
    """
    from . import options, report, runner

    return report.to_json(runner.run(options.parse(argv), progress, on_window))
