"""The node's label printers, built from `[[printers]]`: one `LabelPrinter` each.

A printer that labels batches labels those of the line it names, or of the node's only line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.labels import LabelError
from agent.printing.checks import printer_templates
from agent.printing.worker import LabelPrinter
from drivers.base import DriverError
from sync.base import SyncError

if TYPE_CHECKING:
    from collections.abc import Callable

    from agent.alarms import AlarmBoard
    from agent.config.root import Config
    from agent.events import EventFactory
    from agent.printing.worker import PrintStore

PRINTER_ERRORS: tuple[type[Exception], ...] = (DriverError, SyncError, LabelError)
"""A printer task's own error family (one warning line when it fails and restarts)."""


def build_printers(
    config: Config,
    *,
    store: PrintStore,
    factory: EventFactory,
    alarms: AlarmBoard,
    on_change: Callable[[], None] | None = None,
) -> list[LabelPrinter]:
    """One `LabelPrinter` per configured printer (templates loaded: `TemplateError` if bad)."""
    lines = [plc.id for plc in config.lines]
    only = lines[0] if len(lines) == 1 else None
    return [
        LabelPrinter(
            cfg,
            templates=printer_templates(cfg),
            store=store,
            factory=factory,
            alarms=alarms,
            line=cfg.line or only,
            on_change=on_change,
        )
        for cfg in config.printers
    ]
