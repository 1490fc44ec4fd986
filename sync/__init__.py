"""Lineside sync: a durable SQLite outbox and store-and-forward delivery to destinations.

The outbox (`outbox`, `schema`, `group_commit`, `outbox_reader`, `retention`, `migrations`)
keeps every event until each destination has it; a `publisher` per destination delivers from its
cursor through its sink (`mqtt`, `http`, `files`, `postgres`), reconnecting as `retry` says. The
MQTT topics are spelled in `topics`; `mqtt_link` opens a connection from a destination's settings
(for the sink, the agent's command listener and doctor); `mqtt_cutoff` names a broker that closes
the link on one event; `mqtt_paho` is the one adapter over aiomqtt's and paho's private parts.
"""
