"""What `run` needs beyond a valid config file, checked before anything starts.

`lineside check-config` and `lineside run` both call `preflight`, so a config that cannot run
fails `check-config` too (the systemd unit runs it as `ExecStartPre`): the admin password file
readable and not blank; every file a destination or a PLC names (its `*_file` keys: CA,
certificate, key, password, token; an OPC UA PLC's certificates, key and password) readable;
`agent.data_dir` a directory this user can write, or create; the outbox the data directory's
identity record promises still there. One `key.path: problem` line each, as `load_config`
reports the file's own problems.

Run it as the user the agent runs as (`sudo -u lineside lineside check-config`): "readable"
and "writable" are this user's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from agent.config.errors import ConfigError
from agent.config.root import outbox_path
from agent.config.status import read_admin_password
from sync.outbox_identity import missing_problem

if TYPE_CHECKING:
    from agent.config.root import Config

NEW_OUTBOX_FLAG = "--new-outbox"


def preflight(config: Config, *, new_outbox: bool = False) -> list[str]:
    """Every reason `run` would refuse this config, one line each (empty: it can start)."""
    problems: list[str] = []
    try:
        read_admin_password(config.status.admin_password_file)
    except ConfigError as exc:
        problems.extend(exc.problems)
    named = [("destinations", config.destinations), ("plcs", config.plcs)]
    for section, parts in named:
        for i, part in enumerate(parts):
            for name in type(part).model_fields:
                value = getattr(part, name)
                if name.endswith("_file") and isinstance(value, Path):
                    problem = _unreadable(value)
                    if problem is not None:
                        problems.append(f"{section}[{i}].{name}: {problem}")
    problems.extend(_data_dir_problems(config.agent.data_dir, new_outbox=new_outbox))
    return problems


def _unreadable(path: Path) -> str | None:
    try:
        with path.open("rb") as f:
            f.read(1)
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    return None


def _data_dir_problems(data_dir: Path, *, new_outbox: bool) -> list[str]:
    key = "agent.data_dir"
    if data_dir.exists() and not data_dir.is_dir():
        return [f"{key}: {data_dir} is not a directory"]
    if not data_dir.exists():
        parent = next((p for p in data_dir.parents if p.exists()), None)
        if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            return [f"{key}: {data_dir} does not exist and this user cannot create it"]
        return []
    if not os.access(data_dir, os.W_OK | os.X_OK):
        return [f"{key}: {data_dir} is not writable by this user (uid {os.geteuid()})"]
    missing = missing_problem(outbox_path(data_dir))
    if missing is not None and not new_outbox:
        return [f"{key}: {missing} (`lineside run {NEW_OUTBOX_FLAG}`)"]
    return []
