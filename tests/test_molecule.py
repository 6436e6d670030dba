"""The molecule scenario: converge launch.yml on Debian 12 and 13, check idempotence, verify with testinfra."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from shuttle.config import ShuttleConfig
from tests.conftest import stack_config
from tests.harness import hosts

ROOT = Path(__file__).resolve().parent.parent


def test_default_scenario(base_images, tmp_path) -> None:
    config = tmp_path / "shuttle.json"
    # Molecule reaches its hosts with `docker exec`, so root has no authorized key there; the ssh role's
    # lockout guard would rightly refuse to make SSH key-only. An admin key in the config is what users give.
    admin_key = hosts.ssh_key().with_suffix(".pub").read_text().strip()
    settings = ShuttleConfig(**stack_config(ssh={"admin_keys": [admin_key]}))
    config.write_text(json.dumps(settings.to_extravars()))
    env = {
        **os.environ,
        "SHUTTLE_IMAGE_DEBIAN12": base_images["debian12"],
        "SHUTTLE_IMAGE_DEBIAN13": base_images["debian13"],
        "SHUTTLE_MOLECULE_CONFIG": str(config),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "NO_COLOR": "1",
    }
    proc = subprocess.run(
        ["molecule", "test", "--scenario-name", "default"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600, check=False,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    for step in ("converge", "idempotence", "verify"):
        assert f"default > {step}: Executed: Successful" in output, f"molecule step {step} did not succeed"
