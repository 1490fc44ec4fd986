"""Simulated devices for the tests and `lineside demo`: a filling line's PLC, a HID scanner.

The same filling line (`line_program`) runs on each protocol's own server: `modbus_plc`,
`opcua_plc`, `s7_plc`, `enip_plc`; each also runs standalone (`python -m
drivers.simulators.modbus_plc --port 5020`). `hid_scanner` types reads into a virtual input
device through `key_typist`, the inverse of the HID scanner's key decoding.
"""
