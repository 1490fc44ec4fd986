"""The udev rule example for keyboard-wedge scanners: well formed, one device, read-only."""

from __future__ import annotations

import re
from pathlib import Path

RULES = Path(__file__).resolve().parent.parent / "packaging" / "udev" / "70-lineside-scanner.rules"
PAIR = re.compile(
    r'(?P<key>[A-Z_]+(?:\{[\w.]+\})?)\s*(?P<op>==|!=|\+=|-=|:=|=)\s*"(?P<value>[^"]*)"'
)


def rule_lines() -> list[str]:
    return [
        line.lstrip("#")
        for line in RULES.read_text(encoding="utf-8").splitlines()
        if line.startswith(("SUBSYSTEM", "#SUBSYSTEM"))
    ]


def test_each_rule_line_is_comma_separated_key_op_value_pairs() -> None:
    lines = rule_lines()
    assert len(lines) == 2
    for line in lines:
        pairs = [p.strip() for p in line.split(", ")]
        assert all(PAIR.fullmatch(p) for p in pairs), line


def test_rules_give_one_event_node_to_the_lineside_group_read_only() -> None:
    for line in rule_lines():
        fields = {m["key"] + m["op"]: m["value"] for m in PAIR.finditer(line)}
        assert fields["SUBSYSTEM=="] == "input"
        assert fields["KERNEL=="] == "event*"
        assert fields["GROUP="] == "lineside"
        mode = int(fields["MODE="], 8)
        assert mode & 0o022 == 0, "the scanner must not be writable by group or others"
        assert mode & 0o004 == 0, "others must not read the scanner"
        assert mode & 0o040, "the lineside group reads it"
        assert "uaccess" not in line
        assert any(k.startswith(("ATTRS{idVendor}", "ENV{ID_SERIAL}")) for k in fields), line
