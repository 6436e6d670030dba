"""Where the playbooks and roles are: inside the installed package, or beside it in a source checkout.

The wheel carries `playbooks/` and `roles/` under `shuttle/content/`, so an installed `shuttle`
works from any directory; an editable install finds them at the top of the repository.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

_PACKAGE = Path(__file__).resolve().parent


def root() -> Path:
    """The directory holding `playbooks/` and `roles/`."""
    for candidate in (_PACKAGE / "content", _PACKAGE.parent.parent):
        if (candidate / "playbooks").is_dir() and (candidate / "roles").is_dir():
            return candidate
    raise RuntimeError(f"playbooks and roles not found next to {_PACKAGE}; the installation is incomplete")


def playbook(verb: str) -> Path:
    return root() / "playbooks" / f"{verb}.yml"


def roles() -> Path:
    return root() / "roles"


@cache
def layout() -> dict[str, Any]:
    """The host layout the playbooks wire into the roles (playbooks/group_vars/all/layout.yml)."""
    data = yaml.safe_load((root() / "playbooks" / "group_vars" / "all" / "layout.yml").read_text())
    return dict(data["shuttle_layout"])
