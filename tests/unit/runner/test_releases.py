"""The OpenEMR releases Shuttle knows: one data file, the README's table made from it, and which image tags
name which release."""

from __future__ import annotations

from pathlib import Path

import pytest

from shuttle import releases

README = Path(__file__).resolve().parents[3] / "README.md"


def test_the_readme_table_is_the_data_file() -> None:
    assert releases.markdown_table() in README.read_text()


def test_releases_are_in_order_and_exactly_one_is_current() -> None:
    known = releases.known()
    markers = [release.docker_version for release in known]
    assert markers == sorted(markers) and len(set(markers)) == len(markers)
    assert [release.status for release in known].count("current") == 1


@pytest.mark.parametrize(
    ("image", "version"),
    [
        ("openemr/openemr:8.4.0", "8.4.0"),
        ("openemr/openemr:8.0.0.3", "8.0.0"),  # a patch build of 8.0.0
        ("openemr/openemr:8.4.0-2026-09-20", "8.4.0"),  # a dated, immutable build
        ("registry.example.org:5000/mirror/openemr:8.2.0@sha256:" + "a" * 64, "8.2.0"),
        ("openemr/openemr@sha256:" + "a" * 64, None),  # a digest alone names no release
        ("openemr/openemr:next", None),
        ("openemr/openemr:9.9.9", None),  # newer than this file: not refused, not known
    ],
)
def test_an_image_tag_names_its_release(image: str, version: str | None) -> None:
    release = releases.of_image(image)
    assert (release.version if release else None) == version


def test_a_known_bad_release_is_refused_and_others_pass() -> None:
    with pytest.raises(ValueError, match=r"8\.2\.0, which is known bad: .*openemr#13587"):
        releases.runnable("openemr/openemr:8.2.0-2026-07-10")
    for image in ("openemr/openemr:7.0.3", "openemr/openemr:8.4.0", "openemr/openemr:9.0.0"):
        assert releases.runnable(image) == image
