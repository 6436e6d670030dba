"""The application database, reached inside its own container as MariaDB's root.

Root's password is never on a command line: the client reads it from the container's own
environment (`MYSQL_PWD="$MARIADB_ROOT_PASSWORD"`, expanded by the container's shell), and SQL goes
in on stdin. Values interpolated into SQL are either validated names or quoted with `literal`.
"""

from __future__ import annotations

import shlex
import subprocess
from typing import Any

from shuttle_host import manifest, proc
from shuttle_host.docker import Docker
from shuttle_host.errors import Failed

#: Shell prefix inside the db container: the client gets root's password from the environment.
AS_ROOT = 'MYSQL_PWD="$MARIADB_ROOT_PASSWORD" exec '
DUMP_OPTIONS = "--single-transaction --quick --routines --events --triggers --hex-blob --default-character-set=utf8mb4"


def quoted(name: str) -> str:
    """A SQL identifier (database or table name) in backquotes."""
    return "`" + name.replace("`", "``") + "`"


def literal(value: str) -> str:
    """A SQL string literal for any value (backslashes and quotes escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


class Database:
    """MariaDB in the stack's db container."""

    def __init__(self, docker: Docker, name: str) -> None:
        self.docker = docker
        self.name = name

    def _client(self, *, database: str | None = None) -> list[str]:
        command = AS_ROOT + "mariadb -uroot -N -B" + (f" {shlex.quote(database)}" if database else "")
        return ["docker", "exec", "-i", self.docker.running("db"), "sh", "-c", command]

    def sql(self, statement: str, *, database: str | None = None) -> str:
        """Run SQL as root; its tab-separated output."""
        return proc.output(self._client(database=database), what="database", input=statement)

    def has_tables(self) -> bool:
        """Whether OpenEMR has been set up: its database has tables (empty mode leaves none)."""
        count = self.sql(f"SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = {literal(self.name)}")
        return int(count.strip() or 0) > 0

    def dump(self, database: str | None = None) -> subprocess.Popen[bytes]:
        """A consistent online dump of the application database (or `database`), streamed on stdout."""
        shell = AS_ROOT + f"mariadb-dump -uroot {DUMP_OPTIONS} --databases {shlex.quote(database or self.name)}"
        return subprocess.Popen(
            ["docker", "exec", self.docker.running("db"), "sh", "-c", shell],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip

    def exists(self, database: str) -> bool:
        found = self.sql(f"SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = {literal(database)}")
        return found.strip() not in ("", "0")

    def tables(self, database: str) -> list[str]:
        listed = self.sql(
            f"SELECT table_name FROM information_schema.tables WHERE table_schema = {literal(database)}"
            " AND table_type = 'BASE TABLE' ORDER BY table_name"
        )
        return listed.split()

    def other_objects(self, database: str) -> int:
        """Views, triggers, routines and events in `database`: a swap by RENAME TABLE cannot move them."""
        name = literal(database)
        counted = self.sql(
            f"SELECT (SELECT COUNT(*) FROM information_schema.views WHERE table_schema = {name})"
            f" + (SELECT COUNT(*) FROM information_schema.triggers WHERE trigger_schema = {name})"
            f" + (SELECT COUNT(*) FROM information_schema.routines WHERE routine_schema = {name})"
            f" + (SELECT COUNT(*) FROM information_schema.events WHERE event_schema = {name})"
        )
        return int(counted.strip() or 0)

    def load_into(self, database: str, source: subprocess.Popen[bytes]) -> None:
        """Load a dump of the application database (another process's stdout) into `database`, which is
        made empty first. The dump must be read to its end (mariadb-dump's closing line) and every
        statement must succeed; Failed otherwise, with `database` left for the caller to drop."""
        assert source.stdout is not None
        self.sql(f"DROP DATABASE IF EXISTS {quoted(database)}; CREATE DATABASE {quoted(database)}")
        loader = subprocess.Popen(
            ["docker", "exec", "-i", self.docker.running("db"), "sh", "-c", AS_ROOT + "mariadb -uroot"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert loader.stdin is not None and loader.stderr is not None
        last = b""
        try:
            loader.stdin.write(f"USE {quoted(database)};\n".encode())
            for line in source.stdout:
                if line.startswith((b"CREATE DATABASE ", b"USE `")):
                    continue  # the dump names the live database: everything goes into `database` instead
                loader.stdin.write(line)
                if line.strip():
                    last = line
            loader.stdin.close()
        except BrokenPipeError:
            pass
        errors = loader.stderr.read().decode(errors="replace")
        source.stdout.close()
        read, loaded = source.wait(), loader.wait()
        if loaded != 0:
            raise Failed(f"the backup's database dump does not load: {proc.last_lines(errors) or 'no output'}")
        if read != 0:
            raise Failed("the backup's database dump could not be read from the repository")
        if not last.startswith(b"-- Dump completed"):
            raise Failed("the backup's database dump is incomplete (it does not end as mariadb-dump ends a dump)")

    def digest(self, database: str | None = None) -> dict[str, dict[str, Any]]:
        """Each table's rows and data digest as a dump of `database` gives them (manifest.DumpDigest): what a
        restored copy is compared with its backup's manifest by."""
        found = manifest.DumpDigest()
        dump = self.dump(database)
        assert dump.stdout is not None and dump.stderr is not None
        for line in dump.stdout:
            found.feed(line)
        if dump.wait() != 0:
            raise Failed(
                f"the database cannot be dumped: {proc.last_lines(dump.stderr.read().decode(errors='replace'))}"
            )
        return found.tables()

    def rename_tables(self, moves: list[tuple[str, str]]) -> None:
        """Move every table of each (from, to) database pair in one RENAME TABLE: all of it happens or none."""
        pairs = [
            f"{quoted(source)}.{quoted(table)} TO {quoted(target)}.{quoted(table)}"
            for source, target in moves
            for table in self.tables(source)
        ]
        if pairs:
            self.sql("RENAME TABLE " + ", ".join(pairs))

    def drop_database(self, database: str) -> None:
        self.sql(f"DROP DATABASE IF EXISTS {quoted(database)}")

    def create_database(self, database: str) -> None:
        self.sql(f"CREATE DATABASE IF NOT EXISTS {quoted(database)}")

    def set_user_password(self, user: str, password: str) -> None:
        """Give the application's user `password` (a restore brings the old host's, a roll-back this one's)."""
        self.sql(
            f"CREATE USER IF NOT EXISTS {literal(user)}@'%' IDENTIFIED BY {literal(password)};\n"
            f"ALTER USER {literal(user)}@'%' IDENTIFIED BY {literal(password)};\n"
            f"GRANT ALL PRIVILEGES ON {quoted(self.name)}.* TO {literal(user)}@'%';\nFLUSH PRIVILEGES;\n"
        )

    def set_password_hash(self, user: str, password_hash: str) -> None:
        """OpenEMR keeps login hashes in users_secure: replace the user's with `password_hash`."""
        found = self.sql(f"SELECT COUNT(*) FROM users_secure WHERE username = {literal(user)}", database=self.name)
        if found.strip() in ("", "0"):
            raise Failed(f"there is no OpenEMR user {user!r} to give the password hash to")
        self.sql(
            f"UPDATE users_secure SET password = {literal(password_hash)}, last_update_password = NOW() "
            f"WHERE username = {literal(user)}",
            database=self.name,
        )
