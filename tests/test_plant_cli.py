"""`lineside plant` finds its config as every command does: `-c FILE`, then `LINESIDE_CONFIG`."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


def plant(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "plant", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **env},
    )


def test_plant_commands_fall_back_to_lineside_config(tmp_path: Path) -> None:
    named = tmp_path / "from-env.toml"
    run = plant("trace", "X", env={"LINESIDE_CONFIG": str(named)})
    assert run.returncode == 2, run.stderr
    assert str(named) in run.stderr, run.stderr


def test_dash_c_wins_over_lineside_config(tmp_path: Path) -> None:
    given = tmp_path / "given.toml"
    run = plant("trace", "X", "-c", str(given), env={"LINESIDE_CONFIG": str(tmp_path / "env")})
    assert run.returncode == 2, run.stderr
    assert str(given) in run.stderr, run.stderr
