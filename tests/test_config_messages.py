"""Config problems read as a person's sentences: each names its key, says what is wrong and
what is expected, with no pydantic wording and no follow-up line caused by another problem.

Table-driven: a bad config file → the exact lines `lineside check-config` prints (and `run`
refuses with the same lines, through the same `load_config`).
"""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from agent.batches.work_orders import WorkOrderCommand
from agent.config import Config, ConfigError, load_config
from agent.config.errors import PATTERNS
from drivers.scanners.hid import NO_BACK_CHANNEL

if TYPE_CHECKING:
    from pathlib import Path

AGENT = '[agent]\nsite = "plant-a"\nnode = "line-3"\n'
MQTT = '[[destinations]]\nname = "plant-broker"\nkind = "mqtt"\nurl = "mqtt://127.0.0.1:1883"\n'
GOOD = AGENT + MQTT
PLC = '[[plcs]]\nid = "filler"\nprotocol = "modbus-tcp"\nhost = "10.0.0.20"\n'
SCANNER = '[[scanners]]\nid = "dock-in-1"\nrole = "inbound"\nport = "/dev/ttyUSB0"\n'
FILE_DEST = '[[destinations]]\nname = "qms"\nkind = "file"\ndir = "/srv/qms"\n'
HID = (
    '[[scanners]]\nid = "dock-in-2"\nrole = "inbound"\n'
    'hid = "/dev/input/by-id/usb-scanner-event-kbd"\n'
)
MODIFIER = "modifier or lock key"
SHIFT = '[[shifts]]\nname = "early"\nstart = "06:00"\nend = "14:00"\n'
LINE_A = PLC.replace('"filler"', '"filler-a"') + '[plcs.batch]\ntrigger = "coil:0"\n'
LINE_B = PLC.replace('"filler"', '"filler-b"') + '[plcs.batch]\ntrigger = "coil:0"\n'
FEED = '[[scanners]]\nid = "feed"\nrole = "line"\nport = "/dev/ttyUSB1"\n'
NO_LINE = "so it is no line (the lines are filler-a)"
ONLY_BATCH = "only a PLC with a [plcs.batch] section is a line; add one, or remove [plcs.line]"
S7 = '[[plcs]]\nid = "labeller"\nprotocol = "s7"\nhost = "10.0.0.22"\n[plcs.batch]\n'
OPCUA = '[[plcs]]\nid = "capper"\nprotocol = "opcua"\nendpoint = "opc.tcp://10.0.0.21:4840"\n'
ENIP = '[[plcs]]\nid = "palletiser"\nprotocol = "enip"\nhost = "10.0.0.23"\n[plcs.batch]\n'
NAME_IT = "required: this node has 2 lines (filler-a, filler-b); name the one this scanner feeds"

