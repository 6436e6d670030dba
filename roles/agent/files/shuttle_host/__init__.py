"""Shuttle's host agent: everything Shuttle does on a host after `shuttle launch` has returned.

Backups and restores, the first boot of a baked image, the state report, and the pieces the roles
call while they converge a host (secrets, the compose env file, starting the stack and waiting for
it) live here once, in one package the agent role installs on every host. Systemd units and roles
run it as `shuttle-host --settings DIR ...`; DIR holds the settings the roles wrote (layout.json,
stack.json, backup.json, firstboot.json), so the agent never carries a host path or name itself.

It runs on the host's own Python (3.10 and newer: Ubuntu 22.04's is the oldest) and imports only
the standard library; the one exception is PyYAML (Debian's python3-yaml) in `seed`, because an
instance's user-data is YAML.
"""

__version__ = "1"
