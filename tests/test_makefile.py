"""The Makefile as a new user meets it: system packages first, a broken .venv made again, and
`make demo` without the test tools.

The real Makefile runs in a scratch directory holding a tiny project of the same shape (`demo`
and `dev` extras, no dependencies) and a stand-in for
packaging/system-deps.sh that records when it ran; pip installs offline (`PIP_NO_INDEX`, the
venv's own setuptools through setup.py), so nothing is downloaded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

STUB_PROJECT = "# the Makefile's stamps depend on this file; the stub is set up by setup.py\n"
STUB_SETUP = """from setuptools import setup

setup(name="stub", version="0", py_modules=[], extras_require={"demo": [], "dev": []})
"""

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make")


def scratch(tmp_path: Path) -> Path:
    """The Makefile, a stub project, and a system-deps stand-in that logs its profile."""
    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    (tmp_path / "pyproject.toml").write_text(STUB_PROJECT)
    (tmp_path / "setup.py").write_text(STUB_SETUP)
    deps = tmp_path / "packaging" / "system-deps.sh"
    deps.parent.mkdir()
    deps.write_text(
        '#!/bin/sh\necho "system-deps $1 venv-made=$(test -d .venv && echo yes || echo no)"'
        " >> steps.log\n"
    )
    deps.chmod(0o755)
    return tmp_path


def outer_env() -> dict[str, str]:
    """This environment without what an enclosing `make test` passes down to a sub-make."""
    return {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MAKELEVEL", "MFLAGS"}}


def make(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in outer_env().items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))}
    env |= {
        "PIP_NO_INDEX": "1",
        "PIP_NO_BUILD_ISOLATION": "0",  # pip's spelling of "no isolation"
        "PIP_USE_PEP517": "false",  # setup.py develop: no wheel package needed
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    return subprocess.run(
        ["make", f"PYTHON={sys.executable}", *args],
        cwd=directory,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env=env,
    )


def test_a_half_made_venv_is_made_again(tmp_path: Path) -> None:
    project = scratch(tmp_path)
    # what a first try leaves when ensurepip is missing: a python, no pip
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", project / ".venv"], check=True)
    assert (project / ".venv/bin/python").exists()
    done = make(project, ".venv/.installed-demo")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (project / ".venv/.installed-demo").exists()
    pip = subprocess.run([project / ".venv/bin/python", "-m", "pip", "--version"], check=False)
    assert pip.returncode == 0


def test_system_packages_come_before_the_venv(tmp_path: Path) -> None:
    project = scratch(tmp_path)
    done = make(project, ".venv/.installed")
    assert done.returncode == 0, done.stdout + done.stderr
    steps = (project / "steps.log").read_text().splitlines()
    assert steps[0] == "system-deps venv venv-made=no"


def test_demo_needs_neither_the_dev_extras_nor_chromium() -> None:
    # -B: as on a fresh clone, whatever this checkout's .venv already has
    demo = subprocess.run(
        ["make", "-n", "-B", "demo"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env=outer_env(),
    ).stdout
    assert "system-deps.sh demo" in demo
    installs = [line for line in demo.splitlines() if "pip install" in line and " -e " in line]
    assert installs
    assert all(line.endswith("-e '.[demo]'") for line in installs), installs
    assert "system-deps.sh test" not in demo  # the profile that brings chromium
    lines = demo.splitlines()
    assert lines[0].endswith("system-deps.sh demo")  # before anything else
    test = subprocess.run(
        ["make", "-n", "-B", "test"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env=outer_env(),
    ).stdout
    assert test.splitlines()[0].endswith("system-deps.sh test")


def test_ci_runs_make_test_with_nothing_from_the_callers_environment() -> None:
    probe = "$(info probe $(origin PYTHONDONTWRITEBYTECODE) $(origin LINESIDE_PROBE) $(LANG))"
    done = subprocess.run(
        [REPO / ".ci" / "run", "-n", f"--eval={probe}"],  # -n: print make test's commands only
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "LINESIDE_PROBE": "developer's"},
    )
    assert "probe undefined undefined C.UTF-8" in done.stdout
    assert "-m pytest" in done.stdout  # and it is `make test`
