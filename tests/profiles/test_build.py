"""The committed profile JSON is what a fresh, offline SUSHI build of the FSH sources gives.

Needs node and npm (present here and in CI); the first run installs the pinned tools with
``npm ci`` into scripts/profiles/node_modules (git-ignored).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None,
    reason="node and npm are needed to run SUSHI",
)


@pytest.mark.timeout(600)
def test_committed_profiles_equal_a_fresh_build() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "profiles" / "build.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, (
        "profiles/ is stale: run `python scripts/profiles/build.py` and commit the result\n"
        + result.stdout
        + result.stderr
    )
