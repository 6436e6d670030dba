"""`shuttle-host`: the agent's command line, for systemd units, the roles and an admin at the console.

    shuttle-host [--settings DIR] stack secrets|env|up|wait|globals|reload-proxy|url|acme-check
    shuttle-host [--settings DIR] backup [--passphrase-file F]
        secrets|init|run|list|check|can-restore|restore|recover|drill|stopped
    shuttle-host [--settings DIR] status
    shuttle-host [--settings DIR] alerts run|test|openemr-mail
    shuttle-host [--settings DIR] firstboot
    shuttle-host check-settings SECTION FILE
    shuttle-host dirs PATH:MODE...
    shuttle-host firewall-plan --port PORT --source NETWORK...
    shuttle-host client-trusted [--source NETWORK...]

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

from shuttle_host import (
    acme,
    alerts,
    backup,
    drill,
    files,
    firewall,
    firstboot,
    keys,
    proc,
    restore,
    runs,
    settings,
    site_globals,
    status,
)
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
    elif args.action == "globals":
        _emit({"changed": site_globals.configure(stack)})
    elif args.action == "reload-proxy":
        stack.reload_proxy()
    elif args.action == "check-compose":
        stack.check_compose(args.file)
    elif args.action == "url":
        _emit({"url": stack.url()})
    elif args.action == "acme-check":
        _emit(acme.check(conf))
    return EXIT_OK


def _restore_request(args: argparse.Namespace, conf: settings.Settings) -> dict[str, Any]:
    """What to restore: the command line's, or (the restore unit) the request file a role wrote."""
    if not args.request:
        return {"run": args.run, "from_host": args.from_host, "passphrase_file": args.passphrase_file}
    request = files.read_json(Path(conf.layout.restore_request))
    if not isinstance(request, dict):
        raise Refused(f"there is no restore request at {conf.layout.restore_request}")
    passphrase = conf.layout.restore_passphrase if request.get("passphrase") else None
    return {"run": request["run"], "from_host": request.get("from_host") or None, "passphrase_file": passphrase}


def _restore(args: argparse.Namespace, conf: settings.Settings) -> int:
    """A restore, recorded (layout restore_record) however it ends, so the unit's caller can read the result."""
    started = backup.now()
    result: dict[str, Any]
    code = EXIT_OK
    try:
        _keep_settings_copy(conf)
        wanted = _restore_request(args, conf)
        if not (args.yes or args.request):
            raise Refused(
                "restore replaces the database, sites/, Shuttle's configuration and the TLS state: pass --yes"
            )
        with backup.exclusive(Path(conf.layout.backup_lock)):
            repo = Repository(conf.layout, conf.backup, wanted["passphrase_file"], wanted["from_host"])
            journal = restore.Journal(Path(conf.layout.restore_journal))
            host = restore.RestoreHost(conf, repo)
            result = restore.restore(repo, host, wanted["run"], journal, margin=conf.backup.restore_space_margin)
            adopted = restore.adopt_repository(conf, repo) if wanted["passphrase_file"] else None
            if adopted:
                result["message"] += f"; {adopted}"
    except Refused as problem:
        result, code = {"result": "refused", "message": str(problem)}, EXIT_REFUSED
    except (Failed, KeyboardInterrupt) as problem:
        result, code = {"result": "failed", "message": str(problem) or "interrupted"}, EXIT_FAILED
    files.write_json(Path(conf.layout.restore_record), {**result, "started": started, "finished": backup.now()})
    proc.say(result["message"])
    _emit(result)
    return code


def _drill_request(args: argparse.Namespace, conf: settings.Settings) -> str:
    """The run to drill: the command line's, or (the drill unit) the one `shuttle drill` asked for, once; a
    timer's drill finds no request and drills the latest."""
    if not args.request:
        return str(args.run)
    path = Path(conf.layout.drill_request)
    request = files.read_json(path)
    path.unlink(missing_ok=True)
    return str(request["run"]) if isinstance(request, dict) and request.get("run") else "latest"


def _keep_settings_copy(conf: settings.Settings) -> None:
    """The agent's settings, copied where a roll-back reads them while the config directory is being swapped."""
    copy = Path(conf.layout.restore_settings)
    copy.mkdir(parents=True, exist_ok=True, mode=0o700)
    for source in conf.directory.glob("*.json"):
        files.write_atomic(copy / source.name, source.read_text())


