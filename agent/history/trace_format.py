"""How a trace reads: a plain-text table for people, indented JSON for machines.

Histories written before the text rule (`agent.text`) may hold control characters, bidi
overrides and the like: both forms escape them, never print them raw to a terminal.
"""

from __future__ import annotations

import json
from typing import Any

from agent.text import json_shown, shown_tree


def dump_json(value: object) -> str:
    """Indented JSON, printable non-ASCII kept, every other character escaped; a final newline."""
    return json_shown(json.dumps(value, ensure_ascii=False, indent=2)) + "\n"


def _where(event: dict[str, Any]) -> str:
    return f"{event.get('site')}/{event.get('node')} {event.get('source')}"


def _ident(item: dict[str, Any]) -> str:
    parts = [str(item["gtin"])] if item.get("gtin") else []
    parts += [f"{label} {item[key]}" for key, label in _IDENTS if item.get(key)]
    return "  ".join(parts) or str(item.get("raw", "?"))


_IDENTS = (("lot", "lot"), ("serial", "serial"), ("sscc", "sscc"))


def render_table(trace: dict[str, Any], *, scope: str = "this node") -> str:
    """The trace as aligned text: one block per batch, then the events that matched.

    `scope` is where the history comes from, as the text says it ("any node" for the plant).
    """
    trace = shown_tree(trace)
    matched = trace["matched"]
    lines = [f"Trace of {trace['query']} (matched {matched['kind']} {matched['value']})", ""]
    if not trace["batches"]:
        lines.append(f"No batch of {scope} is linked to it.")
    for batch in trace["batches"]:
        lines += _batch_lines(batch, scope)
    for pallet in trace.get("pallets") or []:
        lines += _pallet_lines(pallet)
    lines.append(f"Matching events ({len(trace['events'])}):")
    lines += [
        f"  {e['time']}  {e['type']:<17} {_where(e)}  {_ident(e.get('data', {}))}"
        for e in trace["events"]
    ]
    if trace.get("truncated"):
        lines.append("(some keys index more events than shown: the list is cut)")
    return "\n".join(lines) + "\n"


def _batch_lines(batch: dict[str, Any], scope: str) -> list[str]:
    title = batch.get("trace_code") or f"lot {batch.get('lot')} (open, not completed yet)"
    params = batch.get("params") or {}
    rows = [
        ("product", f"{batch.get('gtin')}  lot {batch.get('lot')}  serial {batch.get('serial')}"),
        ("work order", batch.get("work_order") or "-"),
        ("line", f"{batch.get('site')}/{batch.get('node')} {batch.get('line')}"),
        ("shift", batch.get("shift") or "-"),
        ("operator", batch.get("operator") or "-"),
        ("started", batch.get("started") or "-"),
        ("completed", batch.get("completed") or "-"),
        ("quantity", "-" if batch.get("quantity") is None else f"{batch['quantity']} (PLC)"),
        ("parameters", ", ".join(f"{k}={v}" for k, v in params.items()) or "-"),
    ]
    lines = [f"Batch {title}"] + [f"  {k:<11} {v}" for k, v in rows]
    lines.append(f"  materials ({len(batch['materials'])})")
    for m in batch["materials"]:
        lines.append(f"    {_ident(m)}")
        lines += [f"      consumed {c['time']} at {_where(c)}" for c in m["consumed"]]
        lines += [f"      received {r['time']} at {_where(r)}  {_ident(r)}" for r in m["received"]]
        if not m["received"]:
            lines.append(f"      received: not scanned on {scope}")
    lines.append(f"  shipments ({len(batch['shipments'])})")
    for s in batch["shipments"]:
        count = f"  {s['quantity']} unit(s)" if s.get("quantity") else ""
        lines.append(f"    {s['time']} at {_where(s)}  {_ident(s)}{count}")
    packed = batch.get("packed_into") or []
    lines.append(f"  packed into ({len(packed)})")
    lines += [f"    SSCC {sscc}" for sscc in packed]
    rec = batch.get("reconciliation")
    if rec is not None:
        lines.append(
            f"  reconciliation: {rec['status']}: PLC {rec['plc_quantity']}, "
            f"{rec['codes_stamped']} code(s) stamped, {rec['units_shipped']} unit(s) shipped "
            f"in {rec['shipments']} scan(s), {rec.get('units_packed', 0)} unit(s) packed"
        )
        lines += [f"    ! {d}" for d in rec["discrepancies"]]
    lines.append("")
    return lines


def _pallet_lines(pallet: dict[str, Any]) -> list[str]:
    lines = [f"Pallet SSCC {pallet['sscc']}", f"  children ({pallet['count']})"]
    for child in pallet["children"]:
        lines.append(f"    {_ident(child)}")
        lines += [f"      from batch {b['trace_code']}" for b in child.get("batches") or []]
        if child.get("kind") != "sscc" and not child.get("batches"):
            lines.append("      from batch: not made on this node")
    lines.append("")
    return lines
