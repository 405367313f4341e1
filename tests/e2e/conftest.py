"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

INTEROP = Path(__file__).resolve().parent.parent / "interop"


@pytest.fixture(scope="session")
def node_smsc() -> list[str]:
    """The command that runs the interop SMSC; installs its npm package on first use."""
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        if shutil.which("apt-get") is None:
            pytest.skip("Node.js is not installed and apt-get is not available to install it")
        pytest.fail("Node.js and npm are needed (Debian packages nodejs, npm); scripts/test installs them")
    if not (INTEROP / "node_modules" / "smpp" / "package.json").is_file():
        cmd = [npm, "ci", "--no-audit", "--no-fund"]
        done = subprocess.run(cmd, cwd=INTEROP, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            cmd = [npm, "install", "--no-audit", "--no-fund"]
            done = subprocess.run(cmd, cwd=INTEROP, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            pytest.fail(f"`{' '.join(cmd)}` in tests/interop failed:\n{done.stdout}\n{done.stderr}")
    return [node, str(INTEROP / "smsc.js")]