def _recover(conf: settings.Settings) -> str | None:
    """Roll back a restore that did not finish (none running: the caller holds the host's lock)."""
    journal = restore.Journal(Path(conf.layout.restore_journal))
    if journal.read() is None:
        return None
    repo = Repository(conf.layout, conf.backup)
    done = restore.recover(restore.RestoreHost(conf, repo), journal)
    if done:  # what `status` and `shuttle restore` show: the restore that was cut short, and how it ended
        ended = {"result": "failed", "message": done, "finished": backup.now()}
        files.write_json(Path(conf.layout.restore_record), ended)
    return done


def _backup(args: argparse.Namespace, conf: settings.Settings) -> int:
    passphrase = args.passphrase_file
    if args.action == "secrets":
        made = keys.ensure(conf)
        _emit({**made, "notice": keys.notice(conf, made["public_key"])})
        return EXIT_OK
    if args.action == "stopped":
        records = {"backup": conf.layout.backup_record, "check": conf.layout.check_record,
                   "drill": conf.layout.drill_record}  # fmt: skip
        path = records[args.unit]
        _emit({"changed": backup.stopped(conf, Path(path), args.service_result)})
        return EXIT_OK
    if not conf.backup.repository:
        raise Refused("no backup target is set (backup.target in shuttle.yml or in the first-boot settings)")
    if args.action == "init":
        _emit(backup.init_repository(conf, args.recovery_file))
    elif args.action == "run":
        with backup.exclusive(Path(conf.layout.backup_lock)):
            _recover(conf)
        result = backup.run(conf, safety=args.safety, passphrase_file=passphrase)
        proc.say(result["message"])
        _emit(result)
        return EXIT_OK if result["result"] in ("ok", "skipped") else EXIT_FAILED
    elif args.action == "list":
        _emit(backup.listing(conf, passphrase, args.from_host))
    elif args.action == "check":
        result = backup.check(conf, args.read, passphrase)
        proc.say(result["message"])
        return EXIT_OK if result["result"] == "ok" else EXIT_FAILED
    elif args.action == "can-restore":
        repo = Repository(conf.layout, conf.backup, passphrase, args.from_host)
        repo.open()
        chosen = runs.pick(repo.runs(), args.run, repo.location, host=repo.host, others=runs.hosts_in(repo.snapshots()))
        _emit(chosen.as_dict())
    elif args.action == "restore":
        return _restore(args, conf)
    elif args.action == "drill":
        result = drill.run(conf, _drill_request(args, conf))
        _emit(result)
        return {"ok": EXIT_OK, "refused": EXIT_REFUSED}.get(result["result"], EXIT_FAILED)
    elif args.action == "recover":
        with backup.exclusive(Path(conf.layout.backup_lock)):
            _emit({"recovered": _recover(conf)})
    return EXIT_OK


def _status(args: argparse.Namespace, conf: settings.Settings) -> int:
    _emit(status.report(conf))
    return EXIT_OK


def _alerts(args: argparse.Namespace, conf: settings.Settings) -> int:
    if args.action == "run":
        _emit(alerts.run(conf))
    elif args.action == "test":
        result = alerts.test(conf)
        _emit(result)
        return EXIT_OK if result["ok"] else EXIT_FAILED
    elif args.action == "openemr-mail":
        _emit(alerts.openemr_mail(conf))
    return EXIT_OK


def _firstboot(args: argparse.Namespace, conf: settings.Settings) -> int:
    return firstboot.run(conf)


