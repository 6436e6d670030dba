"""The `shuttle` command line: parse, validate everything, then hand over to the driver.

Every problem with what the user typed or wrote is reported as one line per problem with exit
code 2 before any host is contacted.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, NoReturn

from shuttle import config as config_module
from shuttle import driver, targets
from shuttle.errors import EXIT_BAD_INPUT, EXIT_OK, BadInput
from shuttle.reporting import ConsoleReporter, JsonReporter, Reporter

DEFAULT_CONFIG = Path("shuttle.yml")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2, like every other bad input."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"shuttle: {message} (see `{self.prog} --help`)\n")


def _package_version() -> str:
    try:
        return version("shuttle")
    except PackageNotFoundError:
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="shuttle", description="Run OpenEMR on a hardened, backed-up single host.")
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)

    launch = verbs.add_parser("launch", help="install and configure OpenEMR on hosts (default: this host)")
    _add_host_options(launch)
    launch.add_argument("-c", "--config", type=Path, help=f"config file (default: ./{DEFAULT_CONFIG} if present)")
    launch.add_argument("--check", action="store_true", help="show what would change (check + diff), change nothing")
    launch.add_argument("--empty", action="store_true", help="install without configuring OpenEMR, for a restore")
    launch.add_argument("--yes", action="store_true", help="do not ask before changing this host")

    backup = verbs.add_parser("backup", help="back up hosts now (to the backup.target they were launched with)")
    _add_host_options(backup)
    backup.add_argument("--list", action="store_true", help="list the backups and the last run instead")

    restore = verbs.add_parser("restore", help="replace a host's data with a backup (needs --yes)")
    _add_host_options(restore)
    restore.add_argument("--snapshot", default="latest", metavar="ID", help="backup ID from --list, or latest")
    restore.add_argument(
        "--passphrase-file", type=Path, help="repository passphrase (a new host restoring the old host's backups)"
    )
    restore.add_argument("--yes", action="store_true", help="confirm: the host's current data is replaced")

    verbs.add_parser("schema", help="print the config's JSON schema")
    verbs.add_parser("version", help="print versions")
    return parser


def _add_host_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("targets", nargs="*", metavar="TARGET", help="[USER@]HOST[:PORT] to reach over SSH")
    parser.add_argument("-i", "--inventory", type=Path, help="an Ansible inventory file instead of targets")
    parser.add_argument("--json", action="store_true", help="newline-delimited JSON events on stdout")
    parser.add_argument("--ssh-key", type=Path, help="private key for SSH targets (default: your SSH agent/keys)")
    parser.add_argument("--known-hosts", type=Path, help="known_hosts file for SSH targets")
    parser.add_argument("--forks", type=int, default=10, help="hosts worked on in parallel (default 10)")


def _config(args: argparse.Namespace) -> config_module.ShuttleConfig:
    path: Path | None = args.config
    if path is None and DEFAULT_CONFIG.is_file():
        path = DEFAULT_CONFIG
    overrides: dict[str, Any] = {"mode": "empty"} if args.empty else {}
    return config_module.load(path, overrides=overrides)


def _inventory(args: argparse.Namespace) -> dict[str, Any] | Path:
    if args.inventory is not None and args.targets:
        raise BadInput("give either TARGETs or --inventory, not both")
    if not 1 <= args.forks <= 200:
        raise BadInput(f"--forks {args.forks}: must be between 1 and 200")
    if args.inventory is not None:
        return targets.check_inventory_file(args.inventory)
    return targets.inventory_for(args.targets, ssh_key=args.ssh_key, known_hosts=args.known_hosts)


def _confirm_local(args: argparse.Namespace) -> None:
    """Launching onto the machine you are on rewrites its SSH and firewall settings: ask first."""
    if args.targets or args.inventory is not None or args.yes or getattr(args, "check", False):
        return
    if not sys.stdin.isatty() or args.json:
        raise BadInput("launching on this host changes its SSH, firewall and packages: pass --yes to confirm")
    answer = input("Harden this host and install OpenEMR on it? [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise BadInput("not confirmed; nothing was changed")


def _run(verb: str, args: argparse.Namespace, inventory: dict[str, Any] | Path, extravars: dict[str, Any]) -> int:
    reporter: Reporter = JsonReporter() if args.json else ConsoleReporter()
    check = getattr(args, "check", False)
    result = driver.run(verb, extravars=extravars, inventory=inventory, reporters=[reporter], check=check,
                        forks=args.forks)  # fmt: skip
    return result.exit_code


def launch(args: argparse.Namespace) -> int:
    settings = _config(args)
    inventory = _inventory(args)
    _confirm_local(args)
    return _run("launch", args, inventory, {"shuttle": settings.to_extravars()})


def backup(args: argparse.Namespace) -> int:
    return _run("backup", args, _inventory(args), {"shuttle_backup_list": args.list})


#: What `shuttle restore` replaces, as a user should read it before confirming.
RESTORED = (
    "the OpenEMR database, OpenEMR's sites/ volume (documents and site configuration), "
    "/etc/shuttle (config and secrets: the database and admin passwords become the backup's) "
    "and the proxy's TLS state"
)


def restore(args: argparse.Namespace) -> int:
    inventory = _inventory(args)
    passphrase: Path | None = args.passphrase_file
    if passphrase is not None and not passphrase.is_file():
        raise BadInput(f"--passphrase-file {str(passphrase)!r}: is not a readable file")
    if not re.fullmatch(r"latest|[0-9]{8}T[0-9]{6}Z|[0-9a-f]{8,64}", args.snapshot):
        raise BadInput(
            f"--snapshot {args.snapshot!r}: must be latest, a backup ID such as 20261121T023000Z, or a snapshot ID"
        )
    where = ", ".join(args.targets) or (str(args.inventory) if args.inventory else "this host")
    if not args.yes:
        raise BadInput(
            f"restore replaces, on {where}: {RESTORED}, with backup {args.snapshot!r} "
            "(a safety backup of the current state is taken first); pass --yes to confirm"
        )
    extravars = {
        "backup_restore_run": args.snapshot,
        "backup_passphrase_file": str(passphrase.resolve()) if passphrase else "",
    }
    return _run("restore", args, inventory, extravars)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.verb == "schema":
            print(json.dumps(config_module.schema(), indent=2))
            return EXIT_OK
        if args.verb == "version":
            for name in ("shuttle", "ansible-core", "ansible-runner"):
                print(name, _package_version() if name == "shuttle" else version(name))
            return EXIT_OK
        return {"launch": launch, "backup": backup, "restore": restore}[args.verb](args)
    except BadInput as problem:
        for line in str(problem).splitlines():
            print(f"shuttle: {line}", file=sys.stderr)
        return EXIT_BAD_INPUT


def entrypoint() -> NoReturn:
    sys.exit(main())
