"""The wheel must carry playbooks and roles, so an installed `shuttle` works from any directory."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_carries_playbooks_and_roles(tmp_path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("shuttle-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "shuttle/content/playbooks/launch.yml" in names
    assert "shuttle/content/roles/preflight/tasks/main.yml" in names
    assert "shuttle/content/roles/preflight/meta/argument_specs.yml" in names
    assert "shuttle/cli.py" in names
