"""The `shuttle` command line: parse arguments, call the API (api.py), choose how to report.

Everything else (validation, inventories, per-host settings, the run) lives in the API, so the
command and code that imports Shuttle behave the same. Every problem with what the user typed or
wrote is reported as one line per problem with exit code 2 before any host is contacted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, NoReturn

from shuttle import api
from shuttle import config as config_module
from shuttle.errors import EXIT_BAD_INPUT, EXIT_OK, BadInput
from shuttle.reporting import ConsoleReporter, JsonReporter, Reporter
from shuttle.results import RunResult

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

    bake = verbs.add_parser("bake", help="install everything and preload images, start nothing: a host to image")
    _add_host_options(bake)
    bake.add_argument("-c", "--config", type=Path, help=f"config file (default: ./{DEFAULT_CONFIG} if present)")
    bake.add_argument("--yes", action="store_true", help="do not ask before changing this host")

    seal = verbs.add_parser("seal", help="clear per-instance state after bake, before imaging (needs --yes)")
    _add_host_options(seal)
    seal.add_argument("--yes", action="store_true", help=f"confirm: clears {api.SEALED}")
    seal.add_argument(
        "--keep-authorized-keys",
        action="store_true",
        help="leave the authorized SSH keys in the image (an appliance whose instances get no key of their own)",
    )

    status = verbs.add_parser("status", help="stack health, admin user, time zone, versions, last backup; read-only")
    _add_host_options(status)

    backup = verbs.add_parser("backup", help="back up hosts now (to the backup.target they were launched with)")
    _add_host_options(backup)
    backup.add_argument("--list", action="store_true", help="list the backups and the last run instead")

    restore = verbs.add_parser("restore", help="replace a host's data with a backup (needs --yes)")
    _add_host_options(restore)
    restore.add_argument("--snapshot", default="latest", metavar="ID", help="backup ID from --list, or latest")
    restore.add_argument(
        "--passphrase-file", type=Path, help="repository passphrase (a new host restoring the old host's backups)"
    )
    restore.add_argument(
        "--from-host", metavar="NAME", help="restore another host's backups from the repository (its inventory name)"
    )
    restore.add_argument("--yes", action="store_true", help="confirm: the host's current data is replaced")

    drill = verbs.add_parser("drill", help="restore a backup beside the live site, verify it, remove it; read-only")
    _add_host_options(drill)
    drill.add_argument("--snapshot", default="latest", metavar="ID", help="backup ID from --list, or latest")

    alerts = verbs.add_parser("alerts", help="alert channels: `shuttle alerts test` sends a test message through each")
    alerts.add_argument("action", choices=["test"], help="test: a message through every channel, and one from OpenEMR")
    _add_host_options(alerts)

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


def _config(args: argparse.Namespace) -> Path | None:
    """The config file: --config, else ./shuttle.yml when present, else none (defaults)."""
    path: Path | None = args.config
    if path is None and DEFAULT_CONFIG.is_file():
        path = DEFAULT_CONFIG
    return path


def _confirm_local(args: argparse.Namespace, doing: str, question: str) -> None:
    """Launching onto the machine you are on rewrites its SSH and firewall settings: ask first."""
    if args.targets or args.inventory is not None or args.yes or getattr(args, "check", False):
        return
    if not sys.stdin.isatty() or args.json:
        raise BadInput(f"{doing} on this host changes its SSH, firewall and packages: pass --yes to confirm")
    answer = input(f"{question} [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise BadInput("not confirmed; nothing was changed")


def _run_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments every API call takes from the host options."""
    reporter: Reporter = JsonReporter() if args.json else ConsoleReporter()
    return {
        "inventory": args.inventory, "forks": args.forks, "ssh_key": args.ssh_key,
        "known_hosts": args.known_hosts, "reporters": [reporter],
    }  # fmt: skip


def launch(args: argparse.Namespace) -> RunResult:
    return api.launch(
        args.targets, config=_config(args), empty=args.empty, check=args.check,
        confirm=lambda: _confirm_local(args, "launching", "Harden this host and install OpenEMR on it?"),
        **_run_options(args),
    )  # fmt: skip


def bake(args: argparse.Namespace) -> RunResult:
    return api.bake(
        args.targets, config=_config(args),
        confirm=lambda: _confirm_local(args, "baking", "Harden this host and install OpenEMR on it to image it?"),
        **_run_options(args),
    )  # fmt: skip


def seal(args: argparse.Namespace) -> RunResult:
    return api.seal(args.targets, yes=args.yes, keep_authorized_keys=args.keep_authorized_keys, **_run_options(args))


def backup(args: argparse.Namespace) -> RunResult:
    return api.backup(args.targets, list_backups=args.list, **_run_options(args))


def restore(args: argparse.Namespace) -> RunResult:
    return api.restore(
        args.targets,
        snapshot=args.snapshot,
        passphrase_file=args.passphrase_file,
        from_host=args.from_host,
        yes=args.yes,
        **_run_options(args),
    )


def drill(args: argparse.Namespace) -> RunResult:
    return api.drill(args.targets, snapshot=args.snapshot, **_run_options(args))


def alerts(args: argparse.Namespace) -> RunResult:
    return api.alerts_test(args.targets, **_run_options(args))


def status(args: argparse.Namespace) -> RunResult:
    return api.status(args.targets, **_run_options(args))


VERBS: dict[str, Callable[[argparse.Namespace], RunResult]] = {
    "launch": launch, "bake": bake, "seal": seal, "backup": backup, "restore": restore, "status": status,
    "drill": drill, "alerts": alerts,
}  # fmt: skip


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
        return VERBS[args.verb](args).exit_code
    except BadInput as problem:
        for line in str(problem).splitlines():
            print(f"shuttle: {line}", file=sys.stderr)
        return EXIT_BAD_INPUT


def entrypoint() -> NoReturn:
    sys.exit(main())
