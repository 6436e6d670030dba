"""`shuttle-host`: the agent's command line, for systemd units, the roles and an admin at the console.

    shuttle-host [--settings DIR] stack secrets|env|up|wait|reload-proxy|url|acme-check
    shuttle-host [--settings DIR] backup [--passphrase-file F] secrets|run|list|check|can-restore|restore
    shuttle-host [--settings DIR] status
    shuttle-host [--settings DIR] firstboot
    shuttle-host check-settings SECTION FILE

Machine-read results are one JSON object on stdout; progress and problems go to stderr. Exit codes:
0 done, 1 failed (the message says where), 2 refused (nothing was changed).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from shuttle_host import acme, backup, firstboot, keys, proc, restore, runs, settings, status
from shuttle_host.errors import EXIT_FAILED, EXIT_OK, EXIT_REFUSED, Failed, Refused
from shuttle_host.restic import Repository
from shuttle_host.stack import Stack


def _emit(data: Any) -> None:
    print(json.dumps(data, sort_keys=True), flush=True)


def _stack(args: argparse.Namespace, conf: settings.Settings) -> int:
    stack = Stack(conf)
    if args.action == "secrets":
        _emit({"created": stack.ensure_secrets()})
    elif args.action == "env":
        _emit({"changed": stack.write_env()})
    elif args.action == "up":
        _emit({"changed": stack.up()})
    elif args.action == "wait":
        report = stack.report(stack.wait(args.timeout))
        _emit(report)
        return EXIT_OK if report["verdict"] == "ready" else EXIT_FAILED
    elif args.action == "reload-proxy":
        stack.reload_proxy()
    elif args.action == "check-compose":
        stack.check_compose(args.file)
    elif args.action == "url":
        _emit({"url": stack.url()})
    elif args.action == "acme-check":
        _emit(acme.check(conf))
    return EXIT_OK


def _backup(args: argparse.Namespace, conf: settings.Settings) -> int:
    passphrase = args.passphrase_file
    if args.action == "secrets":
        made = keys.ensure(conf)
        _emit({**made, "notice": keys.notice(conf, made["public_key"])})
        return EXIT_OK
    if not conf.backup.repository:
        raise Refused("no backup target is set (backup.target in shuttle.yml or in the first-boot settings)")
    if args.action == "run":
        result = backup.run(conf, safety=args.safety, passphrase_file=passphrase)
        proc.say(result["message"])
        _emit(result)
        return EXIT_OK if result["result"] in ("ok", "skipped") else EXIT_FAILED
    if args.action == "list":
        _emit(backup.listing(conf, passphrase))
    elif args.action == "check":
        read = backup.check(conf, args.read, passphrase)
        proc.say(f"repository check passed ({read}% of the data read)")
    elif args.action == "can-restore":
        repo = Repository(conf.layout, conf.backup, passphrase)
        repo.open(create=False)
        _emit(runs.pick(repo.runs(), args.run, repo.location).as_dict())
    elif args.action == "restore":
        if not args.yes:
            raise Refused(
                "restore replaces the database, sites/, Shuttle's configuration and the TLS state: pass --yes"
            )
        with backup.exclusive(Path(conf.layout.backup_lock)):
            repo = Repository(conf.layout, conf.backup, passphrase)
            result = restore.restore(repo, restore.RestoreHost(conf, repo), args.run)
        proc.say(result["message"])
        _emit(result)
    return EXIT_OK


def _status(args: argparse.Namespace, conf: settings.Settings) -> int:
    _emit(status.report(conf))
    return EXIT_OK


def _firstboot(args: argparse.Namespace, conf: settings.Settings) -> int:
    return firstboot.run(conf)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shuttle-host", description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", type=Path, help="the agent's settings directory")
    groups = parser.add_subparsers(dest="group", required=True)

    stack = groups.add_parser("stack", help="the compose stack: secrets, env file, start, readiness")
    stack_actions = stack.add_subparsers(dest="action", required=True)
    for name in ("secrets", "env", "up", "reload-proxy", "url", "acme-check"):
        stack_actions.add_parser(name)
    check_compose = stack_actions.add_parser("check-compose", help="check a compose file before it is put in place")
    check_compose.add_argument("file")
    wait = stack_actions.add_parser("wait", help="wait until every service is ready, or one failed")
    wait.add_argument("--timeout", type=float, help="seconds (default: the stack's ready_timeout)")

    backups = groups.add_parser("backup", help="backups and restores of this host")
    backups.add_argument("--passphrase-file", help="open the repository with this passphrase instead of the host's")
    backup_actions = backups.add_subparsers(dest="action", required=True)
    backup_actions.add_parser("secrets", help="create the passphrase (and SFTP key) where missing")
    run = backup_actions.add_parser("run", help="one backup now")
    run.add_argument("--safety", action="store_true", help="tag the backup as taken before a restore")
    backup_actions.add_parser("list", help="restorable backups and the last run, as JSON")
    check = backup_actions.add_parser("check", help="verify the repository")
    check.add_argument("--read", type=int, help="percent of the data to read and verify")
    can = backup_actions.add_parser("can-restore", help="refuse (exit 2) unless the backup can be restored")
    can.add_argument("--run", default="latest", help="backup ID, snapshot ID or latest")
    rst = backup_actions.add_parser("restore", help="replace this host's data with a backup")
    rst.add_argument("--run", default="latest", help="backup ID, snapshot ID or latest")
    rst.add_argument("--yes", action="store_true", help="confirm: the host's current data is replaced")

    groups.add_parser("status", help="the host's state as JSON, changing nothing")
    groups.add_parser("firstboot", help="the first boot of an instance of a baked image")

    checker = groups.add_parser("check-settings", help="check a settings file before a role puts it in place")
    checker.add_argument("section", choices=sorted(settings.SECTIONS))
    checker.add_argument("file", type=Path)
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace, settings.Settings], int]] = {
    "stack": _stack, "backup": _backup, "status": _status, "firstboot": _firstboot,
}  # fmt: skip


def _stop_on_term(signum: int, frame: FrameType | None) -> None:
    """systemctl stop sends SIGTERM: end the way Ctrl-C does, so a half-made backup is removed."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None, *, default_settings: str | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.umask(0o077)
    signal.signal(signal.SIGTERM, _stop_on_term)
    try:
        if args.group == "check-settings":
            settings.read_section(args.section, args.file)
            return EXIT_OK
        directory = args.settings or (Path(default_settings) if default_settings else None)
        if directory is None:
            raise Refused("--settings DIR is required")
        return COMMANDS[args.group](args, settings.load(directory))
    except Refused as problem:
        proc.say(f"refused: {problem}")
        return EXIT_REFUSED
    except Failed as problem:
        proc.say(f"failed: {problem}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        proc.say("interrupted")
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
