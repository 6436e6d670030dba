"""Command line for the test harness, for people and scripts (bench/, the README's launch command).

python -m tests.harness build                  build (or reuse) the Debian 12 and 13 base images
python -m tests.harness start [DISTRO]         start a test host, print its SSH target
python -m tests.harness launch [DISTRO] [ARGS] start a test host and run `shuttle launch` on it
                                               (with the stand-in images bundle unless --config is given)
python -m tests.harness destroy                remove every test host
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests import standins
from tests.harness import hosts, images


def standin_config(name: str) -> Path:
    """No registry is reachable here: launch the test stand-ins from the offline images bundle."""
    path = hosts.STATE_DIR / f"{name}.shuttle.yml"
    path.write_text(yaml.safe_dump(standins.config()))
    return path


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "help"
    if command == "build":
        for distro, tag in images.build_all().items():
            print(f"{distro}\t{tag}")
        return 0
    if command in ("start", "launch"):
        distro = argv[1] if len(argv) > 1 and not argv[1].startswith("-") else "debian13"
        host = hosts.start(distro)
        print(f"test host {host.name} ({distro}) is up: ssh -i {host.key} -p {host.ssh_port} root@127.0.0.1")
        if command == "start":
            return 0
        extra = [arg for arg in argv[1:] if arg != distro]
        if "--config" not in extra and "-c" not in extra:
            extra += ["--config", str(standin_config(host.name))]
        known_hosts = hosts.STATE_DIR / f"{host.name}.known_hosts"
        shuttle = [sys.executable, "-m", "shuttle", "launch", host.target, "--ssh-key", str(host.key),
                   "--known-hosts", str(known_hosts), *extra]  # fmt: skip
        print("$ " + " ".join(shuttle[1:]), flush=True)
        code = subprocess.run(shuttle, check=False).returncode
        print(f"remove the host with: docker rm -f -v {host.name}   (or: python -m tests.harness destroy)")
        return code
    if command == "destroy":
        hosts.destroy_all()
        return 0
    print(__doc__)
    return 0 if command == "help" else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
