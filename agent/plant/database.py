"""Connecting the plant view to its database, with the destination's settings and errors.

The plant view's connection uses the same libpq settings as the agent's postgres destination
(`PostgresDestinationConfig.connect_kwargs`: TLS, timeouts, keepalives, the password file),
in autocommit (every read is its own snapshot; `migrate` opens its own transaction).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import psycopg

from agent.plant.history import PlantStoreError
from sync.postgres import one_line

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from agent.plant.config import PlantSection


@contextlib.asynccontextmanager
async def plant_connection(plant: PlantSection) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """One autocommit connection to the plant database; `PlantStoreError` when it cannot."""
    conn = await _connect(plant)
    try:
        yield conn
    finally:
        await conn.close()


async def _connect(plant: PlantSection) -> psycopg.AsyncConnection[Any]:
    database = plant.database()
    try:
        settings = await asyncio.to_thread(database.connect_kwargs)
    except OSError as exc:
        raise PlantStoreError(f"plant.password_file: cannot read it: {exc}") from exc
    try:
        conn = await psycopg.AsyncConnection.connect(
            database.dsn,
            autocommit=True,
            **settings,  # type: ignore[arg-type]  # libpq keywords
        )
    except psycopg.Error as exc:
        raise PlantStoreError(f"cannot connect to {database.target}: {one_line(exc)}") from exc
    return conn


class PlantDatabase:
    """A few connections to the plant database, reused by the page's requests.

    At most `size` at once (a request beyond waits); a connection that failed is closed and
    replaced by a new one on the next request, so a database restart costs one failed request.
    """

    def __init__(self, plant: PlantSection, *, size: int = 4) -> None:
        self._plant = plant
        self._slots = asyncio.Semaphore(size)
        self._idle: list[psycopg.AsyncConnection[Any]] = []

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """One connection for the block; `PlantStoreError` when the database cannot answer."""
        async with self._slots:
            conn = self._idle.pop() if self._idle else None
            if conn is None or conn.closed:
                conn = await _connect(self._plant)
            healthy = False
            try:
                yield conn
                healthy = True
            except psycopg.Error as exc:
                raise PlantStoreError(f"the plant database failed: {one_line(exc)}") from exc
            finally:
                if healthy and not conn.closed:
                    self._idle.append(conn)
                else:
                    await conn.close()

    async def close(self) -> None:
        """Close every idle connection."""
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()
