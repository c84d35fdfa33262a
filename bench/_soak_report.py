"""
What bench/soak.py makes of its samples: each server's memory growth after
warm-up, its file descriptors before and after each fault, its CPU, the
verdict against the targets, the text report and the PNG.

A sample is one reading of one server process: C{t} (seconds since the load
started), C{server}, C{pid}, C{rss_kib}, C{fds}, C{cpu_s} (CPU seconds so
far) and C{clients} (the soak's own connections open to it then). A server
restarted by the master is a new incarnation (a new pid), measured apart.
"""

from __future__ import annotations

import statistics
from typing import Any, Iterable, Sequence

RSS_TARGET = 2.0  # % growth per 10 minutes after warm-up
FD_TOLERANCE = 2  # descriptors above the level before a fault still counted back at it
FD_SETTLE = 10.0  # seconds after a server is back before its descriptors are read again
MIN_SPAN = 300.0  # seconds of samples after warm-up, over a server's incarnations, to fit memory growth

Sample = dict[str, Any]


def incarnations(samples: Iterable[Sample]) -> dict[tuple[str, int], list[Sample]]:
    """
    The samples of each (server, pid), in time order.
    """
    out: dict[tuple[str, int], list[Sample]] = {}
    for sample in samples:
        out.setdefault((sample["server"], sample["pid"]), []).append(sample)
    return out


def memory(samples: Iterable[Sample], warmup: float) -> dict[str, dict[str, Any]]:
    """
    Per server, its memory growth after warm-up: the least-squares slope of
    RSS over time within each incarnation, from C{warmup} seconds after its
    first sample on, pooled over its incarnations (one slope, an intercept
    each), as a percentage of its mean RSS per 10 minutes; C{None} when the
    incarnations give fewer than L{MIN_SPAN} seconds after warm-up in all.
    """
    rows: dict[str, dict[str, Any]] = {}
    pooled: dict[str, list[float]] = {}
    for (server, _), series in incarnations(samples).items():
        row = rows.setdefault(server, {"incarnations": 0, "lived_s": 0.0, "measured_s": 0.0,
                                       "rss_first_mib": round(series[0]["rss_kib"] / 1024, 1)})
        row["incarnations"] += 1
        row["lived_s"] = round(row["lived_s"] + series[-1]["t"] - series[0]["t"], 1)
        row["rss_end_mib"] = round(series[-1]["rss_kib"] / 1024, 1)
        kept = [s for s in series if s["t"] >= series[0]["t"] + warmup]
        if len(kept) < 2:
            continue
        row["measured_s"] = round(row["measured_s"] + kept[-1]["t"] - kept[0]["t"], 1)
        mean_t = statistics.fmean(s["t"] for s in kept)
        mean_r = statistics.fmean(s["rss_kib"] for s in kept)
        sums = pooled.setdefault(server, [0.0, 0.0, 0.0, 0.0])
        sums[0] += sum((s["t"] - mean_t) * (s["rss_kib"] - mean_r) for s in kept)
        sums[1] += sum((s["t"] - mean_t) ** 2 for s in kept)
        sums[2] += sum(s["rss_kib"] for s in kept)
        sums[3] += len(kept)
    for server, row in rows.items():
        sums = pooled.get(server)
        row["growth_pct_per_10min"] = None
        if sums and row["measured_s"] >= MIN_SPAN and sums[1]:
            row["growth_pct_per_10min"] = round(sums[0] / sums[1] * 600 / (sums[2] / sums[3]) * 100, 2)
    return dict(sorted(rows.items()))


def cpu(samples: Iterable[Sample]) -> dict[str, float]:
    """
    Per server, its mean CPU use (percent of one core) over the run, every
    incarnation together.
    """
    used: dict[str, float] = {}
    spans: dict[str, float] = {}
    for (server, _), series in incarnations(samples).items():
        if len(series) > 1:
            used[server] = used.get(server, 0.0) + series[-1]["cpu_s"] - series[0]["cpu_s"]
            spans[server] = spans.get(server, 0.0) + series[-1]["t"] - series[0]["t"]
    return {server: round(100 * used[server] / spans[server], 1) for server in sorted(used) if spans[server]}


def _level(series: Sequence[Sample]) -> float | None:
    """
    The median, over up to three samples, of descriptors not counting the
    soak's own connections to the server.
    """
    return statistics.median(s["fds"] - s["clients"] for s in series[:3]) if series else None


