"""The agent's `health` in its retained state (CONTRACTS.md): what the plant view's fleet reads."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from agent_harness import running_agent, write_config
from support import subscriber

if TYPE_CHECKING:
    from pathlib import Path

    from support import Broker, Pty

STATE = "lineside/v1/plant-a/line-3/state"


async def test_the_retained_state_carries_health_and_follows_changes(
    tmp_path: Path, broker: Broker, pty: Pty
) -> None:
    config = write_config(tmp_path, broker, {"dock-in-1": ("inbound", pty)})
    async with subscriber(broker, STATE) as got, running_agent(config) as agent:
        await got.wait_for(lambda g: any("health" in p for p in g.payloads()), timeout=10)
        first = next(p for p in got.payloads() if "health" in p)
        assert first["online"] is True
        assert set(first["health"]) == {"devices", "backlog", "alarms", "last_seq"}
        assert set(first["health"]["backlog"]) == {"plant-broker"}
        assert set(first["health"]["devices"]) == {"dock-in-1"}
        # a change (the scanner opened, the backlog delivered) is published without waiting 30 s
        await got.wait_for(
            lambda g: any(
                p.get("health", {}).get("devices") == {"dock-in-1": True}
                and p["health"]["backlog"] == {"plant-broker": 0}
                for p in g.payloads()
            ),
            timeout=10,
        )
        pty.write(b"HEALTH-1\r\n")
        await got.wait_for(
            lambda g: any(
                p.get("health", {}).get("last_seq", 0) >= agent.outbox.last_seq >= 1
                for p in g.payloads()
            ),
            timeout=10,
        )
    # the last word is the clean shutdown's offline state, without health
    assert json.loads(got.messages[-1][1]) == {"online": False}
