"""One text rule for every free-text field, and escaped text wherever stored text is printed.

Issue 11, finding 8: a `WO:` barcode bypassed the 64-character cap, PLC string registers kept
ESC and U+202E and `lineside trace` printed them raw, the page took `"1000"` as a quantity.
Real parts: pty scanners, the pymodbus filling-line PLC, mosquitto, real outbox files.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import sys
from typing import TYPE_CHECKING, Any

import pytest
from agent_harness import running_agent, write_config
from pydantic import ValidationError
from support import subscriber, wait_until
from test_e2e_batches import GTIN, complete, finish_handshake, tcp
from trace_history import LOT, complete_batch, write_chain

from agent.cli.main import main
from agent.events import EventFactory
from agent.text import (
    EscapingFormatter,
    TextRefused,
    checked,
    forbidden_character,
    json_shown,
    shown,
)
from agent.web.app import WorkOrderRequest
from drivers.plcs.registers import RegisterAddress
from drivers.simulators.modbus_plc import FillingLineSimulator
from sync.outbox import Outbox

if TYPE_CHECKING:
    from pathlib import Path

    from support import Broker, Pty

NODE = "lineside/v1/plant-a/line-3"
HOSTILE = "A\x1b[2J\u202eB\x85\u2028C\x7f"  # ESC + clear screen, bidi override, NEL, LS, DEL
HOSTILE_SHOWN = "A\\x1b[2J\\u202eB\\x85\\u2028C\\x7f"


# --- the rule ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("WO-1", None),
        ("Bestellung-ä-工单", None),
        ("a b", None),
        ("a\tb", "control character 0x09 at position 1"),
        ("\x00", "control character 0x00 at position 0"),
        ("ab\x9b", "control character 0x9b at position 2"),
        ("a\u202eb", "non-printing character U+202E at position 1"),
        ("a\u200db", "non-printing character U+200D at position 1"),
        ("a\ue000", "non-printing character U+E000 at position 1"),
        ("a\u0378", "non-printing character U+0378 at position 1"),
        ("a\u2029", "non-printing character U+2029 at position 1"),
        ("a\ud800", "non-printing character U+D800 at position 1"),
    ],
)
def test_printable_characters_only(text: str, problem: str | None) -> None:
    assert forbidden_character(text) == problem


def test_a_refusal_names_the_field_and_the_reason() -> None:
    assert checked("operator", "OP-7", max_length=32) == "OP-7"
    with pytest.raises(TextRefused, match=r"^operator: longer than 32 characters \(33\)$"):
        checked("operator", "x" * 33, max_length=32)
    with pytest.raises(TextRefused, match=r"^work_order: empty$"):
        checked("work_order", "", max_length=64)
    assert forbidden_character("01\x1d10", allow="\x1d") is None  # a GS1 scan keeps its GS


def test_shown_text_and_json_escape_every_non_printable_character() -> None:
    assert shown(HOSTILE) == HOSTILE_SHOWN
    assert shown("plain ASCII \\ text") == "plain ASCII \\ text"
    assert shown("a\U000e0001b") == "a\\U000e0001b"
    dumped = json_shown(json.dumps({"k": HOSTILE + "\U000f0000"}, ensure_ascii=False, indent=2))
    assert dumped.isascii()
    assert json.loads(dumped) == {"k": HOSTILE + "\U000f0000"}  # the same data, escaped
    assert json_shown('{"k": "ä"}') == '{"k": "ä"}'


def test_log_lines_never_carry_raw_control_characters() -> None:
    formatter = EscapingFormatter("%(levelname)s %(message)s")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "command %s", ("a\nINFO b",), None)
    assert formatter.format(record) == "INFO command a\\x0aINFO b"
    try:
        raise ValueError("bad \x1b[2J")  # noqa: TRY301
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    lines = formatter.format(record).splitlines()
    assert lines[0] == "ERROR failed"
    assert lines[-1] == "ValueError: bad \\x1b[2J"


# --- the page's action ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"work_order": "WO\x1b"}, "work_order"),
        ({"work_order": "W\u202eO"}, "work_order"),
        ({"work_order": "W" * 65}, "work_order"),
        ({"lot": "L#"}, "lot"),
        ({"lot": "L" * 21}, "lot"),
        ({"planned_qty": "1000"}, "planned_qty"),
        ({"planned_qty": True}, "planned_qty"),
        ({"planned_qty": 1000.0}, "planned_qty"),
        ({"planned_qty": 10**400}, "planned_qty"),
    ],
)
def test_the_pages_work_order_follows_the_same_rule(body: dict[str, Any], where: str) -> None:
    with pytest.raises(ValidationError) as refused:
        WorkOrderRequest.model_validate_json(json.dumps(body))
    assert [e["loc"] for e in refused.value.errors()] == [(where,)]
    accepted = WorkOrderRequest.model_validate_json('{"work_order": "WO-1", "planned_qty": 5}')
    assert accepted.planned_qty == 5


# --- scans and PLC strings on a running agent ----------------------------------------------


LABEL = RegisterAddress.parse("holding:130:string:16")


def plc(sim: FillingLineSimulator) -> str:
    return "\n".join(
        [
            "[line]",
            f'gtin = "{GTIN}"',
            "[[plcs]]",
            'id = "filler"',
            tcp(sim),
            "poll_ms = 10",
            "[plcs.batch]",
            'trigger = "coil:0"',
            'quantity = "holding:100:uint32"',
            'ack = "coil:1"',
            "[plcs.params]",
            f'label = "{LABEL}"',
            "",
        ]
    )


async def test_scanned_work_orders_and_badges_and_plc_strings_follow_the_rule(
    tmp_path: Path, broker: Broker, pty: Pty
) -> None:
    async with FillingLineSimulator(port=0, auto=False, seed=3) as sim:
        config = write_config(tmp_path, broker, {"line-feed": ("line", pty)}, extra=plc(sim))
        await sim.set_value(LABEL, HOSTILE[:10])  # 16 bytes of UTF-8
        async with subscriber(broker, f"{NODE}/#") as got, running_agent(config) as agent:
            tracker = agent.batch_lines.named(None)

            def rejected() -> list[str]:
                found = got.payloads(lambda t: t.endswith("/scan.rejected"))
                return [e["data"]["reason"] for e in found]

            for scan, reason in [
                (b"WO:" + b"W" * 65, "work_order: longer than 64 characters (65)"),
                ("WO:WO\u202e17".encode(), "non-printing character U+202E at position 5"),
                (b"OP:" + b"7" * 33, "operator: longer than 32 characters (33)"),
            ]:
                pty.write(scan + b"\r\n")
                await got.wait_for(lambda _, r=reason: r in rejected())
                assert pty.read_available() == b"\x15"  # NAK
            pty.write(b"WO:" + b"W" * 64 + b"\r\n")
            pty.write(b"OP:" + b"7" * 32 + b"\r\n")
            await wait_until(lambda: tracker.operator == "7" * 32, what="badge")
            assert tracker.work_order.work_order == "W" * 64
            await complete(sim, quantity=3)
            await finish_handshake(sim, tracker, 1)
            await got.wait_for(lambda g: bool(g.payloads(lambda t: t.endswith("/batch.completed"))))
            [done] = got.payloads(lambda t: t.endswith("/batch.completed"))
            assert done["data"]["params"]["label"] == shown(HOSTILE[:10])
            assert agent.lines[0].last_values["param:label"] == shown(HOSTILE[:10])
        lot = str(done["data"]["lot"])
    assert await asyncio.to_thread(main, ["trace", "-c", str(config), lot]) == 0


# --- stored text printed by the CLI --------------------------------------------------------


async def test_trace_and_reports_escape_text_from_old_histories(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    config = tmp_path / "lineside.toml"
    config.write_text(
        f'[agent]\nsite = "plant-a"\nnode = "line-3"\ndata_dir = "{data_dir}"\n'
        '[[destinations]]\nname = "b"\nkind = "mqtt"\nurl = "mqtt://127.0.0.1:1"\n'
    )
    data_dir.mkdir()
    async with Outbox(data_dir / "outbox.db") as outbox:
        await write_chain(outbox)
        old = await complete_batch(outbox, EventFactory("plant-a", "line-3"), serial="000002")
        await outbox.append(
            EventFactory("plant-a", "line-3").draft(
                "batch.started",
                "plc:filler",
                {"work_order": HOSTILE, "gtin": GTIN, "lot": LOT, "operator": HOSTILE},
                keys=[("lot", LOT)],
            )
        )
    with_hostile = HOSTILE + "\U000e0001"
    # the batch as an agent before the rule could have stored it: raw in free text and PLC strings
    db = sqlite3.connect(data_dir / "outbox.db")
    with db:
        payload = json.loads(
            db.execute("SELECT payload FROM events WHERE seq = ?", (old.seq,)).fetchone()[0]
        )
        payload["data"]["operator"] = with_hostile
        payload["data"]["params"] = {"label": with_hostile}
        db.execute(
            "UPDATE events SET payload = ? WHERE seq = ?",
            (json.dumps(payload, ensure_ascii=False).encode(), old.seq),
        )
    db.close()
    code = payload["data"]["trace_code"]
    assert await asyncio.to_thread(main, ["trace", "-c", str(config), code]) == 0
    table = capsys.readouterr().out
    assert f"operator    {shown(with_hostile)}" in table
    assert f"label={shown(with_hostile)}" in table
    assert await asyncio.to_thread(main, ["trace", "-c", str(config), code, "--json"]) == 0
    out = capsys.readouterr().out
    assert forbidden_character(out, allow="\n") is None
    assert json.loads(out)["batches"][0]["operator"] == with_hostile
    for fmt in ("csv", "json", "epcis"):
        argv = ["report", "-c", str(config), "--lot", LOT, "--format", fmt]
        assert await asyncio.to_thread(main, argv) == 0
        out = capsys.readouterr().out
        assert forbidden_character(out, allow="\r\n") is None, fmt