def descriptors(samples: Sequence[Sample], faults: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """
    For each fault, each server's descriptor level (L{_level}) just before
    the kill and L{FD_SETTLE} seconds after the killed server was back (the
    restarted one's new incarnation against its old), and whether each is
    back within L{FD_TOLERANCE}; C{None} where the run ended first.
    """
    rows = []
    for fault in faults:
        levels: dict[str, Any] = {}
        back = fault.get("back")
        for server in sorted({s["server"] for s in samples}):
            before = [s for s in samples if s["server"] == server and s["t"] < fault["killed"]][-3:]
            after = [] if back is None else [
                s for s in samples if s["server"] == server and s["t"] >= back + FD_SETTLE]
            if before and after:
                after = [s for s in after if s["pid"] == after[0]["pid"]]
            b, a = _level(before), _level(after)
            levels[server] = {"before": b, "after": a,
                              "back": None if b is None or a is None else a - b <= FD_TOLERANCE}
        rows.append({"server": fault["server"], "killed": fault["killed"], "levels": levels})
    return rows


def verdict(tally: dict[str, Any], faults: Sequence[dict[str, Any]], memory_rows: dict[str, dict[str, Any]],
            fd_rows: Sequence[dict[str, Any]], problems: Sequence[str]) -> list[str]:
    """
    Why the soak failed: one sentence per missed target; empty when it passed.
    """
    failed = list(problems)
    if not tally["acked"]:
        failed.append("no message was acknowledged")
    if tally["lost"]:
        failed.append(f"{tally['lost']} deliveries of acknowledged messages lost "
                      f"({tally['messages_with_losses']} messages)")
    for fault in faults:
        if fault.get("back") is None:
            failed.append(f"{fault['server']} killed at {fault['killed']:.0f}s was not back in time")
        elif fault["broken"]:
            failed.append(f"after {fault['server']} was back at {fault['back']:.0f}s, no message reached every "
                          f"member within {fault['bound']:g}s in: {', '.join(fault['broken'])}")
    for server, row in memory_rows.items():
        if row["growth_pct_per_10min"] is not None and row["growth_pct_per_10min"] >= RSS_TARGET:
            failed.append(f"{server} RSS grew {row['growth_pct_per_10min']}% per 10 minutes after warm-up "
                          f"(target: under {RSS_TARGET:g}%)")
    for row in fd_rows:
        for server, level in row["levels"].items():
            if level["back"] is False:
                failed.append(f"{server} held {level['after']:g} descriptors after {row['server']} was killed at "
                              f"{row['killed']:.0f}s and back, {level['before']:g} before")
    return failed


def text(summary: dict[str, Any]) -> str:
    """
    The report printed at the end of a soak.
    """
    from _common import columns

    t = summary["messages"]
    lines = [
        f"soak: {summary['duration_s']:g} s, {summary['rooms']} rooms, {summary['users']} users, "
        f"{summary['rate']:g} messages/s, a kill every {summary['kill_interval_s']:g} s (seed {summary['seed']})",
        f"messages: {t['sent']} sent, {t['acked']} acknowledged, {t['unanswered']} unanswered; deliveries: "
        f"{t['expected']} expected, {t['delivered']} made, {t['lost']} lost, {t['missing_killed_connector']} "
        "missing to clients of a killed connector (counted apart)",
        f"users: {summary['counts']}",
        "",
    ]
    rows = [("fault", "killed at s", "back at s", "rooms checked", "rooms broken")]
    for fault in summary["faults"]:
        rows.append((fault["server"], f"{fault['killed']:.1f}",
                     "-" if fault.get("back") is None else f"{fault['back']:.1f}",
                     str(fault.get("rooms_checked", 0)), ", ".join(fault["broken"]) or "none"))
    if summary["faults"]:
        lines += [columns(rows, left=1), ""]
    rows = [("server", "incarnations", "lived s", "measured s", "RSS MiB at end", "growth %/10 min", "CPU %")]
    for server, row in summary["memory"].items():
        g = row["growth_pct_per_10min"]
        rows.append((server, str(row["incarnations"]), f"{row['lived_s']:.0f}", f"{row['measured_s']:.0f}",
                     f"{row['rss_end_mib']:.1f}", "not measured" if g is None else f"{g:+.2f}",
                     f"{summary['cpu'].get(server, 0.0):.1f}"))
    lines += [columns(rows, left=1), ""]
    for row in summary["descriptors"]:
        levels = ", ".join(f"{server} {_fds(level)}" for server, level in row["levels"].items())
        lines.append(f"descriptors around {row['server']} at {row['killed']:.0f}s (before -> after): {levels}")
    if summary["errors"]:
        lines += ["", "errors by kind:"] + [f"  {n:6d}  {what}" for what, n in summary["errors"].items()]
    lines += ["", "verdict: " + ("PASS" if not summary["failed"] else "FAIL")]
    lines += [f"  - {reason}" for reason in summary["failed"]]
    return "\n".join(lines)


def _fds(level: dict[str, Any]) -> str:
    if level["before"] is None or level["after"] is None:
        return "n/a"
    return f"{level['before']:g}->{level['after']:g}"


def plot(samples: Sequence[Sample], faults: Sequence[dict[str, Any]], path: str) -> None:
    """
    Write a PNG of each server's RSS and descriptors over time, the kills
    marked (red: a chat server, orange: a connector). RSS read while a
    restarted process was still starting (under 80% of its median) is left
    out, so that the scale shows growth rather than starts.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for server in sorted({s["server"] for s in samples}):
        series = [s for s in samples if s["server"] == server]
        line = None
        for (_, _), run in incarnations(series).items():
            ts = [s["t"] for s in run]
            color = {} if line is None else {"color": line.get_color()}
            floor = 0.9 * statistics.median(s["rss_kib"] for s in run)
            started = [s for s in run if s["rss_kib"] >= floor]
            line = top.plot([s["t"] for s in started], [s["rss_kib"] / 1024 for s in started], label=server,
                            **color)[0]
            bottom.plot(ts, [s["fds"] for s in run], color=line.get_color())
    for fault in faults:
        for axis in (top, bottom):
            axis.axvline(fault["killed"], color="red" if fault["server"].startswith("chat") else "orange",
                         linewidth=0.6, alpha=0.6)
    handles, labels = top.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    top.legend(unique.values(), unique.keys(), fontsize=7, loc="upper left", ncols=3)
    top.set_ylabel("RSS (MiB)")
    bottom.set_ylabel("open file descriptors")
    bottom.set_xlabel("seconds since the load started")
    top.set_title("bench/soak.py: each server's memory and descriptors; kills marked", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
