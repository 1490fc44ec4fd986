"""The event history this node keeps: trace queries, lot reports, EPCIS, reconciliation, retention.

`reader` reads the outbox's history (read-only beside a running agent); `trace` walks from any
code to the whole chain this node saw (`trace_format` prints it); `reports` and `epcis` turn a
lot's chain into CSV, JSON or EPCIS 2.0; `reconcile` checks PLC quantity against codes stamped
and units shipped; `retention` prunes what every destination has acknowledged.
"""
