"""`[[destinations]]`: where events are delivered, each sink's settings joined by `kind`.

Every key of a destination is its sink's, beside its code in `sync/` (`sync/mqtt_config.py`,
`sync/http.py`, `sync/files.py`, `sync/postgres_config.py`); this union only says which kinds
the agent offers.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from sync.files import FileDestinationConfig
from sync.http import HttpDestinationConfig
from sync.mqtt_config import MqttDestinationConfig
from sync.postgres_config import PostgresDestinationConfig

DestinationConfig = Annotated[
    MqttDestinationConfig
    | HttpDestinationConfig
    | FileDestinationConfig
    | PostgresDestinationConfig,
    Field(discriminator="kind"),
]
"""One destination, by its `kind`."""
