"""The application database, reached inside its own container as MariaDB's root.

Root's password is never on a command line: the client reads it from the container's own
environment (`MYSQL_PWD="$MARIADB_ROOT_PASSWORD"`, expanded by the container's shell), and SQL goes
in on stdin. Values interpolated into SQL are either validated names or quoted with `literal`.
"""

from __future__ import annotations

import shlex
import subprocess

from shuttle_host import proc
from shuttle_host.docker import Docker
from shuttle_host.errors import Failed

#: Shell prefix inside the db container: the client gets root's password from the environment.
AS_ROOT = 'MYSQL_PWD="$MARIADB_ROOT_PASSWORD" exec '
DUMP_OPTIONS = "--single-transaction --quick --routines --events --triggers --hex-blob --default-character-set=utf8mb4"


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

    def dump(self) -> subprocess.Popen[bytes]:
        """A consistent online dump of the application database, streamed on stdout."""
        shell = AS_ROOT + f"mariadb-dump -uroot {DUMP_OPTIONS} --databases {shlex.quote(self.name)}"
        return subprocess.Popen(
            ["docker", "exec", self.docker.running("db"), "sh", "-c", shell],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip

    def load(self, source: subprocess.Popen[bytes]) -> None:
        """Feed a dump (another process's stdout) to the server as root."""
        assert source.stdout is not None
        loaded = subprocess.run(
            ["docker", "exec", "-i", self.docker.running("db"), "sh", "-c", AS_ROOT + "mariadb -uroot"],
            stdin=source.stdout, check=False, capture_output=True,
        )  # fmt: skip
        source.stdout.close()
        if source.wait() != 0 or loaded.returncode != 0:
            why = proc.last_lines(loaded.stderr.decode(errors="replace")) or "the dump could not be read"
            raise Failed(f"loading the database failed: {why}")

    def drop(self) -> None:
        self.sql(f"DROP DATABASE IF EXISTS `{self.name}`")

    def set_passwords(self, *, root: str, user: str, password: str) -> None:
        """Give root and the application's user these passwords (a restore brings the old host's)."""
        self.sql(
            f"ALTER USER IF EXISTS 'root'@'%' IDENTIFIED BY {literal(root)};\n"
            f"ALTER USER IF EXISTS 'root'@'localhost' IDENTIFIED BY {literal(root)};\n"
            f"CREATE USER IF NOT EXISTS {literal(user)}@'%' IDENTIFIED BY {literal(password)};\n"
            f"ALTER USER {literal(user)}@'%' IDENTIFIED BY {literal(password)};\n"
            f"GRANT ALL PRIVILEGES ON `{self.name}`.* TO {literal(user)}@'%';\nFLUSH PRIVILEGES;\n"
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
