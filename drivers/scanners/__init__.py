"""Barcode scanners: serial and TCP (`serial`), USB HID keyboard wedge (`hid`), and their steps.

Both yield framed `ScanReading`s (`drivers.base`): `framing` cuts bytes into reads, `double_reads`
drops a repeated read; the HID scanner decodes key events first (`evdev_events`, `keymaps`,
`key_decoder`, `key_framing`) and opens its input device through `hid_device`.
"""
