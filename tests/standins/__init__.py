"""Stand-in images for the stack (database, OpenEMR, proxy), built offline from Debian packages.

The real images (mariadb, openemr/openemr, caddy) cannot be pulled where the tests run: there is no
registry. Shuttle itself supports an "offline images bundle" (a `docker save` tarball loaded with
`docker load`), so the tests build small look-alikes that honour the same environment contracts, paths
and volumes, tag them with the names the test config asks for, and hand them over as such a bundle.
They exist only for tests; production defaults stay the real images.

Every image starts from one shared minbase root filesystem (debootstrap + `docker import`, as the test
hosts are made), then a `docker build` of a small context directory next to this file. An image is
rebuilt when the hash of its recipe (the base recipe plus every file of its context) differs from the
hash stored in the image's label, so editing a PHP page or an entrypoint is enough to trigger a rebuild.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tests.harness import images, progress

HERE = Path(__file__).resolve().parent

#: Where the OpenEMR login form posts to, in the stand-in as in OpenEMR 7 (fail2ban's filter counts it).
LOGIN_POST = "/interface/main/main_screen.php?auth=login&site=default"

#: Config key (`images.<key>`) -> stand-in tag. The tags say "stand-in" so nobody mistakes them for the real images.
IMAGES: dict[str, str] = {
    "openemr": "shuttle-standin/openemr:7.0.3",
    "mariadb": "shuttle-standin/mariadb:11.4",
    "proxy": "shuttle-standin/caddy:2.6",
}

#: Image key -> build context directory (holds the Dockerfile and the files copied into the image).
CONTEXTS: dict[str, str] = {"openemr": "openemr", "mariadb": "mariadb", "proxy": "caddy"}

RECIPE_LABEL = "io.shuttle.standin.recipe"
STATE_DIR = Path(os.environ.get("SHUTTLE_TEST_STATE", "/var/tmp/shuttle-test"))

BASE_SUITE = "bookworm"
#: Bump to force every stand-in to be rebuilt from a fresh debootstrap.
BASE_REVISION = 1

#: What Debian's own slim images leave out; dpkg then never unpacks it, keeping every layer small.
DPKG_EXCLUDES = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
"""

#: No recommends (the smallest working set) and no package caches left behind in the layers.
APT_CONF = """\
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb || true"; };
"""

#: Keeps package maintainer scripts from starting daemons during a build, as in Debian's docker images.
POLICY_RC_D = "#!/bin/sh\nexit 101\n"


def _digest(data: object) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def base_tag() -> str:
    """Tag of the shared root filesystem; a hash of everything that goes into it."""
    recipe = {
        "suite": BASE_SUITE,
        "mirror": images.UPSTREAM_MIRROR,
        "dpkg": DPKG_EXCLUDES,
        "apt": APT_CONF,
        "policy": POLICY_RC_D,
        "revision": BASE_REVISION,
    }
    return f"shuttle-standin/base:{BASE_SUITE}-{_digest(recipe)}"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _slim_rootfs(root: Path) -> None:
    """Strip what containers never use and configure dpkg/apt so later installs stay slim."""
    (root / "etc/dpkg/dpkg.cfg.d/excludes").write_text(DPKG_EXCLUDES)
    (root / "etc/apt/apt.conf.d/90shuttle-standin").write_text(APT_CONF)
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text(POLICY_RC_D)
    policy.chmod(0o755)
    (root / "etc/apt/sources.list").unlink(missing_ok=True)
    (root / "etc/apt/sources.list.d/debian.sources").write_text(images.apt_sources(BASE_SUITE))
    for tree in ("usr/share/man", "usr/share/info", "usr/share/groff", "usr/share/lintian", "usr/share/locale"):
        for child in (root / tree).glob("*"):
            if child.name != "locale.alias":
                _remove(child)
    for doc in (root / "usr/share/doc").glob("*"):
        if doc.is_dir() and not doc.is_symlink():
            for item in doc.iterdir():
                if item.name != "copyright":
                    _remove(item)
    for pattern in ("var/cache/apt/*.bin", "var/cache/apt/archives/*.deb", "var/cache/debconf/*-old", "var/log/*.log"):
        for child in root.glob(pattern):
            child.unlink()
    shutil.rmtree(root / "var/lib/apt/lists", ignore_errors=True)
    (root / "var/lib/apt/lists/partial").mkdir(parents=True)


def build_base(*, force: bool = False) -> str:
    """Debootstrap the shared minbase tree once; every stand-in's Dockerfile starts FROM it."""
    tag = base_tag()
    if images.image_exists(tag) and not force:
        return tag
    old = _image_id(tag)
    with (
        progress.step(f"building the stand-ins' base image (debootstrap {BASE_SUITE})"),
        tempfile.TemporaryDirectory(prefix="shuttle-standin-", dir="/var/tmp") as tmp,
    ):
        root = Path(tmp) / "rootfs"
        images.debootstrap(root, BASE_SUITE)
        _slim_rootfs(root)
        images.import_rootfs(root, tag, ('CMD ["bash"]',))
    _remove_superseded(old, tag)
    return tag


