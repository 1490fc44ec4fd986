r"""The file destination: `FileDestinationConfig` and `FileSink`, which drops complete files.

Each `send` writes ONE complete file and returns only once it is durable: the file is written
under a dot-prefixed temporary name in the target directory (`.lineside-….tmp`, which readers
ignore), flushed and fsynced, renamed to its final name, and the directory is fsynced. A crash
mid-write leaves only a temporary file, which the sink deletes when it starts; a complete file
is never lost and a partial file is never visible. "Acknowledged" therefore means "a durable,
complete file", which is what the Sink contract asks for; batching (and so file size) follows
the publisher's batches, at most `max_events_per_file` per file.

File names sort by time and never collide:
``{prefix}-{UTC yyyymmddThhmmss.ffffff}Z-{first_seq:012d}.{ext}``; the time is strictly
increasing within a sink (also when the system clock steps back, and past the newest file
already in the directory at start). Two sinks must not share a directory and prefix.

Formats:

- ``jsonl``: one envelope (its payload bytes, unchanged) per line, ``\n``-terminated.
- ``csv``: RFC 4180 (``\r\n`` line ends, UTF-8 without BOM), a header row, then one row per
  event with the columns ``id, seq, type, time, site, node, source, data`` (``data`` as compact
  JSON). Against spreadsheet formula injection, every cell starting with ``=``, ``+``, ``-``,
  ``@``, a tab or a carriage return gets a single quote ``'`` in front (OWASP's advice), so a
  scanned ``=HYPERLINK(...)`` is shown as text, never evaluated. Readers that need the raw
  value strip that one leading quote, or use ``jsonl``.

An envelope whose payload is not a JSON object (csv) or not JSON at all (jsonl, only checked
when it spans lines) is refused for good: the others of the batch are written, then
`SinkRejected(ids=...)` names the refused ones. OSErrors (disk full, permissions, the
directory gone) are `SinkUnavailable` with the OS's reason.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path  # noqa: TC003  # pydantic resolves the annotations at runtime
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, Self, TypeVar

from pydantic import Field

from sync.base import DestinationConfig, SinkRejected, SinkUnavailable

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from types import TracebackType

    from sync.base import Envelope

log = logging.getLogger(__name__)

CSV_COLUMNS = ("id", "seq", "type", "time", "site", "node", "source", "data")
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
STAMP_FORMAT = "%Y%m%dT%H%M%S.%f"
ONE_TICK = timedelta(microseconds=1)

P = ParamSpec("P")
T = TypeVar("T")


class FileDestinationConfig(DestinationConfig):
    """A destination that is a directory receiving complete csv or jsonl files."""

    kind: Literal["file"] = Field(description='Destination kind: "file".')
    dir: Path = Field(description="Directory the files are dropped into (created if missing).")
    format: Literal["csv", "jsonl"] = Field(
        default="jsonl", description='"jsonl" (one envelope per line) or "csv".'
    )
    max_events_per_file: int = Field(
        default=1000, ge=1, le=1_000_000, description="Most events in one file."
    )
    max_file_age_s: float = Field(
        default=60,
        gt=0,
        description=(
            "Most seconds an event may wait before it is in a complete file. Each batch is "
            "written as one complete file at once, so files never stay open this long."
        ),
    )
    prefix: str = Field(
        default="lineside",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$",
        description="Start of every file name (letters, digits, '-' and '_').",
    )


def neutralise(cell: str) -> str:
    """Make `cell` safe from spreadsheet formula injection (a leading `'` when needed)."""
    return f"'{cell}" if cell.startswith(FORMULA_TRIGGERS) else cell


def csv_cell(column: str, value: Any) -> str:
    """Render one envelope field as CSV text: `data` and non-strings as compact JSON."""
    if value is None and column != "data":
        return ""
    if isinstance(value, str) and column != "data":
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def render_csv(batch: Sequence[Envelope]) -> tuple[bytes, list[str]]:
    """Render the CSV file for `batch`; also return the ids of payloads that are not objects."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    refused: list[str] = []
    for envelope in batch:
        try:
            event = json.loads(envelope.payload)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            refused.append(envelope.id)
            continue
        writer.writerow([neutralise(csv_cell(c, event.get(c))) for c in CSV_COLUMNS])
    return text.getvalue().encode("utf-8"), refused


def render_jsonl(batch: Sequence[Envelope]) -> tuple[bytes, list[str]]:
    """Render the JSON Lines file for `batch`; also return ids of multi-line non-JSON payloads."""
    lines: list[bytes] = []
    refused: list[str] = []
    for envelope in batch:
        payload = envelope.payload
        if b"\n" in payload or b"\r" in payload:
            # Pretty-printed JSON would span lines: re-encode it compactly to keep one per line.
            try:
                payload = json.dumps(
                    json.loads(payload), separators=(",", ":"), ensure_ascii=False
                ).encode("utf-8")
            except ValueError:
                refused.append(envelope.id)
                continue
        lines.append(payload + b"\n")
    return b"".join(lines), refused


