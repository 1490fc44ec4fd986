"""Every alarm and rejection code the agent can send is documented and worded in Chinese.

The codes are read from the source (the `code=` of each `AlarmBoard.raise_` call, each
`Rejection(reason, code, ...)`, each reconciliation finding), so a new alarm or reason without
its documentation or its Chinese wording fails here, not on a plant's panel PC.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import agent.alarms
import agent.packing.refusals
import agent.scanning.rejections

AGENT = Path(__file__).parent.parent / "agent"
I18N = AGENT / "web" / "static" / "i18n.js"


def _calls(path: Path) -> list[ast.Call]:
    return [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Call)]


def _name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def _text(node: ast.expr) -> str:
    assert isinstance(node, ast.Constant), ast.dump(node)
    return str(node.value)


def alarm_codes() -> set[str]:
    codes = set()
    for path in AGENT.rglob("*.py"):
        for call in _calls(path):
            if _name(call) == "raise_":
                code = next((k.value for k in call.keywords if k.arg == "code"), None)
                assert code is not None, f"{path.name}:{call.lineno}: an alarm without a code"
                codes.add(_text(code))
            elif _name(call) == "add" and path.name == "reconcile.py":
                codes.add("reconcile." + _text(call.args[1]))
    return codes


def rejection_codes(module: str = agent.scanning.rejections.__file__) -> set[str]:
    return {_text(c.args[1]) for c in _calls(Path(module)) if _name(c) == "Rejection"}


def documented(module_doc: str | None) -> set[str]:
    assert module_doc is not None
    rows = module_doc.split("| --- |", 1)[1]  # below the table's header
    return set(re.findall(r"^\| `([a-z0-9_.]+)` \|", rows, re.MULTILINE))


def zh_keys(prefix: str) -> set[str]:
    zh = I18N.read_text().split("\n  zh: {", 1)[1]
    return set(re.findall(rf'"{prefix}:([a-z0-9_.]+)":', zh))


def test_every_alarm_code_is_documented_and_worded_in_chinese() -> None:
    codes = alarm_codes()
    assert {"device.disconnected", "batch.no_product", "reconcile.never_stamped"} <= codes
    table = documented(agent.alarms.__doc__)
    assert codes - {c for c in codes if c.startswith("reconcile.")} <= table
    assert codes <= zh_keys("alarm"), codes - zh_keys("alarm")


def test_every_rejection_code_is_documented_and_worded_in_chinese() -> None:
    codes = rejection_codes()
    assert {"gs1.check_digit", "frame.too_long", "not_utf8"} <= codes
    assert codes == documented(agent.scanning.rejections.__doc__)
    assert codes <= zh_keys("reason"), codes - zh_keys("reason")


def test_every_packing_refusal_code_is_documented_and_worded_in_chinese() -> None:
    codes = rejection_codes(agent.packing.refusals.__file__)
    assert {"pack.unknown_code", "pack.packed_elsewhere"} <= codes
    assert codes == documented(agent.packing.refusals.__doc__)
    assert codes <= zh_keys("reason"), codes - zh_keys("reason")
