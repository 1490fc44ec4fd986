"""A lot's chain as an EPCIS 2.0 JSON-LD `EPCISDocument` (GS1 EPCIS 2.0 / CBV 2.0).

Mapping of Lineside events (every other type is left out: it is not a supply-chain event):

- `goods.received` → ObjectEvent, action OBSERVE, bizStep `receiving`, disposition
  `in_progress`;
- `batch.completed` → TransformationEvent, bizStep `commissioning`, disposition `active`:
  inputs the consumed material (lots as `inputQuantityList`, items identified only by serial or
  SSCC as `inputEPCList`), outputs the batch's own code (`outputEPCList`) and its lot with the
  PLC quantity (`outputQuantityList`); a batch without scanned material has no inputs, so it
  carries a `transformationID` (`urn:lineside:SITE:NODE:batch:LOT`), as EPCIS then requires;
- `goods.shipped` → ObjectEvent, action OBSERVE, bizStep `shipping`, disposition `in_transit`;
- `aggregation.completed` → AggregationEvent, action ADD (`parentID` the SSCC, `childEPCs` its
  children), and `aggregation.changed` → AggregationEvent, action DELETE (`childEPCs` the
  children taken off); bizStep `packing`, disposition `in_progress`.

Identifiers are GS1 Digital Link URIs on `https://id.gs1.org`: `/00/SSCC` for a pallet,
`/01/GTIN/21/SERIAL` for a serialised item (epcList), `/01/GTIN/10/LOT` for a lot (quantityList
`epcClass`). `readPoint` is the scanner or PLC (`urn:lineside:SITE:NODE:SOURCE`), `bizLocation`
the node (`urn:lineside:SITE:NODE`); `eventTime` is in the plant's time zone with its offset;
`eventID` is the event's ULID as `urn:uuid:`. The work order is a `prodorder` business
transaction. Scans that carry no GS1 identifier (plain barcodes) cannot be expressed and are
omitted.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from ulid import ULID

from agent.events import format_time

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

CONTEXT = "https://ref.gs1.org/standards/epcis/epcis-context.jsonld"
DL_BASE = "https://id.gs1.org"


def _part(text: object) -> str:
    return quote(str(text), safe="")


def instance_uri(data: Mapping[str, Any]) -> str | None:
    """The EPC of one identified thing: an SSCC, else GTIN+serial; None if neither."""
    if data.get("sscc"):
        return f"{DL_BASE}/00/{_part(data['sscc'])}"
    if data.get("gtin") and data.get("serial"):
        return f"{DL_BASE}/01/{_part(data['gtin'])}/21/{_part(data['serial'])}"
    return None


def class_uri(data: Mapping[str, Any]) -> str | None:
    """The EPC class of a lot (GTIN+lot), or of a product (GTIN); None without a GTIN."""
    if not data.get("gtin"):
        return None
    base = f"{DL_BASE}/01/{_part(data['gtin'])}"
    return f"{base}/10/{_part(data['lot'])}" if data.get("lot") else base


def _quantity(data: Mapping[str, Any], quantity: object = None) -> dict[str, Any] | None:
    epc_class = class_uri(data)
    if epc_class is None:
        return None
    element: dict[str, Any] = {"epcClass": epc_class}
    count = data.get("quantity") if quantity is None else quantity
    if isinstance(count, int | float) and not isinstance(count, bool):
        element["quantity"] = count
    return element


def _inputs(
    materials: Sequence[Mapping[str, Any]],
) -> tuple[list[str], list[dict[str, Any]]]:
    """A batch's consumed material: items by EPC, lots by class and quantity, each once."""
    inputs: list[str] = []
    input_classes: list[dict[str, Any]] = []
    for material in materials:
        if material.get("lot") and material.get("gtin"):
            element = _quantity({"gtin": material["gtin"], "lot": material["lot"]})
            if element is not None and element not in input_classes:
                input_classes.append(element)
        elif (epc := instance_uri(material)) is not None and epc not in inputs:
            inputs.append(epc)
    return inputs, input_classes


