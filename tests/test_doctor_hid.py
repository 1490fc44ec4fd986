"""`lineside doctor` on HID (keyboard-wedge) scanners: the device exists, is readable, is free.

The device is a FIFO (`VirtualHidScanner`), a missing link, a node that is not an input device;
where /dev/uinput exists, a real input device too, free and grabbed by another program.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from agent.cli.doctor import Status, check_hid
from agent.cli.main import main
from agent.config.scanners import HidScannerConfig
from drivers.scanners.evdev_events import EVIOCGRAB
from drivers.simulators.hid_scanner import VirtualHidScanner

if TYPE_CHECKING:
    from pathlib import Path

    from support import Broker

UINPUT_MISSING = "/dev/uinput is missing or not writable here (no uinput kernel module)"


def hid(path: Path | str) -> HidScannerConfig:
    return HidScannerConfig(id="dock-in-2", role="inbound", hid=str(path))


def test_a_fifo_is_a_warning_read_without_the_grab(tmp_path: Path) -> None:
    kbd = VirtualHidScanner(tmp_path / "usb-Scanner-event-kbd")
    kbd.plug()
    try:
        finding = check_hid(hid(kbd.link))
    finally:
        kbd.unplug()
    assert finding.check == "scanner dock-in-2"
    assert finding.status is Status.WARN
    assert "read without a grab" in finding.detail
    assert "/dev/input/by-id/" in finding.hint


def test_a_missing_device_fails_with_where_to_look(tmp_path: Path) -> None:
    finding = check_hid(hid(tmp_path / "usb-Gone-event-kbd"))
    assert finding.status is Status.FAIL
    assert "no such device" in finding.detail
    assert "ls -l /dev/input/by-id/" in finding.hint


@pytest.mark.parametrize("what", ["character device", "regular file"])
def test_a_node_that_is_no_input_device_fails(tmp_path: Path, what: str) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a scanner")
    finding = check_hid(hid("/dev/null" if what == "character device" else path))
    assert finding.status is Status.FAIL
    assert f"is not an input device (a {what}" in finding.detail


# As root, the permission check runs without the capabilities that let root read anything.
_PROBE = (
    "import json, sys; from agent.cli.doctor import check_hid; "
    "from agent.config.scanners import HidScannerConfig; "
    "f = check_hid(HidScannerConfig(id='dock-in-2', role='inbound', hid=sys.argv[1])); "
    "print(json.dumps([f.status.name, f.detail, f.hint]))"
)
_NO_DAC = "-dac_override,-dac_read_search"


@pytest.mark.skipif(
    os.geteuid() == 0 and shutil.which("setpriv") is None,
    reason="root reads any device; dropping that right needs setpriv(1)",
)
def test_a_device_this_user_may_not_read_names_the_udev_rule(tmp_path: Path) -> None:
    kbd = VirtualHidScanner(tmp_path / "usb-Scanner-event-kbd")
    kbd.plug()
    try:
        assert kbd.fifo is not None
        kbd.fifo.chmod(0o000)
        command = [sys.executable, "-c", _PROBE, str(kbd.link)]
        if os.geteuid() == 0:
            command = ["setpriv", f"--inh-caps={_NO_DAC}", f"--bounding-set={_NO_DAC}", *command]
        done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60)
    finally:
        kbd.unplug()
    status, detail, hint = json.loads(done.stdout)
    assert status == "FAIL"
    assert "permission denied" in detail
    assert "70-lineside-scanner.rules" in hint


async def test_doctor_checks_hid_scanners_beside_the_rest(
    tmp_path: Path, broker: Broker, capsys: pytest.CaptureFixture[str]
) -> None:
    kbd = VirtualHidScanner(tmp_path / "usb-Scanner-event-kbd")
    kbd.plug()
    config = tmp_path / "lineside.toml"
    config.write_text(
        f'[agent]\nsite = "plant-a"\nnode = "line-3"\ndata_dir = "{tmp_path / "data"}"\n'
        f"[store]\nmax_backlog_mb = 1\nmin_free_mb = 1\n"
        f'[[destinations]]\nname = "plant-broker"\nkind = "mqtt"\nurl = "{broker.url}"\n'
        f'[[scanners]]\nid = "dock-in-2"\nrole = "inbound"\nhid = "{kbd.link}"\n'
        f'[[scanners]]\nid = "dock-in-3"\nrole = "inbound"\nhid = "{tmp_path / "gone"}"\n'
    )
    try:
        code = await asyncio.to_thread(main, ["doctor", "-c", str(config)])
    finally:
        kbd.unplug()
    out = capsys.readouterr().out
    assert code == 1  # the missing one
    lines = {
        line.split()[2]: line.split(maxsplit=3) for line in out.splitlines() if " scanner " in line
    }
    assert lines["dock-in-2"][0] == "warn"
    assert lines["dock-in-2"][3].startswith(f"{kbd.link} (a FIFO of input events")
    assert lines["dock-in-3"][0] == "fail"
    assert lines["dock-in-3"][3].startswith(f"cannot open {tmp_path / 'gone'}: no such device")


# --- a real input device (uinput) --------------------------------------------------------------


@pytest.mark.skipif(not os.access("/dev/uinput", os.R_OK | os.W_OK), reason=UINPUT_MISSING)
async def test_a_real_device_is_ok_free_and_a_warning_when_grabbed() -> None:
    from test_hid_uinput import VirtualKeyboard, node_ready  # noqa: PLC0415 (needs uinput)

    keyboard = VirtualKeyboard()
    try:
        node = await node_ready(keyboard)
        free = check_hid(hid(node))
        assert free.status is Status.OK, free
        assert "readable, grabbed and let go" in free.detail
        holder = os.open(node, os.O_RDONLY | os.O_NONBLOCK)
        try:
            fcntl.ioctl(holder, EVIOCGRAB, 1)
            held = check_hid(hid(node))
        finally:
            os.close(holder)
    finally:
        keyboard.unplug()
    assert held.status is Status.WARN
    assert held.detail == (
        f"{node} is grabbed by another program — the running agent, if lineside is running"
    )
