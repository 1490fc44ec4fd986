"""The record that a directory holds an outbox: a small JSON file beside the database.

Without it, an outbox file that was deleted or emptied (a wrong `rm`, `: > outbox.db`, a
restore that forgot a file) opens as a NEW outbox: history gone, `seq` back at 1, and nothing
says so. With it, `Outbox` refuses (`OutboxMissing`) unless it is told to start a new sequence.

`outbox.db` is recorded in `outbox.identity.json`::

    {"file": "outbox.db", "created": "2026-11-24T16:01:02Z", "site": "plant-a", "node": "line-3"}

`created` is when the outbox was made (for a file older than the record: its first event's
time, else the time the record was written); the other keys are the owner's labels (the agent
passes its site and node). An outbox started anew over a recorded one keeps the old creation
time as `previous`. The record is written once, atomically (temporary file, fsync, rename).
"""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sync.base import OutboxError, OutboxMissing

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

log = logging.getLogger(__name__)

RESERVED = frozenset({"file", "created", "previous"})
MAX_RECORD_BYTES = 64 * 1024  # the record is tiny; anything bigger is not ours


def identity_path(db: Path) -> Path:
    """Where the record of the outbox file `db` lives (`outbox.db` → `outbox.identity.json`)."""
    return db.with_name(f"{db.stem}.identity.json")


def utc_text(timestamp: float) -> str:
    """A UNIX time as the record writes it (UTC, seconds, `Z`)."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_identity(db: Path) -> dict[str, str] | None:
    """The record of `db`, or None when there is none.

    A record that cannot be parsed still says an outbox was made here: it is answered as
    `{"created": "unknown"}` (with a warning), never as "no record".
    """
    path = identity_path(db)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_RECORD_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("cannot read the outbox record %s: %s", path, exc)
        return {"created": "unknown"}
    try:
        value = json.loads(raw) if len(raw) <= MAX_RECORD_BYTES else None
    except (ValueError, UnicodeDecodeError):
        value = None
    if not isinstance(value, dict):
        log.warning("the outbox record %s is not what Lineside writes; keeping it", path)
        return {"created": "unknown"}
    return {str(k): str(v) for k, v in value.items()}


def is_missing(db: Path) -> bool:
    """Whether the file `db` is absent or has no bytes (SQLite would open either as new)."""
    try:
        return db.stat().st_size == 0
    except FileNotFoundError:
        return True


def missing_problem(db: Path) -> str | None:
    """Why `db` must not be opened as a new outbox (it was recorded, and is gone), or None."""
    record = read_identity(db)
    if record is None or not is_missing(db):
        return None
    state = "missing" if not db.exists() else "empty"
    return (
        f"outbox {db} is {state}, but {identity_path(db).name} records an outbox created there"
        f" on {record.get('created', 'unknown')}: restore {db.name} (and its -wal file) from a"
        " backup, or start a new sequence at seq 1 deliberately"
    )


def write_identity(
    db: Path, *, created: str, labels: Mapping[str, str], previous: str | None = None
) -> None:
    """Write the record of `db` atomically (raises `OSError` if it cannot be written)."""
    clash = RESERVED.intersection(labels)
    if clash:
        raise ValueError(f"labels must not use the record's own keys: {sorted(clash)}")
    record = {"file": db.name, "created": created, **labels}
    if previous is not None:
        record["previous"] = previous
    path = identity_path(db)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def set_aside_orphans(db: Path) -> list[Path]:
    """Rename the -wal/-shm files of a missing `db` to `*.orphan`; returns the new names.

    SQLite would replay an old WAL into the new file. Nothing is deleted.
    """
    moved = []
    for suffix in ("-wal", "-shm"):
        side = db.with_name(db.name + suffix)
        if side.exists():
            target = side.with_name(side.name + ".orphan")
            side.replace(target)
            moved.append(target)
    return moved


def start_anew(db: Path, recorded: dict[str, str], *, allowed: bool) -> str:
    """Refuse to open the recorded, now missing or empty `db` (`OutboxMissing`), unless allowed.

    When `allowed`, its orphaned WAL is set aside and the answer says what the new sequence
    leaves out (also logged as an error).
    """
    problem = missing_problem(db) or f"outbox {db} is missing"
    if not allowed:
        raise OutboxMissing(problem)
    moved = set_aside_orphans(db)
    started = (
        f"outbox {db} started anew at seq 1 on request; the outbox created"
        f" {recorded.get('created', 'unknown')} is not in it"
    )
    log.error("%s (%s)", started, problem)
    for path in moved:
        log.warning("outbox: %s set aside (it belonged to the missing file)", path)
    return started


def record(
    db: Path,
    *,
    first_event: float | None,
    labels: Mapping[str, str],
    previous: Mapping[str, str] | None,
) -> None:
    """Write the record of a newly made (or newly recorded) outbox; `OutboxError` if it fails.

    `created` is the first event's time (an outbox older than the record), or now.
    """
    try:
        write_identity(
            db,
            created=utc_text(time.time() if first_event is None else float(first_event)),
            labels=labels,
            previous=None if previous is None else previous.get("created", "unknown"),
        )
    except OSError as exc:
        raise OutboxError(f"cannot write the outbox record beside {db}: {exc}") from exc
