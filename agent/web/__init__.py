"""The technicians' status page and HTTP API, served by the agent on its own event loop.

`create_app` builds the FastAPI app over a `StatusView` (what the runtime shows and lets a
technician do), `Metrics` is the Prometheus registry the runtime records into, and
`StatusServer` runs uvicorn inside the agent's loop without touching signal handlers.
Around them: `auth` (login throttle, sessions, CSRF, Origin), `audit` (the rotated audit log),
`hosts` and `middleware` (the Host check, body cap, security headers), `protocol` (connection,
request-time and stalled-reader bounds uvicorn lacks) and `feed` (live streams sharing one
snapshot per tick).
"""

from agent.web.app import create_app
from agent.web.metrics import Metrics
from agent.web.server import StatusServer, StatusServerError, serve
from agent.web.view import (
    AgentInfo,
    AgentStatus,
    BatchStatus,
    CompletedBatch,
    DestinationStatus,
    DeviceStatus,
    Health,
    LineBatches,
    QuarantinedEvent,
    RecentScan,
    StatusView,
)

__all__ = [
    "AgentInfo",
    "AgentStatus",
    "BatchStatus",
    "CompletedBatch",
    "DestinationStatus",
    "DeviceStatus",
    "Health",
    "LineBatches",
    "Metrics",
    "QuarantinedEvent",
    "RecentScan",
    "StatusServer",
    "StatusServerError",
    "StatusView",
    "create_app",
    "serve",
]