CASES: list[tuple[str, str, list[str]]] = [
    # unknown and missing discriminators
    (
        "unknown-kind",
        AGENT + MQTT.replace('"mqtt"\n', '"mqtx"\n'),
        ["destinations[0].kind: unknown kind 'mqtx' (one of mqtt, http, file, postgres)"],
    ),
    (
        "missing-kind",
        AGENT + '[[destinations]]\nname = "erp"\nurl = "http://erp.local/in"\n',
        ["destinations[0].kind: required key is missing (one of mqtt, http, file, postgres)"],
    ),
    (
        "unknown-protocol",
        GOOD + PLC.replace("modbus-tcp", "modbus-udp"),
        [
            (
                "plcs[0].protocol: unknown protocol 'modbus-udp' "
                "(one of modbus-tcp, modbus-rtu, opcua, s7, enip)"
            )
        ],
    ),
    (
        "missing-protocol",
        GOOD + PLC.replace('protocol = "modbus-tcp"\n', ""),
        [
            (
                "plcs[0].protocol: required key is missing "
                "(one of modbus-tcp, modbus-rtu, opcua, s7, enip)"
            )
        ],
    ),
    # patterns
    (
        "gtin-pattern",
        GOOD + '[line]\ngtin = "123"\n',
        ["line.gtin: must be 14 digits (a GTIN-14), got '123'"],
    ),
    (
        "gtin-check-digit",
        GOOD + '[line]\ngtin = "09501101530004"\n',
        ["line.gtin: the check digit of '09501101530004' is wrong: it must end in 3"],
    ),
    (
        "site-pattern",
        AGENT.replace('"plant-a"', '"plant a"') + MQTT,
        [
            (
                "agent.site: must be 1 to 64 letters, digits, '_', '.' or '-', starting with a "
                "letter or digit, got 'plant a'"
            )
        ],
    ),
    (
        "destination-name-pattern",
        AGENT + MQTT.replace('"plant-broker"', '"plant broker"'),
        ["destinations[0].name: must be letters, digits, '_', '.' or '-', got 'plant broker'"],
    ),
    (
        "file-prefix-pattern",
        AGENT + FILE_DEST + 'prefix = "-qms"\n',
        [
            (
                "destinations[0].prefix: must be letters, digits, '_' or '-', starting with a "
                "letter or digit, got '-qms'"
            )
        ],
    ),
    # missing keys and tables
    (
        "missing-key",
        AGENT.replace('site = "plant-a"\n', "") + MQTT,
        ["agent.site: required key is missing"],
    ),
    ("missing-table", MQTT, ["agent: required table [agent] is missing"]),
    (
        "no-destination",
        AGENT,
        ["destinations: required: at least one [[destinations]] table"],
    ),
    (
        "empty-destinations",
        "destinations = []\n" + AGENT,
        ["destinations: required: at least one [[destinations]] table"],
    ),
    (
        "missing-url-only-destination",
        AGENT + '[[destinations]]\nname = "erp"\nkind = "http"\n',
        ["destinations[0].url: required key is missing"],
    ),
    # wrong types
    (
        "text-for-number",
        GOOD + '[store]\nretention_days = "ten"\n',
        ["store.retention_days: expected a whole number, got 'ten'"],
    ),
    (
        "fraction-for-whole-number",
        GOOD + "[store]\nretention_days = 1.5\n",
        ["store.retention_days: expected a whole number, got 1.5"],
    ),
    (
        "date-for-number",
        GOOD + "[store]\nretention_days = 2026-01-01\n",
        ["store.retention_days: expected a whole number, got 2026-01-01"],
    ),
    (
        "number-for-text",
        GOOD + "[line]\ngtin = 9501101530003\n",
        ["line.gtin: expected text in quotes, got 9501101530003"],
    ),
    (
        "text-for-float",
        GOOD + SCANNER + 'stopbits = "one"\n',
        ["scanners[0].stopbits: expected a number, got 'one'"],
    ),
    (
        "text-for-bool",
        AGENT + '[[destinations]]\nname = "erp"\nkind = "http"\nurl = "https://erp.local/in"\n'
        'insecure_skip_verify = "maybe"\n',
        ["destinations[0].insecure_skip_verify: expected true or false, got 'maybe'"],
    ),
    (
        "text-for-table",
        'agent = "line-3"\n' + MQTT,
        ["agent: expected a table ([agent]), got 'line-3'"],
    ),
    (
        "table-for-array-of-tables",
        GOOD + '[scanners]\nid = "dock-in-1"\n',
        ["scanners: expected an array of tables ([[scanners]]), got a table ([scanners])"],
    ),
    (
        "text-for-array",
        AGENT + MQTT + 'types = "batch.completed"\n',
        [
            (
                "destinations[0].types: expected an array like "
                "[\"batch.completed\"], got 'batch.completed'"
            )
        ],
    ),
    (
        "bool-for-time",
        GOOD + SHIFT.replace('"06:00"', "true"),
        ['shifts[0].start: expected a time like "06:00", got true'],
    ),
    (
        "number-for-path",
        AGENT + "data_dir = 5\n" + MQTT,
        ["agent.data_dir: expected a path in quotes, got 5"],
    ),
    # out of range
    (
        "not-positive",
        GOOD + "[store]\nretention_days = 0\n",
        ["store.retention_days: must be greater than 0, got 0"],
    ),
    (
        "above-maximum",
        GOOD + "[line]\nserial_width = 30\n",
        ["line.serial_width: must be at most 20, got 30"],
    ),
    (
        "below-minimum",
        GOOD + PLC + "poll_ms = 5\n",
        ["plcs[0].poll_ms: must be at least 10, got 5"],
    ),
    (
        "port-range",
        GOOD + PLC + "port = 70000\n",
        ["plcs[0].port: must be at most 65535, got 70000"],
    ),
    ("empty-text", GOOD + SHIFT.replace('"early"', '""'), ["shifts[0].name: must not be empty"]),
    (
        "too-long-text",
        GOOD + SHIFT.replace('"early"', '"' + "x" * 65 + '"'),
        ["shifts[0].name: must be at most 64 characters (it has 65)"],
    ),
    (
        "empty-array",
        AGENT + MQTT + "types = []\n",
        ["destinations[0].types: must not be empty"],
    ),
    # choices
    (
        "choice-typo",
        GOOD + '[store]\nsynchronous = "fulll"\n',
        ["store.synchronous: must be one of 'full', 'normal', got 'fulll' (did you mean 'full'?)"],
    ),
    (
        "choice",
        GOOD + SCANNER.replace('"inbound"', '"forklift"'),
        [
            (
                "scanners[0].role: must be one of 'inbound', 'outbound', 'line', 'packing', "
                "got 'forklift'"
            )
        ],
    ),
    ("version", "version = 2\n" + GOOD, ["version: must be 1, got 2"]),
    # unknown keys
    (
        "unknown-key-typo",
        GOOD + "[store]\nretension_days = 30\n",
        ["store.retension_days: unknown key (did you mean 'retention_days'?)"],
    ),
    (
        "unknown-key-typo-of-a-required-key",
        AGENT.replace("node =", "nodes =") + MQTT,
        ["agent.nodes: unknown key (did you mean 'node'?)"],
    ),
    (
        "unknown-table-typo",
        GOOD + "[stor]\nretention_days = 30\n",
        ["stor: unknown key (did you mean 'store'?)"],
    ),
    ("unknown-key", AGENT + MQTT + 'colour = "red"\n', ["destinations[0].colour: unknown key"]),
    (
        "unknown-key-in-a-plc",
        GOOD + PLC + "pol_ms = 50\n",
        ["plcs[0].pol_ms: unknown key (did you mean 'poll_ms'?)"],
    ),
    # a scanner is serial/TCP or HID (keyboard-wedge) by its `hid` key: the branch is never named
    (
        "hid-good-read-and-nak",
        GOOD + HID + 'good_read = "\\u0006"\nnak = "\\u0015"\n',
        [f"scanners[0].good_read: {NO_BACK_CHANNEL}", f"scanners[0].nak: {NO_BACK_CHANNEL}"],
    ),
    (
        "hid-keymap-choice",
        GOOD + HID + 'keymap = "es"\n',
        ["scanners[0].keymap: must be one of 'us', 'uk', 'de', 'fr', got 'es'"],
    ),
    (
        "hid-terminator-key",
        GOOD + HID + 'terminator_key = "KEY_LEFTSHIFT"\n',
        [f"scanners[0].terminator_key: KEY_LEFTSHIFT is a {MODIFIER} and cannot end a scan"],
    ),
    (
        "hid-empty-path",
        GOOD + HID.replace('"/dev/input/by-id/usb-scanner-event-kbd"', '""'),
        ["scanners[0].hid: must not be empty"],
    ),
    (
        "keymap-on-a-serial-scanner",
        GOOD + SCANNER + 'keymap = "de"\n',
        ['scanners[0].keymap: only for HID scanners (hid = "/dev/input/by-id/…-event-kbd")'],
    ),
    (
        "port-on-a-hid-scanner",
        GOOD + HID + 'port = "/dev/ttyUSB0"\nbaudrate = 9600\n',
        [
            "scanners[0].port: only for serial and TCP scanners (port or url), not with hid",
            "scanners[0].baudrate: only for serial and TCP scanners (port or url), not with hid",
        ],
    ),
    (
        "scanner-without-a-link",
        GOOD + SCANNER.replace('port = "/dev/ttyUSB0"\n', ""),
        [
            (
                "scanners[0]: give exactly one of port (a serial device path), url (e.g. "
                'socket://host:port) or hid (a USB keyboard-wedge scanner: hid = "/dev/input/'
                'by-id/…-event-kbd")'
            )
        ],
    ),
    (
        "hid-role-choice",
        GOOD + HID.replace('"inbound"', '"forklift"'),
        [
            (
                "scanners[0].role: must be one of 'inbound', 'outbound', 'line', 'packing', "
                "got 'forklift'"
            )
        ],
    ),
    (
        "key-of-another-protocol",
        GOOD + PLC + "baudrate = 19200\n",
        ["plcs[0].baudrate: only for protocol = 'modbus-rtu'"],
    ),
    # checks of their own stay as they are, still without a follow-up line
    (
        "bad-url-only-destination",
        AGENT + MQTT.replace("mqtt://127.0.0.1:1883", "ftp://broker"),
        ["destinations[0].url: scheme must be mqtt:// or mqtts://, not 'ftp'"],
    ),
    # several lines on one node: which line each line scan goes into
    (
        "line-scanner-names-no-line-of-two",
        GOOD + LINE_A + LINE_B + FEED,
        [f"scanners[0].line: {NAME_IT}"],
    ),
    (
        "line-names-no-plc",
        GOOD + LINE_A + LINE_B + FEED + 'line = "filler-c"\n',
        ["scanners[0].line: no PLC 'filler-c' (the lines are filler-a, filler-b)"],
    ),
    (
        "line-names-a-plc-without-batch",
        GOOD + LINE_A + PLC + FEED + 'line = "filler"\n',
        [f"scanners[0].line: PLC 'filler' has no [plcs.batch] section, {NO_LINE}"],
    ),
    (
        "line-on-a-dock-scanner",
        GOOD + LINE_A + SCANNER + 'line = "filler-a"\n',
        ['scanners[0].line: only a line scanner (role = "line") feeds a line'],
    ),
    (
        "plcs-line-without-batch",
        GOOD + PLC + "[plcs.line]\nserial_width = 4\n",
        [f"plcs[0].line: {ONLY_BATCH}"],
    ),
    (
        "plcs-line-unknown-key",
        GOOD + LINE_A + '[plcs.line]\ngtn = "09501101530003"\n',
        ["plcs[0].line.gtn: unknown key (did you mean 'gtin'?)"],
    ),
    (
        "two-line-scanners-name-no-line",
        GOOD + LINE_A + LINE_B + FEED + FEED.replace('"feed"', '"feed-2"'),
        [f"scanners[0].line: {NAME_IT}", f"scanners[1].line: {NAME_IT}"],
    ),
    # the other PLC protocols name a bad address by its key
    (
        "s7-no-such-area",
        GOOD + S7 + 'trigger = "DB10.DX10.0"\n',
        [
            (
                "plcs[0].batch.trigger: no such S7 area 'DX10' in 'DB10.DX10.0'; "
                "use DBX, DBB, DBW or DBD"
            )
        ],
    ),
    (
        "s7-ack-not-a-bit",
        GOOD + S7 + 'trigger = "DB10.DBX0.0"\nack = "DB10.DBW2"\n',
        [
            (
                "plcs[0].batch.ack: DB10.DBW2 is word: the ack must be a writable bool "
                "(the agent sets and clears it)"
            )
        ],
    ),
    (
        "s7-code-not-a-string",
        GOOD + S7 + 'trigger = "DB10.DBX0.0"\nwrite_code_to = "DB10.DBD2:real"\n',
        [
            (
                "plcs[0].batch.write_code_to: DB10.DBD2:real is real: the trace code goes to a "
                "writable string"
            )
        ],
    ),
    (
        "opcua-bad-node-id",
        GOOD + OPCUA + '[plcs.batch]\ntrigger = "ns=2;x=Capper.Done"\n',
        [
            (
                "plcs[0].batch.trigger: 'ns=2;x=Capper.Done' is not an OPC UA node id like "
                "'ns=2;s=Line.BatchDone' (Could not find identifier in string: ns=2;x=Capper.Done)"
            )
        ],
    ),
    (
        "opcua-endpoint-not-opc-tcp",
        GOOD + OPCUA.replace("opc.tcp://", "http://"),
        [
            (
                "plcs[0].endpoint: must be an OPC UA endpoint URL like 'opc.tcp://10.0.0.21:4840', "
                "got 'http://10.0.0.21:4840'"
            )
        ],
    ),
    (
        "opcua-host-is-not-its-key",
        GOOD + OPCUA + 'host = "10.0.0.21"\n',
        ["plcs[0].host: only for protocol = 'modbus-tcp' or protocol = 's7' or protocol = 'enip'"],
    ),
    (
        "enip-bad-tag",
        GOOD + ENIP + 'trigger = "Batch Done"\n',
        [
            (
                "plcs[0].batch.trigger: 'Batch Done' is not a Logix tag name like 'BatchDone' or "
                "'Program:Main.Count'"
            )
        ],
    ),
    # every problem, one line each
    (
        "two-problems",
        AGENT.replace('site = "plant-a"\n', "") + MQTT.replace('"mqtt"\n', '"mqtx"\n'),
        [
            "agent.site: required key is missing",
            "destinations[0].kind: unknown kind 'mqtx' (one of mqtt, http, file, postgres)",
        ],
    ),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_config_reads_as_a_sentence_naming_the_key(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    path = tmp_path / "lineside.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == expected


def test_check_config_and_run_print_the_same_lines(tmp_path: Path) -> None:
    path = tmp_path / "lineside.toml"
    path.write_text(
        AGENT.replace("node =", "nodes =")
        + MQTT.replace('"mqtt"\n', '"mqtx"\n')
        + f'[[scanners]]\nid = "a"\nrole = "line"\nport = "{tmp_path}/never-opened"\n'
    )
    expected = [
        "agent.nodes: unknown key (did you mean 'node'?)",
        "destinations[0].kind: unknown kind 'mqtx' (one of mqtt, http, file, postgres)",
    ]
    for command in ("check-config", "run"):
        res = subprocess.run(
            [sys.executable, "-m", "agent.cli", command, "-c", str(path)],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert res.returncode == 2, (command, res.stderr)
        assert res.stderr.splitlines() == expected, command


def _patterns(schema: object) -> set[str]:
    if isinstance(schema, dict):
        found = {str(schema["pattern"])} if "pattern" in schema else set()
        return found.union(*(_patterns(v) for v in schema.values()))
    if isinstance(schema, list):
        return set().union(*(_patterns(v) for v in schema))
    return set()


def test_every_pattern_of_the_config_is_said_in_words() -> None:
    """A new `pattern=` in a config model needs its sentence in `agent.config.errors.PATTERNS`."""
    found = _patterns(Config.model_json_schema()) | _patterns(WorkOrderCommand.model_json_schema())
    assert found
    assert found <= set(PATTERNS), found - set(PATTERNS)
