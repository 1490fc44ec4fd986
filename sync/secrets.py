"""Secrets kept in files (passwords, tokens): read at each connect, the trailing newline dropped.

The one reader for every destination's `password_file` / `bearer_token_file`, so that a file
saved with CRLF or without a final newline means the same secret everywhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import SecretStr

if TYPE_CHECKING:
    from pathlib import Path


def read_secret(path: Path) -> SecretStr:
    """Read the secret in `path` now, without its trailing newline. `OSError` if unreadable."""
    return SecretStr(path.read_text(encoding="utf-8").rstrip("\r\n"))


def read_optional_secret(path: Path | None) -> SecretStr | None:
    """`read_secret(path)`, or None when no file is configured."""
    return None if path is None else read_secret(path)
