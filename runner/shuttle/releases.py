"""The OpenEMR releases Shuttle knows (data/openemr-releases.json, the one place they are listed).

An image tag names its release (`8.4.0`, a patch build `8.0.0.3`, a dated build `8.4.0-2026-09-20`); the
file says which upgrade marker that release's image leaves in the site and whether to run it. The config
refuses a release that is known to break data or was never released, before any host is touched: once an
image has migrated a site there is no way down again.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

#: current: the newest production release; end-of-life: no more image rebuilds; known-bad: never run it, not
#: even as a step on the way; never-released: cut, then abandoned.
STATUSES = ("current", "supported", "end-of-life", "known-bad", "never-released")
REFUSED = ("known-bad", "never-released")

_TAG = re.compile(r"(?P<version>[0-9]+\.[0-9]+\.[0-9]+)(\.[0-9]+)?(-[0-9]{4}-[0-9]{2}-[0-9]{2})?")


@dataclass(frozen=True)
class Release:
    version: str
    #: The marker (sites/default/docker-version) the release's image writes once it has set up or migrated a site.
    docker_version: int
    status: str
    note: str


@cache
def known() -> tuple[Release, ...]:
    """Every release in the data file, oldest first."""
    text = resources.files("shuttle").joinpath("data/openemr-releases.json").read_text(encoding="utf-8")
    releases = tuple(Release(**entry) for entry in json.loads(text)["releases"])
    for release in releases:
        if release.status not in STATUSES:
            raise ValueError(f"openemr-releases.json: {release.version} has an unknown status {release.status!r}")
    return releases


def tag_of(image: str) -> str | None:
    """The tag of an image reference (`name:tag@sha256:...`), None when it has none (a digest alone)."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def of_image(image: str) -> Release | None:
    """The known release an OpenEMR image's tag names, if any."""
    match = _TAG.fullmatch(tag_of(image) or "")
    if not match:
        return None
    return next((release for release in known() if release.version == match.group("version")), None)


def runnable(image: str) -> str:
    """An OpenEMR image reference, refused when its release is known to be bad or was never released."""
    release = of_image(image)
    if release is not None and release.status in REFUSED:
        current = next(r.version for r in known() if r.status == "current")
        raise ValueError(
            f"names OpenEMR {release.version}, which is {release.status.replace('-', ' ')}: {release.note}"
            f" (the current release is {current})"
        )
    return image


def markdown_table() -> str:
    """The README's table of releases, made from the data file (a unit test keeps the README equal to it)."""
    lines = ["| Release | Marker | Status | Note |", "|---|---|---|---|"]
    lines += [f"| {r.version} | {r.docker_version} | {r.status} | {r.note} |" for r in known()]
    return "\n".join(lines) + "\n"