def _add_host_commands(groups: argparse._SubParsersAction) -> None:
    """The commands that need no settings: the roles run them before (or without) the agent's settings."""
    checker = groups.add_parser("check-settings", help="check a settings file before a role puts it in place")
    checker.add_argument("section", choices=sorted(settings.SECTIONS))
    checker.add_argument("file", type=Path)

    dirs = groups.add_parser("dirs", help="make root-owned directories with these modes, or correct them")
    dirs.add_argument("specs", nargs="+", metavar="PATH:MODE")

    fw = groups.add_parser("firewall-plan", help="the SSH rules of ufw the settings no longer ask for (refused: 2)")
    fw.add_argument("--port", type=int, required=True, help="the SSH port the firewall opens")
    fw.add_argument("--source", action="append", required=True, help="a network allowed to reach SSH (repeat)")

    trusted = groups.add_parser("client-trusted", help="the address this run connects from, and whether it is trusted")
    trusted.add_argument("--source", action="append", default=[], help="a trusted network (repeat)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shuttle-host", description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", type=Path, help="the agent's settings directory")
    groups = parser.add_subparsers(dest="group", required=True)

    stack = groups.add_parser("stack", help="the compose stack: secrets, env file, start, readiness")
    stack_actions = stack.add_subparsers(dest="action", required=True)
    for name in ("secrets", "env", "up", "reload-proxy", "url", "acme-check"):
        stack_actions.add_parser(name)
    stack_actions.add_parser("globals", help="set OpenEMR's time zone and public address globals (a launch runs this)")
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
    init = backup_actions.add_parser("init", help="create the repository when there is none (a launch runs this)")
    init.add_argument("--recovery-file", help="a recovery key to add where it does not open the repository yet")
    listed = backup_actions.add_parser("list", help="restorable backups and the last run, as JSON")
    check = backup_actions.add_parser("check", help="verify the repository")
    check.add_argument("--read", type=int, help="percent of the data to read and verify")
    can = backup_actions.add_parser("can-restore", help="refuse (exit 2) unless the backup can be restored")
    rst = backup_actions.add_parser("restore", help="replace this host's data with a backup")
    for parser_ in (listed, can, rst):
        parser_.add_argument("--from-host", help="another host's backups in the repository (its inventory name)")
    drilled = backup_actions.add_parser("drill", help="restore a backup into a scratch project, verify it, remove it")
    for parser_ in (can, rst, drilled):
        parser_.add_argument("--run", default="latest", help="backup ID, snapshot ID or latest")
    rst.add_argument("--yes", action="store_true", help="confirm: the host's current data is replaced")
    rst.add_argument("--request", action="store_true", help="take what to restore from the layout's restore_request")
    drilled.add_argument("--request", action="store_true", help="take the run from the layout's drill_request, if any")
    backup_actions.add_parser("recover", help="roll back a restore that did not finish (the restore unit's stop)")
    stopped = backup_actions.add_parser("stopped", help="a unit's stop: a run that was killed is recorded as failed")
    stopped.add_argument("--unit", choices=("backup", "check", "drill"), required=True)
    stopped.add_argument("--service-result", default="", help="systemd's $SERVICE_RESULT")

    groups.add_parser("status", help="the host's state as JSON, changing nothing")
    groups.add_parser("firstboot", help="the first boot of an instance of a baked image")

    alerting = groups.add_parser("alerts", help="health checks and the messages they send")
    alert_actions = alerting.add_subparsers(dest="action", required=True)
    alert_actions.add_parser("run", help="check now; tell the channels what started or ended (the timer runs this)")
    alert_actions.add_parser("test", help="a test message through every channel, and one mail from OpenEMR")
    alert_actions.add_parser("openemr-mail", help="point OpenEMR's own mail at the e-mail channel's relay")

    _add_host_commands(groups)
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace, settings.Settings], int]] = {
    "stack": _stack, "backup": _backup, "status": _status, "firstboot": _firstboot, "alerts": _alerts,
}  # fmt: skip


def _dirs(specs: list[str]) -> int:
    try:
        wanted = [files.parse_directory(spec) for spec in specs]
    except ValueError as problem:
        raise Refused(str(problem)) from None
    try:
        _emit({"changed": files.ensure_directories(wanted)})
    except OSError as problem:
        raise Failed(str(problem)) from None
    return EXIT_OK


def _firewall_plan(port: int, sources: list[str]) -> int:
    try:
        plan = firewall.plan(firewall.read_rules(), port, sources, firewall.client_address())
    except (OSError, ValueError) as problem:
        raise Failed(f"cannot read ufw's rules: {problem}") from None
    _emit(plan)
    if plan["refused"]:
        raise Refused(str(plan["refused"]))
    return EXIT_OK


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
        if args.group == "dirs":
            return _dirs(args.specs)
        if args.group == "firewall-plan":
            return _firewall_plan(args.port, args.source)
        if args.group == "client-trusted":
            client = firewall.client_address()
            _emit({"client": client, "trusted": client is None or firewall.inside(client, args.source)})
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
