"""An instance's own settings at first boot: cloud-init user-data, or a file dropped on the image.

The names are shuttle.yml's (`acme: {email}` is `acme.email`), and every value is judged by the same
rules `shuttle launch` applies (`rules`), so a value the controller accepts is never refused here.
A bad value is refused with the setting, its value (hidden for secrets and hashes) and what is allowed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from shuttle_host import rules
from shuttle_host.errors import Refused

#: Settings an instance may set, and the rule each value must follow.
RULES: dict[str, Callable[[str], str]] = {
    "domain": rules.hostname,
    "acme.email": rules.email,
    "admin_password_hash": rules.password_hash,
    "backup.target": rules.backup_target,
    "backup.s3_access_key_id": lambda value: value,
    "backup.s3_secret_access_key": lambda value: value,
}
HIDDEN = {"admin_password_hash", "backup.s3_secret_access_key"}
SECTIONS = ("acme", "backup")


def _yaml(text: str, source: str) -> Any:
    try:
        import yaml  # noqa: PLC0415  (python3-yaml: the agent's one import outside the standard library)
    except ImportError:
        raise Refused(f"{source}: reading it needs PyYAML (apt-get install python3-yaml)") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise Refused(f"{source}: not valid YAML ({' '.join(str(error).split())})") from None


def from_user_data(path: Path) -> dict[str, Any]:
    """The `shuttle:` mapping of a #cloud-config user-data; {} for none (other formats are not ours)."""
    if not path.is_file():
        return {}
    text = path.read_text(errors="replace")
    if not text.startswith("#cloud-config"):
        return {}
    data = _yaml(text, str(path))
    section = data.get("shuttle") if isinstance(data, dict) else None
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise Refused(f"{path}: 'shuttle' must be a mapping of settings")
    return section


def from_file(path: Path) -> dict[str, Any]:
    """A settings file dropped on the image or the instance; {} when there is none."""
    if not path.is_file():
        return {}
    data = _yaml(path.read_text(), str(path)) or {}
    if not isinstance(data, dict):
        raise Refused(f"{path}: expected a mapping of settings")
    return data


def flatten(data: dict[str, Any], source: str) -> dict[str, str]:
    """shuttle.yml's nested names as dotted keys, each known and a non-empty string.

    A setting left empty (YAML's null) is not set, as in shuttle.yml.
    """
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in SECTIONS and isinstance(value, dict):
            flat.update({f"{key}.{inner}": item for inner, item in value.items()})
        else:
            flat[str(key)] = value
    flat = {key: value for key, value in flat.items() if value is not None}
    for key, value in flat.items():
        if key not in RULES:
            raise Refused(f"{source}: unknown setting {key!r} (allowed: {', '.join(sorted(RULES))})")
        if not isinstance(value, str) or not value:
            raise Refused(f"{source}: setting {key!r} must be a non-empty string")
    return flat


def check(seed: dict[str, str], source: str) -> None:
    """Every value by its rule; an s3: target needs both keys."""
    for key, value in seed.items():
        try:
            RULES[key](value)
        except ValueError as problem:
            shown = "(hidden)" if key in HIDDEN else repr(value)
            raise Refused(f"{source}: setting {key!r} = {shown}: {problem}") from None
    if seed.get("backup.target", "").startswith("s3:"):
        for key in ("backup.s3_access_key_id", "backup.s3_secret_access_key"):
            if key not in seed:
                raise Refused(f"{source}: an s3: backup.target needs {key}")


def read(seed_file: Path, user_data: Path) -> tuple[dict[str, str], str]:
    """The instance's settings: the dropped file, overridden by the user-data; and where they came from."""
    seed: dict[str, str] = {}
    sources: list[str] = []
    for path, reader in ((seed_file, from_file), (user_data, from_user_data)):
        found = flatten(reader(path), str(path))
        if not found:
            continue
        if "backup.target" in found:  # a target comes with its own credentials, never mixed with another's
            seed = {key: value for key, value in seed.items() if not key.startswith("backup.")}
        seed.update(found)
        sources.append(str(path))
    source = " + ".join(sources) or "baked settings"
    check(seed, source)
    return seed, source
