"""Where each socket of a test run was made, written beside the warning when one is left open.

An unclosed socket is found when the garbage collector frees it: for a socket held in a
reference cycle that can be several tests after the one that leaked it. The ResourceWarning
then fails that later test and names only the socket (`laddr=('127.0.0.1', 49834)`). Every
Python socket made during the run has its creation site recorded here (closing forgets it), and
an unraisable "unclosed socket" writes that site to stderr, which the failure report shows.
"""

from __future__ import annotations

import socket
import sys
import traceback
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

SITES: dict[int, str] = {}
"""id(socket) → the stack that made it, while it is open."""

_STACK_LIMIT = 16


def record_socket_sites() -> None:
    """Patch `socket.socket` (tests only) to remember where each socket is made."""
    if getattr(socket.socket, "_lineside_sites", False):
        return
    made: Callable[..., None] = socket.socket.__init__
    close: Callable[[socket.socket], None] = socket.socket.close

    def __init__(self: socket.socket, *args: Any, **kwargs: Any) -> None:  # noqa: N807
        made(self, *args, **kwargs)
        SITES[id(self)] = "".join(traceback.format_stack(limit=_STACK_LIMIT)[:-1])

    def closing(self: socket.socket) -> None:
        SITES.pop(id(self), None)
        close(self)

    socket.socket.__init__ = __init__  # type: ignore[method-assign]
    socket.socket.close = closing  # type: ignore[method-assign,assignment]
    socket.socket._lineside_sites = True  # type: ignore[attr-defined]


def name_unclosed_sockets() -> Callable[[], None]:
    """Wrap the unraisable hook (pytest's) to write where an unclosed socket was made.

    Returns the undo.
    """
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        site = SITES.pop(id(unraisable.object), None)
        if site is not None and isinstance(unraisable.object, socket.socket):
            sys.stderr.write(f"unclosed {unraisable.object!r} was made at:\n{site}\n")
        previous(unraisable)

    sys.unraisablehook = hook

    def undo() -> None:
        sys.unraisablehook = previous

    return undo
