"""Line PLCs: Modbus TCP/RTU, OPC UA, S7 and EtherNet/IP, read as consistent snapshots.

Each driver polls its watched values through `polling.PollingPlc` and yields `PlcSnapshot`s
(`drivers.base`); the rest of each protocol sits beside it (`registers` for Modbus addresses,
`opcua_nodes`/`opcua_errors`, `s7_address`/`s7_plan`, `enip_codec`).
"""
