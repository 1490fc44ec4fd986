"""Keyboard-wedge (HID) scanners in a whole agent, on real parts: a FIFO device, a mosquitto.

Everything after the driver's framing is the serial scanners' path: the same interpretation, the
same `scan.rejected` reasons, `device.status` events and the status page's device entry. The
device is `VirtualHidScanner` (a FIFO behind a by-id-like link: this machine has no uinput),
typing as a scanner set to each keyboard country would, with GS as Ctrl+] or as Alt+numpad 0029.
"""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from agent_harness import running_agent, write_config
from hid_support import keys
from support import Pty, subscriber, wait_until

from drivers.scanners.hid import NO_BACK_CHANNEL
from drivers.scanners.keymaps import KEYMAPS
from drivers.simulators.hid_scanner import VirtualHidScanner
from drivers.simulators.key_typist import KeyTypist

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from support import Broker, Collected

EVENTS = "lineside/v1/plant-a/line-3/"
GTIN = "09501101530003"
KEYMAP_NAMES = ("us", "uk", "de", "fr")


@pytest.fixture
def keyboards(tmp_path: Path) -> Iterator[dict[str, VirtualHidScanner]]:
    """A plugged-in virtual HID scanner per keymap, by scanner id (`hid-us`, `hid-de`...)."""
    (tmp_path / "by-id").mkdir()
    found = {
        f"hid-{name}": VirtualHidScanner(
            tmp_path / "by-id" / f"usb-Scanner_{name}-event-kbd",
            keymap=name,  # type: ignore[arg-type]
        )
        for name in KEYMAP_NAMES
    }
    for kbd in found.values():
        kbd.plug()
    try:
        yield found
    finally:
        for kbd in found.values():
            kbd.unplug()


def hid_tables(keyboards: dict[str, VirtualHidScanner], role: str = "inbound") -> str:
    """`[[scanners]]` tables for the virtual HID scanners (each with its keymap)."""
    return "".join(
        f'[[scanners]]\nid = "{ident}"\nrole = "{role}"\nhid = "{kbd.link}"\n'
        f'keymap = "{ident.removeprefix("hid-")}"\ndedup_ms = 0\nreconnect_max_s = 0.5\n'
        for ident, kbd in keyboards.items()
    )


def events(got: Collected) -> list[dict[str, Any]]:
    return got.payloads(lambda t: t.startswith(EVENTS) and not t.endswith("/state"))


def scans(got: Collected) -> list[dict[str, Any]]:
    return [e for e in events(got) if e["type"] != "device.status"]


def device_status(got: Collected, device: str) -> list[bool]:
    return [
        e["data"]["connected"]
        for e in events(got)
        if e["type"] == "device.status" and e["data"]["device"] == device
    ]


async def test_gs1_in_every_keymap_with_both_gs_forms_and_an_unmapped_key(
    tmp_path: Path, broker: Broker, pty: Pty, keyboards: dict[str, VirtualHidScanner]
) -> None:
    """Good GS1 scans in us/uk/de/fr, GS as Ctrl+] and as Alt+0029, beside a serial scanner."""
    config = write_config(
        tmp_path, broker, {"dock-in-1": ("inbound", pty)}, extra=hid_tables(keyboards)
    )
    expected: dict[str, list[dict[str, str]]] = {}
    async with subscriber(broker, EVENTS + "#") as got, running_agent(config) as agent:
        for ident, kbd in keyboards.items():
            keymap = KEYMAPS[ident.removeprefix("hid-")]  # type: ignore[index]
            for control in ("ctrl", "alt"):
                lot, serial = f"Lot-7/{keymap.name}", f"{control.upper()}.b"
                typist = KeyTypist(keymap, control=control)
                kbd.send(typist.events(f"]d201{GTIN}10{lot}\x1d21{serial}"))
                expected.setdefault(f"scanner:{ident}", []).append(
                    {"01": GTIN, "10": lot, "21": serial}
                )
        pty.write(f"]d201{GTIN}10SERIAL\x1d21S1\r\n".encode())
        keyboards["hid-us"].send(keys("A F13 B ENTER"))  # F13: nothing in the us keymap
        await got.wait_for(lambda g: len(scans(g)) == 2 * len(keyboards) + 2)

        received = [e for e in scans(got) if e["type"] == "goods.received"]
        by_source: dict[str, list[dict[str, str]]] = {}
        for event in received:
            by_source.setdefault(event["source"], []).append(event["data"]["gs1"])
        assert by_source.pop("scanner:dock-in-1") == [{"01": GTIN, "10": "SERIAL", "21": "S1"}]
        assert by_source == expected

        [rejected] = [e for e in scans(got) if e["type"] == "scan.rejected"]
        assert rejected["source"] == "scanner:hid-us"
        assert rejected["data"]["reason_code"] == "frame.unmapped_key"
        assert rejected["data"]["reason_params"] == {
            "code": 183,
            "key": "KEY_F13",
            "modifiers": "",
            "keymap": "us",
        }
        assert rejected["data"]["reason"] == "unmapped key code 183 (KEY_F13) in keymap us"
        assert rejected["data"]["raw"] == "ab"  # the keys before it, unshifted

        # the status page: each HID scanner is a device entry, the refusal is in its scans
        await wait_until(lambda: agent.status_url is not None, what="the status page")
        async with httpx.AsyncClient() as client:
            api = (await client.get(f"{agent.status_url}api/status")).json()
        devices = {d["id"]: d for d in api["devices"]}
        for ident in keyboards:
            assert devices[ident]["kind"] == "scanner"
            assert devices[ident]["connected"] is True
            assert devices[ident]["role"] == "inbound"
        shown = [s for s in api["recent_scans"] if s["reason_code"] == "frame.unmapped_key"]
        assert [(s["device"], s["reason_params"]["key"]) for s in shown] == [("hid-us", "KEY_F13")]


