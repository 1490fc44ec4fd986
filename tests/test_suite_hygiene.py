"""The test suite keeps its own promises: its leak checks bite, its markers and make targets exist.

- The leak check of conftest.py fails a test that leaves an asyncio task running (a real pytest
  run, in a scratch directory, over a test that forgets its task and one that ends it).
- Every marker registered in pyproject.toml is used by some test (an unused one promises a
  selection that selects nothing).
- Every `make TARGET` the README names is a target of the Makefile.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"

LEAKY = """
import asyncio


async def test_leaves_a_task() -> None:
    asyncio.create_task(asyncio.sleep(3600), name="forgotten")


async def test_ends_its_task() -> None:
    task = asyncio.create_task(asyncio.sleep(3600), name="ended")
    task.cancel()


def test_without_a_loop() -> None:
    assert True
"""


def test_the_leak_check_fails_a_test_that_leaves_a_task_behind(tmp_path: Path) -> None:
    # conftest.py and every helper module beside it (what conftest imports grows over time).
    for helper in TESTS.glob("*.py"):
        if not helper.name.startswith("test_"):
            shutil.copy(helper, tmp_path / helper.name)
    (tmp_path / "test_leaky.py").write_text(LEAKY)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "asyncio_mode=auto",
            "-o",
            "asyncio_default_fixture_loop_scope=function",
            "test_leaky.py",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert "3 passed, 1 error" in out, out
    assert "ERROR at teardown of test_leaves_a_task" in out, out
    assert "asyncio tasks left running: ['forgotten']" in out, out


def test_every_registered_marker_is_used() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    markers = [m.split(":")[0] for m in config["tool"]["pytest"]["ini_options"]["markers"]]
    code = "\n".join(p.read_text(encoding="utf-8") for p in TESTS.rglob("*.py"))
    unused = [m for m in markers if f"mark.{m}" not in code]
    assert not unused, f"markers registered but used by no test: {unused}"


def test_the_make_targets_the_readme_names_exist() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    named = set(re.findall(r"`make ([a-z][a-z-]*)", readme))
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, re.MULTILINE))
    assert named, "the README names no make target"
    assert named <= targets, f"the README names targets the Makefile lacks: {named - targets}"