@dataclass(frozen=True)
class StandIn:
    """One stand-in image: its tag and the directory that is its `docker build` context."""

    key: str
    tag: str
    context: Path

    def files(self) -> list[Path]:
        return sorted(p for p in self.context.rglob("*") if p.is_file() and "__pycache__" not in p.parts)

    def recipe_hash(self, base: str) -> str:
        """Hash of the base image tag and of every file (path, mode, content) the build reads."""
        h = hashlib.sha256(base.encode())
        for path in self.files():
            rel = path.relative_to(self.context).as_posix()
            h.update(f"\0{rel}\0{path.stat().st_mode & 0o111:o}\0".encode())
            h.update(path.read_bytes())
        return h.hexdigest()[:16]


STANDINS: dict[str, StandIn] = {key: StandIn(key, tag, HERE / CONTEXTS[key]) for key, tag in IMAGES.items()}


def _label(tag: str) -> str | None:
    """The recipe hash stored on an existing image, or None when there is no such image."""
    out = subprocess.run(
        ["docker", "image", "inspect", "--format", f'{{{{index .Config.Labels "{RECIPE_LABEL}"}}}}', tag],
        check=False,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() if out.returncode == 0 else None


def _image_id(tag: str) -> str | None:
    out = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", tag], check=False, capture_output=True, text=True
    )
    return out.stdout.strip() if out.returncode == 0 else None


def _remove_superseded(old: str | None, tag: str) -> None:
    """Drop the image a rebuild untagged, unless a container or a child image still uses it."""
    if old and old != _image_id(tag):
        subprocess.run(["docker", "image", "rm", old], check=False, capture_output=True)


def _build_args() -> list[str]:
    """Let apt inside `docker build` fetch through the host's apt cache when one runs.

    The build uses the host's network so the cache at 127.0.0.1 is reachable as is; `http_proxy` is one
    of Docker's predefined build args, which stay out of the image history and the layer cache key.
    """
    if images.apt_cache_reachable():
        return ["--build-arg", f"http_proxy=http://127.0.0.1:{images.APT_CACHE_PORT}"]
    return []


def build(key: str, *, force: bool = False) -> str:
    """Build one stand-in unless an image with the same recipe hash exists; return its tag."""
    standin = STANDINS[key]
    base = build_base()
    digest = standin.recipe_hash(base)
    if not force and _label(standin.tag) == digest:
        return standin.tag
    old = _image_id(standin.tag)
    cmd = [
        "docker",
        "build",
        "--network=host",
        "--build-arg",
        f"BASE={base}",
        *_build_args(),
        "--label",
        f"{RECIPE_LABEL}={digest}",
        "--tag",
        standin.tag,
        *(["--no-cache"] if force else []),
        str(standin.context),
    ]
    # The classic builder uses local images as they are; BuildKit would try to resolve FROM in a registry.
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    with progress.step(f"building the stand-in image {standin.tag}"):
        result = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
        raise RuntimeError(f"docker build of {standin.tag} failed:\n{tail}")
    _remove_superseded(old, standin.tag)
    return standin.tag


def build_all(force: bool = False) -> dict[str, str]:
    """Build (or reuse) every stand-in, side by side; return config key -> tag, the shape of the config's `images`."""
    build_base()
    with ThreadPoolExecutor(max_workers=len(IMAGES)) as pool:
        return dict(zip(IMAGES, pool.map(lambda key: build(key, force=force), IMAGES), strict=True))


def bundle_hash() -> str:
    base = base_tag()
    return _digest({key: [standin.tag, standin.recipe_hash(base)] for key, standin in STANDINS.items()})


_bundling = threading.Lock()


def bundle(directory: Path = STATE_DIR, *, force: bool = False) -> Path:
    with _bundling:
        return _bundle(directory, force=force)


def _bundle(directory: Path, *, force: bool) -> Path:
    """The offline images bundle Shuttle loads onto test hosts: `docker save` of all three stand-ins.

    Named by a hash of all recipes, written under a temporary name and renamed when complete, so an
    interrupted save is never mistaken for a bundle. Bundles of older recipes are removed. The images
    are built (or found up to date) on every call, so they are also there to run on this machine.
    """
    # Images first, even when the bundle exists: callers may also run the images on this machine.
    tags = list(build_all(force=force).values())
    path = directory / f"standins-{bundle_hash()}.tar"
    if path.exists() and not force:
        return path
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".standins-", suffix=".tar.part", dir=directory)
    os.close(fd)
    try:
        with progress.step(f"saving the images bundle {path.name}"):
            subprocess.run(["docker", "save", "--output", tmp, *tags], check=True)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    for stale in directory.glob("standins-*.tar"):
        if stale != path:
            stale.unlink(missing_ok=True)
    return path


def config() -> dict[str, object]:
    """The Shuttle config keys that run these stand-ins from the offline bundle instead of the real images."""
    return {"images": dict(IMAGES), "images_bundle": str(bundle())}
