"""Prometheus metrics of one agent, on a registry of its own (several apps may live in a test).

The runtime records into a `Metrics` object as things happen (events committed, publish
latency, rejected scans, commit time); backlog, age and device gauges are refreshed from the
status snapshot when `/metrics` is scraped, so they are never stale.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from agent.web.view import AgentStatus

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Publish round trips are milliseconds on a LAN, seconds when a broker struggles.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# An fsynced group commit is 1-50 ms on an SSD, far more on an SD card.
_COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class Metrics:
    """The agent's metrics and the methods the runtime calls to record them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events = Counter(
            "lineside_events", "Events committed to the outbox, by type", ["type"], registry=r
        )
        self.scans_rejected = Counter(
            "lineside_scans_rejected",
            "Scans turned into scan.rejected, by device",
            ["device"],
            registry=r,
        )
        self.login_failures = Counter(
            "lineside_login_failures", "Failed logins on the status page", registry=r
        )
        self.login_throttled = Counter(
            "lineside_login_throttled",
            "Logins refused unjudged (429) while the address or all addresses are throttled",
            registry=r,
        )
        self.backlog_events = Gauge(
            "lineside_backlog_events",
            "Events not yet delivered, per destination",
            ["destination"],
            registry=r,
        )
        self.backlog_bytes = Gauge(
            "lineside_backlog_bytes",
            "Payload bytes not yet delivered, per destination",
            ["destination"],
            registry=r,
        )
        self.oldest_undelivered_age = Gauge(
            "lineside_oldest_undelivered_age_seconds",
            "Age of the oldest undelivered event, per destination (0 when none)",
            ["destination"],
            registry=r,
        )
        self.destination_up = Gauge(
            "lineside_destination_up",
            "1 when the destination is connected, else 0",
            ["destination"],
            registry=r,
        )
        self.device_up = Gauge(
            "lineside_device_up", "1 when the device is connected, else 0", ["device"], registry=r
        )
        self.publish_latency = Histogram(
            "lineside_publish_latency_seconds",
            "Time from send to acknowledgement by the destination",
            ["destination"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.outbox_commit = Histogram(
            "lineside_outbox_commit_seconds",
            "Duration of one outbox group commit",
            buckets=_COMMIT_BUCKETS,
            registry=r,
        )

    def event_committed(self, event_type: str) -> None:
        """Count one event of `event_type` committed to the outbox."""
        self.events.labels(type=event_type).inc()

    def scan_rejected(self, device: str) -> None:
        """Count one scan from `device` that became `scan.rejected`."""
        self.scans_rejected.labels(device=device).inc()

    def login_failed(self) -> None:
        """Count one failed login."""
        self.login_failures.inc()

    def login_refused_throttled(self) -> None:
        """Count one login refused unjudged because of the throttle."""
        self.login_throttled.inc()

    def publish_acknowledged(self, destination: str, seconds: float) -> None:
        """Record the send-to-acknowledgement time of one publish to `destination`."""
        self.publish_latency.labels(destination=destination).observe(seconds)

    def outbox_committed(self, seconds: float) -> None:
        """Record the duration of one outbox group commit."""
        self.outbox_commit.observe(seconds)

    def device_changed(self, device: str, *, up: bool) -> None:
        """Set a device's up/down gauge."""
        self.device_up.labels(device=device).set(1 if up else 0)

    def refresh(self, status: AgentStatus) -> None:
        """Set the gauges that mirror the status snapshot (called at scrape time)."""
        for dest in status.destinations:
            self.backlog_events.labels(destination=dest.name).set(dest.backlog)
            self.backlog_bytes.labels(destination=dest.name).set(dest.backlog_bytes)
            self.oldest_undelivered_age.labels(destination=dest.name).set(
                dest.oldest_undelivered_age_s or 0
            )
            self.destination_up.labels(destination=dest.name).set(1 if dest.connected else 0)
        for device in status.devices:
            self.device_changed(device.id, up=device.connected)

    def render(self) -> bytes:
        """Render the registry in the Prometheus text format."""
        return generate_latest(self.registry)
