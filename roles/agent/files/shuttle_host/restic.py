"""The backup repository: restic run with this host's passphrase file (or another host's) and target.

Secrets never reach restic's command line: the passphrase is a file (RESTIC_PASSWORD_FILE), the S3
secret is read from its root-only file into restic's environment, and an SFTP repository is reached
with this host's own key and known_hosts file through `-o sftp.command`.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from shuttle_host import proc, runs
from shuttle_host.errors import Failed, Refused
from shuttle_host.settings import BackupSettings, Layout


def sftp_command(repository: str, layout: Layout) -> str:
    """How restic reaches an sftp: repository: this host's key, its own known_hosts, no prompt, keepalives."""
    rest = repository[len("sftp:") :]
    user, _, hostpath = rest.partition("@")
    host = hostpath[1 : hostpath.index("]")] if hostpath.startswith("[") else hostpath.split(":", 1)[0]
    login = f"{user}@{host}"
    return (
        f"ssh -i {layout.secret('backup_ssh_key')} -o BatchMode=yes -o StrictHostKeyChecking=accept-new"
        f" -o UserKnownHostsFile={layout.backup_known_hosts} -o ServerAliveInterval=30 -o ServerAliveCountMax=4"
        f" {login} -s sftp"
    )


class Repository:
    """One restic repository, opened with a passphrase file, as seen by one host (`host`: whose runs count)."""

    def __init__(
        self, layout: Layout, backup: BackupSettings, passphrase_file: str | None = None, host: str | None = None
    ) -> None:
        self.layout = layout
        self.settings = backup
        self.host = host or backup.host
        self.location = backup.repository
        self.passphrase_file = passphrase_file or str(layout.secret("backup_passphrase"))
        self.env = {
            "PATH": proc.SYSTEM_PATH,
            "HOME": "/root",
            "RESTIC_REPOSITORY": self.location,
            "RESTIC_PASSWORD_FILE": self.passphrase_file,
            "RESTIC_CACHE_DIR": layout.backup_cache_dir,
        }
        self.options: list[str] = []
        if self.location.startswith("s3:"):
            secret = layout.secret("backup_s3_secret")
            try:
                self.env["AWS_SECRET_ACCESS_KEY"] = secret.read_text().strip()
            except FileNotFoundError:
                raise Failed(f"the S3 secret key file {secret} is missing") from None
            self.env["AWS_ACCESS_KEY_ID"] = backup.s3_access_key_id
        if self.location.startswith("sftp:"):
            self.options = ["-o", f"sftp.command={sftp_command(self.location, layout)}"]

    def argv(self, *args: str) -> list[str]:
        return ["restic", *self.options, *args]

    def run(
        self, *args: str, stdin: IO[bytes] | None = None, check: bool = True, timeout: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        try:
            done = subprocess.run(
                self.argv(*args), env=self.env, stdin=stdin, check=False, capture_output=True, text=True,
                timeout=timeout,
            )  # fmt: skip
        except FileNotFoundError:
            raise Failed("restic is not installed") from None
        if check and done.returncode != 0:
            raise Failed(f"restic {args[0]}: {proc.last_lines(done.stderr) or 'no output'}")
        return done

    def state(self) -> str:
        """'ok', 'missing' (no repository there yet) or 'wrong-passphrase'; anything else raises Failed.

        restic retries a missing S3 bucket for many minutes as if it were a passing error: a probe
        that is still retrying on exactly that error after `probe_seconds` means the repository is missing.
        """
        seconds = self.settings.probe_seconds
        try:
            done = self.run("cat", "config", check=False, timeout=seconds)
        except subprocess.TimeoutExpired as expired:
            partial = expired.stderr or b""
            text = partial.decode(errors="replace") if isinstance(partial, bytes) else partial
            if "bucket does not exist" in text:
                return "missing"
            raise Failed(
                f"the repository {self.location} did not answer in {seconds}s: {proc.last_lines(text)}"
            ) from None
        if done.returncode == 0:
            return "ok"
        if "wrong password" in done.stderr or "no key found" in done.stderr or done.returncode == 12:
            return "wrong-passphrase"
        if "Is there a repository at the following location?" in done.stderr or done.returncode == 10:
            return "missing"
        raise Failed(f"the repository {self.location} cannot be opened: {proc.last_lines(done.stderr)}")

    def open(self) -> None:
        """Open the repository and clear stale locks of killed runs. Never creates one: a scheduled run
        that finds none (an unmounted disk, a wrong path) must fail, not start an empty repository there."""
        state = self.state()
        if state == "wrong-passphrase":
            raise Refused(f"the passphrase in {self.passphrase_file} does not open the repository {self.location}")
        if state == "missing":
            raise Refused(
                f"there is no backup repository at {self.location} (a launch creates it; "
                "if the target is a mounted disk or share, check that it is mounted)"
            )
        self.run("unlock")  # stale locks of killed runs; live locks stay

    def init(self) -> None:
        proc.say(f"creating the repository {self.location}")
        self.run("init")

    def add_key(self, new_passphrase_file: str, label: str | None = None) -> None:
        """Let `new_passphrase_file` open the repository too (opened with this object's passphrase); restic
        shows `label` (default: this host's identity) as the key's host in `restic key list`."""
        self.run("key", "add", "--new-password-file", new_passphrase_file, "--host", label or self.host)

    def snapshots(self) -> list[dict[str, Any]]:
        """Every Shuttle snapshot in the repository, of every host."""
        return json.loads(self.run("snapshots", "--json", "--tag", runs.SHUTTLE_TAG).stdout or "[]")

    def runs(self) -> dict[str, runs.Run]:
        """This host's runs (or, for a restore from another host, that host's)."""
        return runs.group(self.snapshots(), host=self.host)

    def forget(self, ids: list[str]) -> None:
        if ids:
            self.run("forget", *ids)

    def apply_retention(self, pinned: list[str]) -> list[str]:
        """Forget this host's runs that retention does not keep (runs.to_forget), then prune; the runs
        forgotten. A prune that cannot run now (another host holds the repository's lock) waits for the next."""
        gone = runs.to_forget(self.runs(), self.settings.retention, pinned=pinned)
        if not gone:
            return []
        self.forget([full for run in gone for full in run.ids])
        pruned = self.run("prune", check=False)
        if pruned.returncode != 0:
            proc.say(f"prune deferred to the next run: {proc.last_lines(pruned.stderr)}")
        return [run.run for run in gone]

    def _identity(self, tags: list[str]) -> list[str]:
        return ["--host", self.host, *tags]

    def backup_stream(
        self, name: str, source: IO[bytes], tags: list[str], each_line: Callable[[bytes], None]
    ) -> subprocess.CompletedProcess[str]:
        """`source` saved as the file `name`, passed through this process line by line so that `each_line`
        sees exactly the bytes saved (the manifest's digest of the dump). restic's output goes to files:
        a pipe nobody reads while the stream runs could fill and stall it."""
        argv = self.argv("backup", "--json", "--stdin", "--stdin-filename", name, *self._identity(tags))
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            try:
                saver = subprocess.Popen(argv, env=self.env, stdin=subprocess.PIPE, stdout=out, stderr=err)
            except FileNotFoundError:
                raise Failed("restic is not installed") from None
            assert saver.stdin is not None
            try:
                for line in source:
                    each_line(line)
                    saver.stdin.write(line)
                saver.stdin.close()
            except BrokenPipeError:
                pass  # restic ended early: its exit code and stderr say why
            code = saver.wait()
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(argv, code, out.read().decode(errors="replace"),
                                               err.read().decode(errors="replace"))  # fmt: skip

    def backup_paths(self, paths: list[str], tags: list[str], exclude: list[str]) -> None:
        excludes = [option for path in exclude for option in ("--exclude", path)]
        self.run("backup", "--json", *self._identity(tags), *excludes, *paths)

    def restore_size(self, snapshot: str) -> int:
        """Bytes restoring `snapshot` writes."""
        done = self.run("stats", "--json", "--mode", "restore-size", snapshot)
        return int(json.loads(done.stdout)["total_size"])

    def restore_to(self, snapshot: str, target: Path, include: str) -> None:
        """`include` (a path in the snapshot) of `snapshot`, written under `target` at its full path."""
        self.run("restore", snapshot, "--target", str(target), "--include", include)

    def dump(self, snapshot: str, name: str, *, quiet: bool = False) -> subprocess.Popen[bytes]:
        """A file of a snapshot, streamed on stdout (`quiet`: restic's complaints, such as a missing file, unsaid)."""
        errors = subprocess.DEVNULL if quiet else None
        return subprocess.Popen(self.argv("dump", snapshot, name), env=self.env, stdout=subprocess.PIPE, stderr=errors)

    def check(self, percent: int) -> None:
        self.run("check", f"--read-data-subset={percent}%")
