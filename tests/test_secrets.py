"""Every destination reads its password or token file the same way (`sync.secrets`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from sync.mqtt_config import MqttDestinationConfig
from sync.postgres_config import PostgresDestinationConfig
from sync.secrets import read_optional_secret, read_secret

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.parametrize("saved", ["right horse", "right horse\n", "right horse\r\n"])
def test_the_trailing_newline_is_not_part_of_the_secret(tmp_path: Path, saved: str) -> None:
    path = tmp_path / "pw"
    path.write_bytes(saved.encode())
    assert read_secret(path).get_secret_value() == "right horse"
    mqtt = MqttDestinationConfig(
        name="b", kind="mqtt", url="mqtt://127.0.0.1", username="u", password_file=path
    )
    postgres = PostgresDestinationConfig(
        name="p", kind="postgres", dsn="user=agent dbname=plant", password_file=path
    )
    for config in (mqtt, postgres):
        password = config.password()
        assert password is not None
        assert password.get_secret_value() == "right horse"


def test_no_file_no_secret_and_a_missing_file_is_an_error(tmp_path: Path) -> None:
    assert read_optional_secret(None) is None
    with pytest.raises(OSError, match="nope"):
        read_secret(tmp_path / "nope")
