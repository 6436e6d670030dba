"""The wheel carries everything the roles need, and an installed `shuttle` works from any directory."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_carries_every_playbook_role_file_and_the_agent(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("shuttle-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    tracked = subprocess.run(
        ["git", "ls-files", "playbooks", "roles"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    missing = [path for path in tracked if f"shuttle/content/{path}" not in names]
    assert missing == [], f"the wheel lacks {missing}"
    agent = [path for path in tracked if path.startswith("roles/agent/files/shuttle_host/")]
    assert agent and all(f"shuttle_host/{Path(path).name}" in names for path in agent)

    # Installed on its own, away from this checkout, it finds its playbooks and validates a config.
    target = tmp_path / "installed"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run(
        [sys.executable, "-c", "import shuttle, shuttle_host; from shuttle import content;"
         "print(shuttle.__file__, shuttle_host.__file__, content.playbook('launch'), sep='\\n')"],
        cwd="/", env=env, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert all(Path(path).is_relative_to(target) and Path(path).exists() for path in where), where
    schema = subprocess.run(
        [sys.executable, "-m", "shuttle", "schema"], cwd="/", env=env, capture_output=True, text=True, check=False
    )
    assert schema.returncode == 0 and '"images_bundle"' in schema.stdout, schema.stderr
