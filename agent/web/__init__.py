"""The technicians' status page and HTTP API, served by the agent on its own event loop.

`create_app` builds the FastAPI app over a `StatusView` (what the runtime shows and lets a
technician do), `Metrics` is the Prometheus registry the runtime records into, and
`StatusServer` runs uvicorn inside the agent's loop without touching signal handlers.
"""

from agent.web.app import create_app
from agent.web.metrics import Metrics
from agent.web.server import StatusServer, StatusServerError, serve
from agent.web.view import (
    AgentInfo,
    AgentStatus,
    Alarm,
    BatchStatus,
    CompletedBatch,
    DestinationStatus,
    DeviceStatus,
    Health,
    QuarantinedEvent,
    RecentScan,
    StatusView,
)

__all__ = [
    "AgentInfo",
    "AgentStatus",
    "Alarm",
    "BatchStatus",
    "CompletedBatch",
    "DestinationStatus",
    "DeviceStatus",
    "Health",
    "Metrics",
    "QuarantinedEvent",
    "RecentScan",
    "StatusServer",
    "StatusServerError",
    "StatusView",
    "create_app",
    "serve",
]
