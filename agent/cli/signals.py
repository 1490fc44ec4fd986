"""Running a command's main coroutine until SIGTERM or SIGINT asks it to stop."""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


async def run_until_signal(
    main: Callable[[asyncio.Event], object],
) -> None:
    """Run `main(stop)` with SIGTERM/SIGINT setting `stop`."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        result = main(stop)
        if asyncio.iscoroutine(result):
            await result
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
