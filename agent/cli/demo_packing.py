"""The demo's labels and pallets: a simulated label printer and a packing station at the dock.

The line's printer (`labeller-1`, a `ZplPrinterSimulator` on a free port) prints each batch's
label and the pallet label of each new SSCC; its jobs are saved as `.zpl` files under the demo's
directory. Before a batch is shipped it is packed at the packing station `pack-out`:
`PACK:NEW` (the agent allocates the SSCC and prints its label), the batch's trace code, then
`PACK:CLOSE`; the dock-out scanner then ships that SSCC's pallet label (SSCC, content GTIN,
count, lot), one scan per demo tick.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from drivers.printers.zpl_sim import ZplPrinterSimulator

if TYPE_CHECKING:
    from pathlib import Path

    from agent.runtime.agent import Agent

PACKING_SCANNER = "pack-out"
PRINTER = "labeller-1"
COMPANY_PREFIX = "950110153"  # the demo's GS1 company prefix (its products' and pallets')
GS = "\x1d"
MAX_WAIT = 20  # demo ticks a packed pallet may take to show as closed


class Typist(Protocol):
    """A demo scanner: it types one scan."""

    def scan(self, text: str) -> None:
        """Type one scan."""
        ...


def packing_config(dev: Path, printer_url: str) -> str:
    """The config text of the demo's printer, SSCC numbering and packing station."""
    return f"""
[[printers]]
id = "{PRINTER}"
kind = "zpl"
url = "{printer_url}"
print_on = "batch.completed"

[packing]
company_prefix = "{COMPANY_PREFIX}"
extension_digit = 0

[[scanners]]
id = "{PACKING_SCANNER}"
role = "packing"
port = "{dev / PACKING_SCANNER}"
printer = "{PRINTER}"
"""


def demo_printer(workdir: Path) -> ZplPrinterSimulator:
    """The demo's label printer; each job it takes is saved under `workdir/labels`."""
    printer = ZplPrinterSimulator()
    saved = workdir / "labels"
    saved.mkdir(parents=True, exist_ok=True)

    def save(job: bytes) -> None:
        (saved / f"job-{len(printer.jobs):04d}.zpl").write_bytes(job)

    printer.on_job = save
    return printer


class DockPacking:
    """Packs each completed batch on its own pallet, then hands the pallet over for shipping."""

    def __init__(self, agent: Agent, packer: Typist) -> None:
        self._agent = agent
        self._packer = packer
        self._packed: set[str] = set()
        self._steps: list[str] = []  # what the packer types next
        self._batch: dict[str, Any] | None = None
        self._waited = 0

    def next_shipment(self) -> str | None:
        """One packing scan (None), or the label of a closed pallet to ship."""
        if self._steps:
            self._packer.scan(self._steps.pop(0))
            return None
        if self._batch is not None:
            return self._shipped()
        batch = self._unpacked()
        if batch is None:
            return None
        self._batch = batch
        self._packer.scan("PACK:NEW")
        self._steps = [str(batch["trace_code"]), "PACK:CLOSE"]
        return None

    def _unpacked(self) -> dict[str, Any] | None:
        for tracker in self._agent.batch_lines:
            for batch in reversed(tracker.recent):
                code = str(batch["trace_code"])
                if code not in self._packed:
                    self._packed.add(code)
                    found: dict[str, Any] = batch
                    return found
        return None

    def _shipped(self) -> str | None:
        batch = self._batch
        assert batch is not None
        code = str(batch["trace_code"])
        sscc = self._sscc_of(code)
        if sscc is None:  # not closed yet (the station is still reading): ask again later
            self._waited += 1
            if self._waited > MAX_WAIT:  # the pallet was refused: that batch is not shipped
                self._batch, self._waited = None, 0
            return None
        self._batch, self._waited = None, 0
        gtin = code.split("(01)")[1][:14]
        count = batch.get("quantity") or 1
        return f"]C100{sscc}02{gtin}37{count}{GS}10{batch['lot']}"

    def _sscc_of(self, code: str) -> str | None:
        """The SSCC the packing station's history put `code` on (None: not yet)."""
        for station in self._agent.packing:
            last = station.last_closed
            if last is not None and any(
                f"(21){c.get('serial')}" in code for c in last.get("children", [])
            ):
                return str(last["sscc"])
        return None
