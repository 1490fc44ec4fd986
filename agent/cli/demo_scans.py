"""The demo's scanners and what they read, fed by `ScanFeeder` at the demo's rate (`feed`).

Virtual serial scanners on ptys and a keyboard-wedge one on a FIFO, with realistic GS1 data:
material lots received and consumed, pallets of completed batches shipped, now and then a
smudged label. `demo_folder` prepares the folder both demos (one agent, the plant) run in.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sys
import tty
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from biip.checksums import gs1_standard_check_digit

from drivers.simulators.hid_scanner import VirtualHidScanner

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from agent.runtime.agent import Agent

PRODUCT_GTIN = "09501101530003"
COMPANY = "950110153"  # the GS1 company prefix of the demo's products and pallets
MATERIALS = {"sugar": "0950110153001", "bottle": "0950110153002", "cap": "0950110153003"}
GS = "\x1d"
# How the simulated line's scans are spread: received at the dock, consumed at the line,
# shipped at the outbound dock, and the rest smudged labels.
RECEIVE_UP_TO = 0.3
CONSUME_UP_TO = 0.75
SHIP_UP_TO = 0.95


def with_check_digit(digits: str) -> str:
    """`digits` with its GS1 check digit."""
    return digits + str(gs1_standard_check_digit(digits))


class VirtualScanner:
    """A pseudo-terminal pair: the agent opens `link`; the demo types scans on the other end."""

    def __init__(self, link: Path) -> None:
        controller, device = os.openpty()
        tty.setraw(controller)
        tty.setraw(device)
        self.controller, self.device = controller, device
        link.unlink(missing_ok=True)
        link.symlink_to(os.ttyname(device))
        self.link = link

    def scan(self, text: str) -> None:
        """Type one scan, CR LF terminated; replies from the agent are drained and ignored."""
        os.write(self.controller, text.encode() + b"\r\n")
        os.set_blocking(self.controller, False)
        with contextlib.suppress(BlockingIOError):
            os.read(self.controller, 4096)
        os.set_blocking(self.controller, True)

    def close(self) -> None:
        """Unplug."""
        for fd in (self.controller, self.device):
            with contextlib.suppress(OSError):
                os.close(fd)


DemoScanner = VirtualScanner | VirtualHidScanner


def virtual_scanners(dev: Path, extra: tuple[str, ...] = ()) -> dict[str, DemoScanner]:
    """The demo's scanners by id: three (and `extra`) on ptys, `dock-in-hid` on a FIFO.

    The keyboard-wedge one is left out where the directory cannot hold a FIFO.
    """
    scanners: dict[str, DemoScanner] = {
        name: VirtualScanner(dev / name) for name in ("dock-in", "line-feed", "dock-out", *extra)
    }
    for stale in dev.glob("dock-in-hid.fifo*"):  # left by a demo that was killed
        stale.unlink(missing_ok=True)
    hid = VirtualHidScanner(dev / "dock-in-hid", keymap="us", control="ctrl")
    try:
        hid.plug()
    except OSError as exc:
        hid.unplug()
        print(f"(no HID scanner in this demo: {dev}: {exc.strerror or exc})")  # noqa: T201
    else:
        scanners["dock-in-hid"] = hid
    return scanners


def unplug(scanners: dict[str, DemoScanner]) -> None:
    """Close the ptys; remove the HID scanner's link and FIFO."""
    for scanner in scanners.values():
        if isinstance(scanner, VirtualHidScanner):
            scanner.unplug()
        else:
            scanner.close()


