"""A broker that closes the link on one event is named; a flapping link is not (real mosquitto).

mosquitto never closes a link on a publish, so the test makes it look as if it did: the broker is
frozen (SIGSTOP) with an event in flight, then killed (SIGKILL), so the link closes right after
that event was published and before its PUBACK. Three times in a row on the same first event is
a cut-off; the same drops after an event of the connection was acknowledged are a flapping link.
(NATS closing on a dotted topic, the real case, is tested in test_broker_nats.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import TYPE_CHECKING

from test_mqtt_sink import BASE, OFFLINE, ONLINE, config, envelope

from sync.base import SinkUnavailable
from sync.mqtt import MqttSink
from sync.mqtt_cutoff import CutOffWatch
from sync.topics import Topics

if TYPE_CHECKING:
    from support import Broker


async def drop_with_event_in_flight(
    broker: Broker, watch: CutOffWatch, *, acknowledged_first: bool
) -> str:
    """One connection: (an acknowledged event, then) event 2 in flight when the link drops."""
    broker.start()
    sink = MqttSink(
        config(broker.url, protocol="3.1.1"),
        topics=Topics(BASE),
        client_id="lineside-cutoff",
        online_payload=ONLINE,
        offline_payload=OFFLINE,
        cut_offs=watch,
    )
    async with sink:
        if acknowledged_first:
            await sink.send([envelope(1)])
        assert broker.process is not None
        broker.process.send_signal(signal.SIGSTOP)  # no PUBACK for what comes now
        sending = asyncio.create_task(sink.send([envelope(2)]))
        await asyncio.sleep(0)  # event 2 is handed to the socket
        broker.kill()  # the link closes right after event 2 was published
        cause = await sink.link_lost()
        with contextlib.suppress(SinkUnavailable):
            await sending
    return cause


async def test_the_same_first_event_cut_off_three_times_is_named(broker: Broker) -> None:
    watch = CutOffWatch("plant-broker")
    causes = [
        await drop_with_event_in_flight(broker, watch, acknowledged_first=False) for _ in range(3)
    ]
    assert all("closes the connection" not in cause for cause in causes[:2]), causes
    assert causes[2].startswith(
        f"the broker closes the connection when this event is published to {BASE}/goods.received"
    ), causes


async def test_a_link_that_drops_after_a_puback_is_a_flapping_network(broker: Broker) -> None:
    watch = CutOffWatch("plant-broker")
    causes = [
        await drop_with_event_in_flight(broker, watch, acknowledged_first=True) for _ in range(4)
    ]
    assert all("closes the connection" not in cause for cause in causes), causes
    assert watch.count == 0