def fsync_directory(directory: Path) -> None:
    """Make a rename in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_complete_file(directory: Path, name: str, content: bytes) -> None:
    """Write `content` as `directory/name` so that readers only ever see the complete file."""
    final = directory / name
    temporary = directory / f".{name}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(content)
            stream.flush()
            os.fsync(stream.fileno())
        temporary.rename(final)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_directory(directory)


def utc_now() -> datetime:
    """Tell the current UTC time (the default clock of `FileSink`)."""
    return datetime.now(UTC)


class FileSink:
    """Writes each batch as one complete csv or jsonl file into a directory.

    `async with` creates the directory and removes temporary files left by a crash. File I/O
    runs in a worker thread, one write at a time (`window` is 1). `clock` gives the UTC time
    that names the files (tests pass a fixed one).
    """

    def __init__(
        self, config: FileDestinationConfig, *, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self._config = config
        self._clock = clock
        self._extension = config.format
        self._name_pattern = re.compile(
            rf"^{re.escape(config.prefix)}-(\d{{8}}T\d{{6}}\.\d{{6}})Z-\d{{12}}\.{config.format}$"
        )
        self._last_stamp = datetime.min.replace(tzinfo=UTC)
        self._lock = asyncio.Lock()
        self._open = False

    @property
    def max_batch(self) -> int:
        """One batch is one file."""
        return self._config.max_events_per_file

    @property
    def linger_s(self) -> float:
        """A file rolls at `max_events_per_file` events or `max_file_age_s` after its first one.

        (`sync.base.Lingering`: the publisher holds a part-full batch back that long.)
        """
        return self._config.max_file_age_s

    @property
    def window(self) -> int:
        """One file at a time, so that names and contents follow the outbox order."""
        return 1

    async def __aenter__(self) -> Self:
        try:
            await self._in_thread(self._prepare_directory)
        except OSError as exc:
            raise SinkUnavailable(
                f"{self._config.name}: directory {self._config.dir}: {exc.strerror or exc}"
            ) from exc
        self._open = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._open = False

    async def send(self, batch: Sequence[Envelope]) -> None:
        """Write `batch` as one complete file; return once it is durable."""
        if not batch:
            return
        if not self._open:
            raise SinkUnavailable(f"{self._config.name}: the file sink is not open")
        try:
            name, count, refused = await self._in_thread(self._write_batch, batch)
        except OSError as exc:
            raise SinkUnavailable(
                f"{self._config.name}: cannot write to {self._config.dir}: {exc.strerror or exc}"
            ) from exc
        if name is not None:
            log.debug("file destination %s wrote %s (%d events)", self._config.name, name, count)
        if refused:
            raise SinkRejected(
                f"{self._config.name}: payload is not a JSON object for {self._config.format}",
                ids=refused,
            )

    async def _in_thread(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run blocking file I/O in a worker thread, one call at a time.

        A thread cannot be stopped: when the caller is cancelled, the lock is held until the
        write has finished, so that the next write never overlaps it.
        """
        async with self._lock:
            work = asyncio.ensure_future(asyncio.to_thread(function, *args, **kwargs))
            try:
                return await asyncio.shield(work)
            except asyncio.CancelledError:
                await asyncio.wait([work])
                if not work.cancelled():
                    work.exception()  # retrieved: the caller is gone, the error is moot
                raise

    def _prepare_directory(self) -> None:
        """Create the directory, drop leftover temporaries, and note the newest file's time."""
        directory = self._config.dir
        directory.mkdir(parents=True, exist_ok=True)
        for leftover in directory.glob(f".{self._config.prefix}-*.tmp"):
            log.warning(
                "file destination %s: removing %s left by an interrupted write",
                self._config.name,
                leftover.name,
            )
            leftover.unlink(missing_ok=True)
        for entry in directory.iterdir():
            match = self._name_pattern.match(entry.name)
            if match is not None:
                stamp = datetime.strptime(match[1], STAMP_FORMAT).replace(tzinfo=UTC)
                self._last_stamp = max(self._last_stamp, stamp)

    def _write_batch(self, batch: Sequence[Envelope]) -> tuple[str | None, int, list[str]]:
        """Render and write one file; return its name (None if empty), size and refused ids."""
        render = render_csv if self._config.format == "csv" else render_jsonl
        content, refused = render(batch)
        count = len(batch) - len(refused)
        if count == 0:
            return None, 0, refused
        refused_ids = set(refused)
        first_seq = next(e.seq for e in batch if e.id not in refused_ids)
        name = self._next_name(first_seq)
        write_complete_file(self._config.dir, name, content)
        return name, count, refused

    def _next_name(self, first_seq: int) -> str:
        """Pick a name later than every earlier one and not taken in the directory."""
        stamp = max(self._clock().astimezone(UTC), self._last_stamp + ONE_TICK)
        while True:
            name = (
                f"{self._config.prefix}-{stamp:{STAMP_FORMAT}}Z-{first_seq:012d}.{self._extension}"
            )
            if not (self._config.dir / name).exists():
                self._last_stamp = stamp
                return name
            stamp += ONE_TICK
