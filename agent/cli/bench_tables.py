"""How `lineside bench`'s figures are shown: the table of one run and the CPU-per-event table."""

from __future__ import annotations

from agent.cli.bench_plcs import ROWS

LINE_RATES = (20.0, 100.0)
"""The scan rates the agent's CPU per event is measured at (scans/s)."""

_ROWS = (
    (
        "e2e_events_per_s",
        "end to end (scan -> PUBACK -> cursor), sync=full",
        "events/s",
        "≥ 0.8x raw, ≥ 3x naive",
    ),
    ("e2e_scanners", "  scanners reading at once", "", ""),
    ("intake_events_per_s", "intake alone (scan -> commit), same scanners", "events/s", ""),
    ("delivery_events_per_s", "delivery alone (the backlog drain)", "events/s", ""),
    ("naive_events_per_s", "baseline: naive integrator loop", "events/s", ""),
    ("raw_publish_msgs_per_s", "baseline: raw aiomqtt QoS 1, window 100", "msg/s", ""),
    ("sqlite_inserts_per_s", "baseline: raw sqlite3 batched inserts", "rows/s", ""),
    ("drain_events_per_s", "drain of the backlog", "events/s", "≥ 0.8x raw"),
    ("peak_rss_mb", "peak RSS while draining", "MB", "≤ 80"),
    ("p50_ms", "scan -> PUBACK p50 at 200 events/s", "ms", ""),
    ("p99_ms", "scan -> PUBACK p99 at 200 events/s", "ms", "≤ 10"),
    ("good_read_p99_ms", "scan -> good read p99 at 200 events/s", "ms", "≤ 5"),
    ("idle_cpu_percent", "idle CPU (connected, nothing to send)", "%", "≤ 1"),
    ("idle_process_cpu_percent", "agent process: idle CPU (all threads)", "%", "≤ 1"),
    ("paced_cpu_us_per_event_20", "agent process: CPU per event at 20 scans/s", "µs", "≤ 2x sat."),
    (
        "paced_cpu_us_per_event_100",
        "agent process: CPU per event at 100 scans/s",
        "µs",
        "≤ 2x sat.",
    ),
    ("saturated_cpu_us_per_event", "agent process: CPU per event, saturated", "µs", ""),
    ("floor_echo_cpu_us_per_event_20", "baseline: bare asyncio echo at 20/s", "µs", ""),
    ("floor_commit_cpu_us_per_event_20", "baseline: echo + SQLite commit at 20/s", "µs", ""),
    ("floor_commit_cpu_us_per_event_100", "baseline: echo + SQLite commit at 100/s", "µs", ""),
    ("paced_x_floor_20", "agent at 20/s / echo + commit", "x", ""),
    ("paced_x_floor_100", "agent at 100/s / echo + commit", "x", ""),
    ("e2e_x_naive", "end to end / naive", "x", "≥ 3"),
    ("e2e_x_raw", "end to end / raw publish", "x", "≥ 0.8"),
    ("drain_x_raw", "drain / raw publish", "x", "≥ 0.8"),
    *ROWS,
)


def render_table(figures: dict[str, float]) -> str:
    """The human-readable table of one run."""
    lines = [f"{'figure':<50} {'value':>12}  {'unit':<9} target", "-" * 90]
    shown = {key for key, *_ in _ROWS}
    rows = list(_ROWS) + [(k, k, "", "") for k in figures if k not in shown]
    for key, label, unit, target in rows:
        if key not in figures:
            continue
        value = figures[key]
        text = f"{value:,.2f}" if value < 100 else f"{value:,.0f}"  # noqa: PLR2004
        lines.append(f"{label:<50} {text:>12}  {unit:<9} {target}")
    return "\n".join(lines)


def render_cpu_table(figures: dict[str, float]) -> str:
    """CPU per event of the agent process on this hardware: the line rates against saturated."""
    saturated = figures.get("saturated_cpu_us_per_event")
    if not saturated:
        return ""
    lines = [
        "CPU per event of the agent process on this machine (all threads), beside the floor",
        "(a bare asyncio echo that commits each message to SQLite first, same rate, same run):",
        (
            f"{'load':<16} {'µs/event':>9} {'share of a core':>16} {'x saturated':>12}"
            f" {'floor µs':>9} {'x floor':>8}"
        ),
    ]
    for rate in LINE_RATES:
        us = figures.get(f"paced_cpu_us_per_event_{rate:g}")
        if us is not None:
            share = f"{us * rate / 1e4:.1f} %"
            floor = figures.get(f"floor_commit_cpu_us_per_event_{rate:g}")
            x_floor = f"{us / floor:.1f}x" if floor else "—"
            floor_text = f"{floor:,.0f}" if floor is not None else "—"
            lines.append(
                f"{f'{rate:g} scans/s':<16} {us:>9,.0f} {share:>16} {us / saturated:>11.1f}x"
                f" {floor_text:>9} {x_floor:>8}"
            )
    lines.append(f"{'saturated':<16} {saturated:>9,.0f} {'—':>16} {1:>11.1f}x {'':>9} {'':>8}")
    return "\n".join(lines)
