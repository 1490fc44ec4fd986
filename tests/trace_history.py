"""A small, realistic event history for trace, report and EPCIS tests.

Scans are interpreted exactly as a station does (`agent.scanning.interpret`), batches carry
the fields and keys `agent.batches.tracker` gives them, and everything goes through a real `Outbox`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.cli.trace_bench import sscc
from agent.config.scanners import StationRole
from agent.events import EventFactory
from agent.scanning.interpret import Material, Receipt, Rejected, Shipment, StationRules, interpret

if TYPE_CHECKING:
    from sync.base import Envelope
    from sync.outbox import Outbox

PRODUCT = "09501101530003"
MATERIAL_1 = "09501101530010"
MATERIAL_2 = "09501101530027"
LOT = "LINE32611241"
SERIAL = "000001"
TRACE_CODE = f"(01){PRODUCT}(10){LOT}(11)261124(21){SERIAL}"
PALLET_1, PALLET_2, PALLET_OUT = sscc(101), sscc(102), sscc(201)


def pallet_label(code: str, gtin: str, lot: str, count: int) -> bytes:
    """A GS1-128 logistic label: SSCC, content GTIN, count, lot."""
    return f"]C100{code}02{gtin}37{count}\x1d10{lot}".encode()


def carton_label(gtin: str, lot: str, serial: str) -> bytes:
    """A GS1 DataMatrix on a carton: GTIN, lot, serial."""
    return f"]d201{gtin}10{lot}\x1d21{serial}".encode()


@dataclass
class Chain:
    """What `write_chain` committed."""

    envelopes: list[Envelope]
    factory: EventFactory


async def scan(
    outbox: Outbox,
    factory: EventFactory,
    raw: bytes,
    role: StationRole,
    source: str,
    *,
    batch: str | None = None,
) -> Envelope:
    """Commit one scan as a station would."""
    result = interpret(raw, StationRules(role))
    assert isinstance(result, Receipt | Shipment | Material | Rejected)
    data: dict[str, Any] = dict(result.data)
    keys = result.keys
    if result.type == "material.consumed":
        data["batch"] = batch
        keys += (("batch", batch),) if batch else ()
    return await outbox.append(factory.draft(result.type, source, data, keys=keys))


async def complete_batch(
    outbox: Outbox,
    factory: EventFactory,
    *,
    lot: str = LOT,
    serial: str = SERIAL,
    quantity: int | None = 120,
    materials: list[dict[str, Any]] | None = None,
) -> Envelope:
    """Commit a batch.completed as `agent.batches.tracker` makes it."""
    code = f"(01){PRODUCT}(10){lot}(11)261124(21){serial}"
    data = {
        "trace_code": code,
        "digital_link": f"https://id.gs1.org/01/{PRODUCT}/10/{lot}/21/{serial}?11=261124",
        "work_order": "WO-7",
        "gtin": PRODUCT,
        "lot": lot,
        "serial": serial,
        "quantity": quantity,
        "params": {"fill_temp_c": 4.1, "line_speed": 118},
        "materials": materials or [],
        "started": "2026-11-24T06:10:00.000Z",
        "completed": "2026-11-24T06:40:00.000Z",
        "shift": "early",
        "operator": "OP-7",
    }
    keys = [
        ("trace_code", code),
        ("lot", lot),
        ("gtin_lot", f"{PRODUCT}|{lot}"),
        ("serial", f"{PRODUCT}|{serial}"),
        ("work_order", "WO-7"),
    ]
    return await outbox.append(factory.draft("batch.completed", "plc:filler", data, keys=keys))


async def write_chain(outbox: Outbox, *, ship: int = 100) -> Chain:
    """Receive two material lots, consume them into a batch, complete it, ship a pallet."""
    factory = EventFactory("plant-a", "line-3")
    inbound, line, outbound = StationRole.INBOUND, StationRole.LINE, StationRole.OUTBOUND
    envelopes = [
        await scan(
            outbox,
            factory,
            pallet_label(PALLET_1, MATERIAL_1, "MA", 40),
            inbound,
            "scanner:dock-in-1",
        ),
        await scan(
            outbox,
            factory,
            pallet_label(PALLET_2, MATERIAL_2, "MB", 40),
            inbound,
            "scanner:dock-in-1",
        ),
        await outbox.append(
            factory.draft(
                "batch.started",
                "plc:filler",
                {"work_order": "WO-7", "gtin": PRODUCT, "lot": LOT},
                keys=[("lot", LOT), ("work_order", "WO-7")],
            )
        ),
    ]
    materials = []
    for gtin, lot, serial in (
        (MATERIAL_1, "MA", "C1"),
        (MATERIAL_2, "MB", "C2"),
        (MATERIAL_1, "MA", "C3"),
    ):
        envelopes.append(
            await scan(
                outbox, factory, carton_label(gtin, lot, serial), line, "scanner:line-1", batch=LOT
            )
        )
        materials.append({"gtin": gtin, "lot": lot, "serial": serial})
    envelopes.append(await complete_batch(outbox, factory, materials=materials))
    envelopes.append(
        await scan(
            outbox,
            factory,
            pallet_label(PALLET_OUT, PRODUCT, LOT, ship),
            outbound,
            "scanner:dock-out-1",
        )
    )
    return Chain(envelopes, factory)
