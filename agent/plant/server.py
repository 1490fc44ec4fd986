"""`lineside plant serve`: the plant view's page on `[plant] listen`, until asked to stop.

Starts, in order, the database connections (`PlantDatabase`), the broker follower
(`NodeStates`, when `[plant.broker]` is set; task `plant-broker`) and the page
(`agent.web.server.StatusServer`, with the agent page's bounds; task `plant-page`); stops them
in reverse. The follower reconnects by itself; a page that cannot bind ends the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from agent import __version__
from agent.config.status import read_admin_password
from agent.plant.app import create_plant_app
from agent.plant.broker import NodeStates
from agent.plant.database import PlantDatabase
from agent.web.hosts import HostPolicy
from agent.web.server import StatusServer

if TYPE_CHECKING:
    from collections.abc import Callable

    from agent.plant.config import PlantConfig

log = logging.getLogger(__name__)


async def serve_plant(
    config: PlantConfig, stop: asyncio.Event, *, ready: Callable[[str], None] | None = None
) -> None:
    """Serve the plant view until `stop` is set; `ready(url)` once it listens."""
    plant = config.plant
    status = plant.status()
    database = PlantDatabase(plant)
    states = NodeStates(plant.broker, plant.site) if plant.broker is not None else None
    app = create_plant_app(
        database,
        site=plant.site,
        timezone=plant.timezone,
        states=states,
        password=read_admin_password(plant.admin_password_file),
        version=__version__,
        hosts=HostPolicy.default(status.host, status.allowed_hosts),
        fleet_recheck_s=plant.fleet_recheck_s,
    )
    try:
        async with asyncio.TaskGroup() as group:
            follower = (
                group.create_task(states.run(), name="plant-broker") if states is not None else None
            )
            async with StatusServer(app, host=status.host, port=status.port) as server:
                page = group.create_task(server.serve_forever(), name="plant-page")
                log.info("plant view of site %s on %s", plant.site, server.url)
                if ready is not None:
                    ready(server.url)
                stopping = group.create_task(stop.wait(), name="plant-stop")
                await asyncio.wait({page, stopping}, return_when=asyncio.FIRST_COMPLETED)
                server.stop()
                stopping.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await page
            if follower is not None:
                follower.cancel()
    finally:
        await database.close()
