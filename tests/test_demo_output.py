"""The demo's live summary: one line rewritten in place on a terminal, plain lines in a log.

The demo runs as a user starts it, its output once a pipe (as when saved to a file or piped to
`tee`) and once a pseudo-terminal; the test reads what it wrote until two summaries came.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

SUMMARY = b"seq "  # how a summary starts


def _run_demo_until_two_summaries(tmp_path: Path, *, terminal: bool) -> bytes:
    """Everything the demo wrote to stdout until its second summary, then Ctrl-C and the rest."""
    if terminal:
        reader, writer = os.openpty()
    else:
        reader, writer = os.pipe()
    log = (tmp_path / "demo.log").open("wb")
    demo = subprocess.Popen(
        [
            *(
                sys.executable,
                "-m",
                "agent.cli",
                "demo",
                "--single",
                "--dir",
                str(tmp_path / "demo"),
            ),
            *("--listen", "127.0.0.1:0", "--rate", "10", "--batch-seconds", "1"),
        ],
        stdout=writer,
        stderr=log,
    )
    os.close(writer)
    log.close()
    out = b""
    try:
        deadline = time.monotonic() + 60
        while out.count(SUMMARY) < 2:
            assert time.monotonic() < deadline, f"no two summaries in 60 s:\n{out!r}"
            assert demo.poll() is None, (tmp_path / "demo.log").read_text()[-3000:]
            ready, _, _ = select.select([reader], [], [], 0.5)
            if ready:
                out += os.read(reader, 65536)
        demo.send_signal(signal.SIGINT)
        assert demo.wait(30) == 0
        with contextlib.suppress(OSError):  # a pty's reader gets EIO once the writer is gone
            while chunk := os.read(reader, 65536):
                out += chunk
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(10)
        os.close(reader)
    return out


def test_summary_is_plain_lines_when_not_a_terminal(tmp_path: Path) -> None:
    out = _run_demo_until_two_summaries(tmp_path, terminal=False)
    assert b"\r" not in out
    lines = out.decode().splitlines()
    summaries = [line for line in lines if line.startswith("seq ")]
    assert len(summaries) >= 2
    assert all("| batches" in line for line in summaries)
    assert lines[-1] == "Lineside demo stopped."


def test_summary_rewrites_one_line_on_a_terminal(tmp_path: Path) -> None:
    out = _run_demo_until_two_summaries(tmp_path, terminal=True)
    # the terminal turns "\n" into "\r\n": what is left is the summary's own rewrite
    live = out.replace(b"\r\n", b"\n")
    assert live.count(b"\r" + SUMMARY) >= 2
    assert b"\n" + SUMMARY not in live
