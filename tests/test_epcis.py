"""EPCIS 2.0 output: GS1's own JSON schema accepts it, and the mapping says what it should."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs installed
import pytest
from trace_history import (
    LOT,
    MATERIAL_1,
    MATERIAL_2,
    PALLET_1,
    PALLET_OUT,
    PRODUCT,
    SERIAL,
    write_chain,
)

from agent.history.epcis import class_uri, epcis_document, instance_uri
from agent.history.reader import HistoryReader
from agent.history.reports import lot_report
from sync.outbox import Outbox

Validator = Any  # jsonschema.protocols.Validator (the package ships no type stubs)

SCHEMA = Path(__file__).parent / "data" / "epcis-json-schema.json"


@pytest.fixture(scope="module")
def validator() -> Validator:
    schema = json.loads(SCHEMA.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


async def chain_document(tmp_path: Path, timezone: str | None) -> dict[str, Any]:
    path = tmp_path / "outbox.db"
    async with Outbox(path) as outbox:
        await write_chain(outbox)
    async with HistoryReader(path) as history:
        report = await lot_report(history, LOT)
    assert report is not None
    return epcis_document(report["events"], timezone=timezone)


async def test_a_lot_chain_validates_against_the_gs1_schema(
    tmp_path: Path, validator: Validator
) -> None:
    document = await chain_document(tmp_path, "Asia/Shanghai")
    errors = sorted(validator.iter_errors(document), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])
    assert document["type"] == "EPCISDocument"
    assert document["schemaVersion"] == "2.0"
    events = document["epcisBody"]["eventList"]
    assert [e["type"] for e in events] == [
        "ObjectEvent",
        "ObjectEvent",
        "TransformationEvent",
        "ObjectEvent",
    ]
    # each event, also alone, is a valid EPCIS event once it has a context
    for event in events:
        assert not list(validator.iter_errors({"@context": document["@context"], **event}))


async def test_the_mapping(tmp_path: Path) -> None:
    received, _, batch, shipped = (await chain_document(tmp_path, "Asia/Shanghai"))["epcisBody"][
        "eventList"
    ]
    assert (received["bizStep"], received["disposition"]) == ("receiving", "in_progress")
    assert received["action"] == "OBSERVE"
    assert received["epcList"] == [f"https://id.gs1.org/00/{PALLET_1}"]
    assert received["quantityList"] == [
        {"epcClass": f"https://id.gs1.org/01/{MATERIAL_1}/10/MA", "quantity": 40}
    ]
    assert received["eventTimeZoneOffset"] == "+08:00"
    assert received["eventTime"].endswith("+08:00")
    assert received["eventID"].startswith("urn:uuid:")
    assert received["readPoint"] == {"id": "urn:lineside:plant-a:line-3:scanner%3Adock-in-1"}
    assert received["bizLocation"] == {"id": "urn:lineside:plant-a:line-3"}
    assert batch["bizStep"] == "commissioning"
    assert batch["inputQuantityList"] == [
        {"epcClass": f"https://id.gs1.org/01/{MATERIAL_1}/10/MA"},
        {"epcClass": f"https://id.gs1.org/01/{MATERIAL_2}/10/MB"},
    ]
    assert batch["outputEPCList"] == [f"https://id.gs1.org/01/{PRODUCT}/21/{SERIAL}"]
    assert batch["outputQuantityList"] == [
        {"epcClass": f"https://id.gs1.org/01/{PRODUCT}/10/{LOT}", "quantity": 120}
    ]
    assert batch["bizTransactionList"] == [
        {"type": "prodorder", "bizTransaction": "urn:lineside:wo:WO-7"}
    ]
    assert (shipped["bizStep"], shipped["disposition"]) == ("shipping", "in_transit")
    assert shipped["epcList"] == [f"https://id.gs1.org/00/{PALLET_OUT}"]
    ids = {e["eventID"] for e in (received, batch, shipped)}
    assert len(ids) == 3


def test_identifiers_are_escaped_digital_links() -> None:
    assert instance_uri({"gtin": PRODUCT, "serial": "A/B 1"}) == (
        f"https://id.gs1.org/01/{PRODUCT}/21/A%2FB%201"
    )
    assert class_uri({"gtin": PRODUCT}) == f"https://id.gs1.org/01/{PRODUCT}"
    assert class_uri({"lot": "X"}) is None
    assert instance_uri({"raw": "PLAIN"}) is None


def test_plain_barcodes_and_other_types_are_left_out(validator: Validator) -> None:
    base = {"id": "01JDQ2V8W7K3M5N9P0R4S6T8V0", "time": "2026-11-24T16:01:02.345Z"}
    events = [
        {
            **base,
            "type": "goods.received",
            "site": "a",
            "node": "b",
            "source": "s",
            "data": {"raw": "X"},
        },
        {**base, "type": "device.status", "data": {}},
    ]
    document = epcis_document(events, timezone="UTC")
    assert document["epcisBody"]["eventList"] == []
    assert not list(validator.iter_errors(document))