class EpcisBuilder:
    """Builds EPCIS events from envelopes of one site, in one time zone."""

    def __init__(self, timezone: str | None) -> None:
        self._zone = ZoneInfo(timezone) if timezone else None

    def _common(self, event: Mapping[str, Any]) -> dict[str, Any]:
        moment = datetime.fromisoformat(str(event["time"]))
        local = moment.astimezone(self._zone) if self._zone else moment.astimezone()
        offset = local.strftime("%z")
        site, node = _part(event.get("site")), _part(event.get("node"))
        return {
            "eventTime": local.isoformat(timespec="milliseconds"),
            "eventTimeZoneOffset": f"{offset[:3]}:{offset[3:]}",
            "eventID": f"urn:uuid:{ULID.from_str(str(event['id'])).to_uuid()}",
            "readPoint": {"id": f"urn:lineside:{site}:{node}:{_part(event.get('source'))}"},
            "bizLocation": {"id": f"urn:lineside:{site}:{node}"},
        }

    def object_event(
        self, event: Mapping[str, Any], biz_step: str, disposition: str
    ) -> dict[str, Any] | None:
        """An OBSERVE ObjectEvent of a scan; None if the scan carries no GS1 identifier."""
        data = event["data"]
        epc = instance_uri(data)
        quantity = _quantity(data)
        if epc is None and quantity is None:
            return None
        out: dict[str, Any] = {"type": "ObjectEvent", **self._common(event), "action": "OBSERVE"}
        out["epcList"] = [epc] if epc is not None else []
        if quantity is not None and (epc is None or data.get("sscc")):
            out["quantityList"] = [quantity]  # a pallet's content, or a lot read without serial
        out["bizStep"], out["disposition"] = biz_step, disposition
        return out

    def transformation_event(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """The TransformationEvent of a completed batch: consumed inputs → the batch."""
        data = event["data"]
        inputs, input_classes = _inputs(data.get("materials") or [])
        out: dict[str, Any] = {"type": "TransformationEvent", **self._common(event)}
        if inputs:
            out["inputEPCList"] = inputs
        if input_classes:
            out["inputQuantityList"] = input_classes
        if not inputs and not input_classes:  # no material scanned: EPCIS then wants an id
            site, node = _part(event.get("site")), _part(event.get("node"))
            out["transformationID"] = f"urn:lineside:{site}:{node}:batch:{_part(data.get('lot'))}"
        own = instance_uri({"gtin": data.get("gtin"), "serial": data.get("serial")})
        if own is not None:
            out["outputEPCList"] = [own]
        lot = _quantity({"gtin": data.get("gtin"), "lot": data.get("lot")}, data.get("quantity"))
        if lot is not None:
            out["outputQuantityList"] = [lot]
        out["bizStep"], out["disposition"] = "commissioning", "active"
        if data.get("work_order"):
            out["bizTransactionList"] = [
                {
                    "type": "prodorder",
                    "bizTransaction": f"urn:lineside:wo:{_part(data['work_order'])}",
                }
            ]
        return out

    def aggregation_event(self, event: Mapping[str, Any], action: str) -> dict[str, Any]:
        """The AggregationEvent of a pallet closed (ADD) or of children taken off it (DELETE)."""
        data = event["data"]
        children = data.get("children") if action == "ADD" else data.get("removed")
        epcs = [epc for c in children or [] if (epc := instance_uri(c)) is not None]
        return {
            "type": "AggregationEvent",
            **self._common(event),
            "parentID": instance_uri({"sscc": data.get("sscc")}),
            "childEPCs": list(dict.fromkeys(epcs)),
            "action": action,
            "bizStep": "packing",
            "disposition": "in_progress",
        }

    def event(self, event: Mapping[str, Any]) -> dict[str, Any] | None:
        """The EPCIS event of one Lineside event, None for types EPCIS does not carry."""
        match event["type"]:
            case "goods.received":
                return self.object_event(event, "receiving", "in_progress")
            case "goods.shipped":
                return self.object_event(event, "shipping", "in_transit")
            case "batch.completed":
                return self.transformation_event(event)
            case "aggregation.completed":
                return self.aggregation_event(event, "ADD")
            case "aggregation.changed":
                return self.aggregation_event(event, "DELETE")
            case _:
                return None


def epcis_document(
    events: Sequence[Mapping[str, Any]], *, timezone: str | None, created: datetime | None = None
) -> dict[str, Any]:
    """An `EPCISDocument` of the given envelopes (in the order given)."""
    builder = EpcisBuilder(timezone)
    body = [e for e in (builder.event(ev) for ev in events) if e is not None]
    return {
        "@context": [CONTEXT],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": format_time(created or datetime.now(UTC)),
        "epcisBody": {"eventList": body},
    }