async def test_hid_scanner_unplug_and_replug(tmp_path: Path, broker: Broker) -> None:
    """The by-id link vanishing and coming back: device.status both ways, the page follows."""
    kbd = VirtualHidScanner(tmp_path / "usb-Scanner-event-kbd", keymap="de", control="alt")
    kbd.plug()
    config = write_config(
        tmp_path, broker, {}, extra=hid_tables({"hid-de": kbd}).replace('"hid-de"', '"dock-de"')
    )
    try:
        async with subscriber(broker, EVENTS + "#") as got, running_agent(config) as agent:
            health = agent.scanners[0].health
            await wait_until(lambda: agent.status_url is not None, what="the status page")
            status = f"{agent.status_url}api/status"
            kbd.scan(f"]d201{GTIN}10VOR\x1d21Zy-1")
            await got.wait_for(lambda g: len(scans(g)) == 1)
            # the monitor samples once a second: it has seen the scanner up before it goes
            await got.wait_for(lambda g: device_status(g, "dock-de") == [True])

            kbd.unplug()
            await wait_until(lambda: not health.connected, what="the unplug noticed")
            await got.wait_for(lambda g: device_status(g, "dock-de")[-1:] == [False])
            async with httpx.AsyncClient() as client:
                entry = {d["id"]: d for d in (await client.get(status)).json()["devices"]}
            assert entry["dock-de"]["connected"] is False
            assert entry["dock-de"]["disconnected_since"] is not None
            assert entry["dock-de"]["last_error"]

            kbd.plug()
            await wait_until(lambda: health.connected, timeout=30, what="reconnected")
            await got.wait_for(lambda g: device_status(g, "dock-de")[-1:] == [True])
            kbd.scan(f"]d201{GTIN}10NACH\x1d21Yz/2")
            await got.wait_for(lambda g: len(scans(g)) == 2)
            async with httpx.AsyncClient() as client:
                entry = {d["id"]: d for d in (await client.get(status)).json()["devices"]}
            assert entry["dock-de"]["connected"] is True
    finally:
        kbd.unplug()
    lots = [(e["data"]["lot"], e["data"]["serial"]) for e in scans(got)]
    assert lots == [("VOR", "Zy-1"), ("NACH", "Yz/2")]
    assert health.reconnects >= 1


def test_check_config_refuses_a_reply_to_a_hid_scanner(tmp_path: Path) -> None:
    """No back channel: `good_read` and `nak` are refused, each with the key as the file has it."""
    config = tmp_path / "lineside.toml"
    config.write_text(
        '[agent]\nsite = "plant-a"\nnode = "line-3"\n'
        '[[destinations]]\nname = "b"\nkind = "mqtt"\nurl = "mqtt://127.0.0.1:1"\n'
        '[[scanners]]\nid = "dock-in-1"\nrole = "inbound"\nport = "/dev/ttyUSB0"\n'
        'good_read = "\\u0006"\n'
        '[[scanners]]\nid = "dock-in-2"\nrole = "inbound"\n'
        'hid = "/dev/input/by-id/usb-Honeywell_Imaging_1450g-event-kbd"\n'
        'good_read = "\\u0006"\nnak = "\\u0015"\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", "check-config", "-c", str(config)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"scanners[1].good_read: {NO_BACK_CHANNEL}",
        f"scanners[1].nak: {NO_BACK_CHANNEL}",
    ]
