"""The running agent: every part built from the config, run, supervised and watched.

`agent` is the composition root (the `Agent`: wiring, start and stop order); `supervisor`
restarts a failed task with backoff; `monitor` turns health into alarms, `device.status` events
and /healthz reasons; `state` is what the agent knows right now; `status` feeds the status page
from the running parts the `Agent` hands it; `commands` listens for MQTT commands;
`destinations` builds each destination's sink; `health` keeps the agent's `health` in its
retained MQTT state; `clock` and `systemd` talk to the system.
"""