class ScanFeeder:
    """Realistic scans: material lots received and consumed, pallets and batch codes shipped."""

    def __init__(
        self,
        agent: Agent,
        scanners: dict[str, DemoScanner],
        seed: int,
        *,
        shipments: Callable[[], str | None] | None = None,
    ) -> None:
        """Scans for `agent`'s line, typed into `scanners`.

        `shipments` says what the outbound dock scans next (None: nothing now); without it a
        completed batch is shipped as a pallet straight away.
        """
        self._agent = agent
        self._shipments = shipments
        self._scanners = scanners
        self._random = random.Random(seed)  # noqa: S311 (demo data)
        self._received: list[str] = []
        self._pallet = 0
        self._lot_no = 0
        self._shipped: set[str] = set()

    def _material_label(self) -> str:
        name = self._random.choice(list(MATERIALS))
        gtin = with_check_digit(MATERIALS[name])
        self._lot_no += 1
        expiry = (datetime.now(UTC) + timedelta(days=self._random.randint(60, 400))).strftime(
            "%y%m%d"
        )
        return f"]d201{gtin}17{expiry}10M{self._lot_no:05d}{GS}21{self._random.randint(1, 99999)}"

    def step(self) -> None:
        """One scan somewhere on the line."""
        roll = self._random.random()
        if roll < RECEIVE_UP_TO or not self._received:
            label = self._material_label()
            self._received.append(label)
            # every other delivery is received with the keyboard-wedge scanner, if there is one
            hid = self._scanners.get("dock-in-hid") if self._lot_no % 2 else None
            with contextlib.suppress(BlockingIOError):  # its FIFO full: the agent is away
                (hid or self._scanners["dock-in"]).scan(label)
        elif roll < CONSUME_UP_TO:
            self._scanners["line-feed"].scan(self._random.choice(self._received[-6:]))
        elif roll < SHIP_UP_TO and (pallet := self._next_shipment()) is not None:
            self._scanners["dock-out"].scan(pallet)
        elif roll < SHIP_UP_TO:
            self._scanners["line-feed"].scan(self._random.choice(self._received[-6:]))
        else:  # a smudged label: the check digit does not match
            self._scanners["dock-in"].scan("]C10109501101530004")

    def _next_shipment(self) -> str | None:
        """The pallet label of the oldest completed batch not shipped yet (each ships once).

        Or what `shipments` says, when given (the one-agent demo packs its pallets first).

        SSCC (00), the GTIN of the contents (02), their count (37) and lot (10): what the
        agent's reconciliation and forward trace read.
        """
        if self._shipments is not None:
            return self._shipments()
        for tracker in self._agent.batch_lines:
            for batch in reversed(tracker.recent):
                code = str(batch["trace_code"])
                if code in self._shipped:
                    continue
                self._shipped.add(code)
                gtin = code.split("(01)")[1][:14]
                self._pallet += 1
                sscc = with_check_digit(f"0{COMPANY}{self._pallet:07d}")
                count = batch.get("quantity") or 1
                return f"]C100{sscc}02{gtin}37{count}{GS}10{batch['lot']}"
        return None


async def demo_folder(workdir: Path) -> Path:
    """The demo's folder, absolute, with `dev/` and the admin password file (`demo`)."""
    workdir = await asyncio.to_thread(workdir.resolve)
    (workdir / "dev").mkdir(parents=True, exist_ok=True)
    password = workdir / "admin.pw"
    if not password.exists():
        password.write_text("demo\n")
        password.chmod(0o600)
    return workdir


async def feed(
    stop: asyncio.Event,
    feeder: ScanFeeder,
    running: Sequence[asyncio.Task[None]],
    summary: Callable[[], str],
    *,
    rate: float,
    quiet: bool,
) -> None:
    """Scan at `rate` until `stop` is set or a `running` task ends; a summary line a second.

    The summary rewrites one line on a terminal; a log gets plain lines.
    """
    ticks = 0
    terminal = sys.stdout.isatty()
    while not stop.is_set() and not any(task.done() for task in running):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0 / rate)
        if stop.is_set():
            break
        feeder.step()
        ticks += 1
        if not quiet and ticks % max(1, int(rate)) == 0:
            text = summary()
            sys.stdout.write(f"\r{text} " if terminal else f"{text}\n")
            sys.stdout.flush()
    if not quiet and terminal:
        sys.stdout.write("\n")
