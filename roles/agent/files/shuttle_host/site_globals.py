"""OpenEMR's globals that follow from Shuttle's settings: its time zone and its public address.

- `gbl_time_zone`: the image has no tzdata, so the container's `TZ` does nothing. OpenEMR takes its zone from
  this global: PHP's default zone and each database session's `time_zone` (interface/globals.php).
- `site_addr_oath`: OpenEMR builds its own absolute URLs (the OAuth2 issuer, FHIR, SMART and portal links)
  from `REQUEST_SCHEME` and the Host header. Behind the proxy the scheme is the app's own, plain http; with a
  domain it is told its https address. Without one the address users open is not known for certain (an IP
  the controller happened to use), so it is left as OpenEMR resolves it.

Both are set with OpenEMR's own code in the running app (openemr.set_globals), compared first, so a second
launch changes nothing; Shuttle owns them, as it owns the host's zone and the proxy's address.
"""

from __future__ import annotations

from pathlib import Path

from shuttle_host import openemr
from shuttle_host.settings import StackSettings
from shuttle_host.stack import Stack


def public_address(domain: str, https_port: int) -> str:
    """The https address a user opens, as OpenEMR writes it in its own URLs (no trailing slash)."""
    return f"https://{domain}" if https_port == 443 else f"https://{domain}:{https_port}"


def wanted(stack: StackSettings, domain: str | None = None) -> dict[str, str]:
    """The globals for these settings; `domain` overrides the stack's (a first boot's own choice)."""
    values = {"gbl_time_zone": stack.timezone}
    domain = stack.domain if domain is None else domain
    if domain:
        values["site_addr_oath"] = public_address(domain, stack.https_port)
    return values


def configure(stack: Stack, domain: str | None = None) -> list[str]:
    """Set them on a configured site; the names that changed. An unconfigured one (empty mode, before a
    restore) has no globals yet: OpenEMR's setup or the restored backup brings them, and the next launch sets them."""
    if stack.manual_setup():
        return []
    sites = Path(stack.docker.volume_path("sites"))
    return openemr.set_globals(stack.docker, sites, "set its time zone and address", wanted(stack.settings, domain))
