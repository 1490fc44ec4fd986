"""A plant report in the format asked: the agent's csv, json and epcis, and FSMA 204.

The report itself is the agent's (`agent.history.reports.lot_report`, over the plant store by
`agent.plant.history.plant_report`); csv, json and EPCIS 2.0 are rendered as the agent renders
them, `fsma204` by `agent.plant.fsma204`.
"""

from __future__ import annotations

from typing import Any

from agent.history.reports import render_report
from agent.plant.fsma204 import fsma204_csv

MEDIA_TYPES = {
    "csv": ("text/csv; charset=utf-8", "csv"),
    "fsma204": ("text/csv; charset=utf-8", "csv"),
    "json": ("application/json", "json"),
    "epcis": ("application/ld+json", "jsonld"),
}
"""Each format's media type and file extension (for downloads)."""


def render_plant_report(report: dict[str, Any], fmt: str, *, timezone: str | None) -> str:
    """The report as text in `fmt` (csv, json, epcis or fsma204)."""
    if fmt == "fsma204":
        return fsma204_csv(report["events"], timezone=timezone)
    return render_report(report, fmt, timezone=timezone)
