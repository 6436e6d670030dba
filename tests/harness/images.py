"""Base images for disposable test hosts, built offline from Debian's mirror.

No registry is reachable where the tests run, so a "fresh VM" is a debootstrapped Debian root
filesystem turned into an image with `docker import`. Building one takes about a minute, so images
are tagged with a hash of their recipe and reused until the recipe changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import urllib.request
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.harness import progress

#: A minimal host: what `debootstrap --variant=minbase` gives plus an init, an SSH server, Python for Ansible
#: and sudo. Nothing else: every tool a role relies on, the role must install itself.
BASE_PACKAGES = ("python3", "systemd", "systemd-sysv", "openssh-server", "sudo")

#: Units that cannot work inside a container; masking them lets systemd reach "running".
MASKED_UNITS = ("systemd-modules-load.service", "sys-kernel-config.mount", "getty@tty1.service")

APT_CACHE_PORT = 3142
#: One build of an image at a time per tag (a session builds images while fixtures ask for them).
_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
UPSTREAM_MIRROR = os.environ.get("SHUTTLE_TEST_MIRROR", "http://deb.debian.org/debian")


@dataclass(frozen=True)
class Recipe:
    """Everything that determines an image's content; its hash is the image tag."""

    distro: str
    suite: str
    packages: tuple[str, ...] = BASE_PACKAGES
    masked: tuple[str, ...] = MASKED_UNITS
    mirror: str = UPSTREAM_MIRROR
    revision: int = 2

    @property
    def tag(self) -> str:
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]
        return f"shuttle-testhost:{self.distro}-{digest}"


RECIPES = {
    "debian12": Recipe(distro="debian12", suite="bookworm"),
    "debian13": Recipe(distro="debian13", suite="trixie"),
}


def apt_cache_reachable(host: str = "127.0.0.1") -> bool:
    """True when a local apt-cacher-ng answers; builds and test hosts then go through it."""
    try:
        with urllib.request.urlopen(f"http://{host}:{APT_CACHE_PORT}/acng-report.html", timeout=2):
            return True
    except OSError:
        return False


def image_exists(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], check=False, capture_output=True).returncode == 0


def _via_cache(url: str) -> str:
    """Rewrite a mirror URL to go through the local apt cache, if one runs."""
    if not apt_cache_reachable():
        return url
    return f"http://127.0.0.1:{APT_CACHE_PORT}/" + url.split("://", 1)[1]


def apt_sources(suite: str, mirror: str = UPSTREAM_MIRROR) -> str:
    """The deb822 sources a stock Debian install has; images point at the real mirror, not the cache."""
    security = mirror.rsplit("/", 1)[0] + "/debian-security"
    return (
        f"Types: deb\nURIs: {mirror}\nSuites: {suite} {suite}-updates\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        f"Types: deb\nURIs: {security}\nSuites: {suite}-security\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )


def _sources(recipe: Recipe) -> str:
    return apt_sources(recipe.suite, recipe.mirror)


def _finish_rootfs(root: Path, recipe: Recipe) -> None:
    """Make the debootstrapped tree look like a freshly provisioned cloud VM."""
    (root / "etc/apt/sources.list").unlink(missing_ok=True)
    (root / "etc/apt/sources.list.d/debian.sources").write_text(_sources(recipe))
    for unit in recipe.masked:
        link = root / "etc/systemd/system" / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    # An empty machine-id makes systemd generate a new one on every host's first boot.
    (root / "etc/machine-id").write_text("")
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    shutil.rmtree(root / "var/lib/apt/lists", ignore_errors=True)
    (root / "var/lib/apt/lists/partial").mkdir(parents=True)
    shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True)


def debootstrap(root: Path, suite: str, mirror: str = UPSTREAM_MIRROR, packages: tuple[str, ...] = ()) -> None:
    """Debootstrap a minbase tree at `root`, fetching through the local apt cache when one runs."""
    include = ["--include=" + ",".join(packages)] if packages else []
    subprocess.run(
        ["debootstrap", "--variant=minbase", *include, suite, str(root), _via_cache(mirror)],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def import_rootfs(root: Path, tag: str, changes: tuple[str, ...] = ()) -> None:
    """Turn a root filesystem tree into a single-layer image; `changes` are `docker import --change` lines."""
    tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
    subprocess.run(
        ["docker", "import", *(arg for change in changes for arg in ("--change", change)), "-", tag],
        stdin=tar.stdout,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    if tar.wait() != 0:
        raise RuntimeError(f"tar of {root} failed")


def build(recipe: Recipe, *, force: bool = False) -> str:
    """Build the image for `recipe` unless an image with its tag exists; return the tag."""
    with _locks[recipe.tag]:
        if image_exists(recipe.tag) and not force:
            return recipe.tag
        with (
            progress.step(f"building the {recipe.distro} test host image (debootstrap {recipe.suite})"),
            tempfile.TemporaryDirectory(prefix="shuttle-rootfs-", dir="/var/tmp") as tmp,
        ):
            root = Path(tmp) / "rootfs"
            debootstrap(root, recipe.suite, recipe.mirror, recipe.packages)
            _finish_rootfs(root, recipe)
            import_rootfs(root, recipe.tag, ('CMD ["/lib/systemd/systemd"]',))
    return recipe.tag


def build_all(distros: list[str] | None = None) -> dict[str, str]:
    """Build (or reuse) every requested base image, side by side; return distro -> tag."""
    names = distros or list(RECIPES)
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        return dict(zip(names, pool.map(lambda name: build(RECIPES[name]), names), strict=True))
