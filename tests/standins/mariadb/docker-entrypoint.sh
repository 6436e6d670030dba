#!/bin/bash
# Shuttle test stand-in for the official mariadb image's entrypoint.
#
# Honours the same environment contract (MARIADB_* with MYSQL_* aliases and *_FILE variants):
# the first start initialises /var/lib/mysql, sets the root password (root may log in from any host,
# as with the official MARIADB_ROOT_HOST default '%'), creates MARIADB_DATABASE and MARIADB_USER, and
# runs /docker-entrypoint-initdb.d/*.sql|*.sql.gz|*.sh. Later starts reuse the data as they find it.
# The server is exec'd as PID 1, so SIGTERM shuts it down cleanly.
set -Eeuo pipefail

DATADIR=/var/lib/mysql
SOCKET=/run/mysqld/mysqld.sock

log() { printf '%s [Note] [Entrypoint]: %s\n' "$(date -u '+%F %T')" "$*" >&2; }
die() { printf '%s [ERROR] [Entrypoint]: %s\n' "$(date -u '+%F %T')" "$*" >&2; exit 1; }

# env_var NAME [default]: value of MARIADB_NAME, MARIADB_NAME_FILE, MYSQL_NAME or MYSQL_NAME_FILE.
env_var() {
	local name=$1 default=${2:-} var file
	for var in "MARIADB_$name" "MYSQL_$name"; do
		file="${var}_FILE"
		if [ -n "${!var:-}" ] && [ -n "${!file:-}" ]; then
			die "both $var and $file are set"
		elif [ -n "${!var:-}" ]; then
			printf '%s' "${!var}"
			return
		elif [ -n "${!file:-}" ]; then
			cat "${!file}"
			return
		fi
	done
	printf '%s' "$default"
}

# SQL string literal and identifier quoting, so any password or name is safe inside the bootstrap SQL.
sql_string() { local s=${1//\\/\\\\}; s=${s//\'/\\\'}; printf "'%s'" "$s"; }
sql_ident() { printf '`%s`' "${1//\`/\`\`}"; }

random_password() { tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32 || true; }

temp_server_start() {
	"$@" --skip-networking --default-time-zone=SYSTEM --socket="$SOCKET" --wsrep_on=OFF \
		--expire-logs-days=0 --loose-innodb_buffer_pool_load_at_startup=0 &
	TEMP_PID=$!
	local i
	for i in $(seq 60); do
		if mariadb --protocol=socket --socket="$SOCKET" -uroot --skip-password -e 'SELECT 1' >/dev/null 2>&1; then
			return
		fi
		kill -0 "$TEMP_PID" 2>/dev/null || die "temporary server exited during initialisation"
		sleep 1
	done
	die "temporary server did not start"
}

temp_server_stop() {
	kill -TERM "$TEMP_PID"
	wait "$TEMP_PID" || die "temporary server did not stop cleanly"
}

init_database() {
	local root_password root_host database user password allow_empty random_root health_password
	root_password=$(env_var ROOT_PASSWORD)
	root_host=$(env_var ROOT_HOST '%')
	database=$(env_var DATABASE)
	user=$(env_var USER)
	password=$(env_var PASSWORD)
	allow_empty=$(env_var ALLOW_EMPTY_ROOT_PASSWORD)
	random_root=$(env_var RANDOM_ROOT_PASSWORD)

	if [ -z "$root_password" ] && [ -z "$allow_empty" ] && [ -z "$random_root" ]; then
		die "Database is uninitialized and password option is not specified
	You need to specify one of MARIADB_ROOT_PASSWORD, MARIADB_ROOT_PASSWORD_HASH, MARIADB_ALLOW_EMPTY_ROOT_PASSWORD and MARIADB_RANDOM_ROOT_PASSWORD"
	fi
	if [ -n "$random_root" ]; then
		root_password=$(random_password)
		log "GENERATED ROOT PASSWORD: $root_password"
	fi
	if [ "$user" = root ]; then
		die "MARIADB_USER=root: use MARIADB_ROOT_PASSWORD for the root user"
	fi

	log "Initializing database files"
	mariadb-install-db --datadir="$DATADIR" --rpm --auth-root-authentication-method=normal --skip-test-db \
		--default-time-zone=SYSTEM --enforce-storage-engine= --skip-log-bin --expire-logs-days=0 \
		--loose-innodb_buffer_pool_load_at_startup=0 --loose-innodb_buffer_pool_dump_at_shutdown=0 >/dev/null
	log "Database files initialized"

	log "Starting temporary server"
	temp_server_start "$@"
	log "Temporary server started"

	health_password=$(random_password)
	{
		echo "SET @@SESSION.SQL_LOG_BIN=0;"
		echo "DROP USER IF EXISTS root@'127.0.0.1', root@'::1';"
		echo "EXECUTE IMMEDIATE CONCAT('DROP USER IF EXISTS root@\'', @@hostname, '\'');"
		echo "SET PASSWORD FOR 'root'@'localhost' = PASSWORD($(sql_string "$root_password"));"
		if [ -n "$root_host" ] && [ "$root_host" != localhost ]; then
			echo "CREATE USER 'root'@$(sql_string "$root_host") IDENTIFIED BY $(sql_string "$root_password");"
			echo "GRANT ALL ON *.* TO 'root'@$(sql_string "$root_host") WITH GRANT OPTION;"
			echo "GRANT PROXY ON ''@'%' TO 'root'@$(sql_string "$root_host") WITH GRANT OPTION;"
		fi
		echo "CREATE USER healthcheck@'127.0.0.1' IDENTIFIED BY $(sql_string "$health_password");"
		echo "CREATE USER healthcheck@'::1' IDENTIFIED BY $(sql_string "$health_password");"
		echo "CREATE USER healthcheck@localhost IDENTIFIED BY $(sql_string "$health_password");"
		if [ -n "$database" ]; then
			echo "CREATE DATABASE IF NOT EXISTS $(sql_ident "$database");"
		fi
		if [ -n "$user" ]; then
			echo "CREATE USER $(sql_string "$user")@'%' IDENTIFIED BY $(sql_string "$password");"
			if [ -n "$database" ]; then
				echo "GRANT ALL ON $(sql_ident "${database//_/\\_}").* TO $(sql_string "$user")@'%';"
			fi
		fi
		echo "FLUSH PRIVILEGES;"
	} | mariadb --protocol=socket --socket="$SOCKET" -uroot --skip-password --database=mysql

	# The official image keeps the healthcheck user's credentials in the data directory, so they move with it.
	umask 077
	printf '[mariadb-client]\nport=3306\nsocket=%s\nuser=healthcheck\npassword=%s\n' \
		"$SOCKET" "$health_password" >"$DATADIR/.my-healthcheck.cnf"
	umask 022

	# Like the official image: init scripts run against the temporary server, as root, in the new database.
	local f
	export MYSQL_PWD="$root_password"
	for f in /docker-entrypoint-initdb.d/*; do
		case "$f" in
		*.sh) log "running $f"; . "$f" ;;
		*.sql) log "running $f"; mariadb --socket="$SOCKET" -uroot ${database:+--database="$database"} <"$f" ;;
		*.sql.gz) log "running $f"; gunzip -c "$f" | mariadb --socket="$SOCKET" -uroot ${database:+--database="$database"} ;;
		*) if [ -e "$f" ]; then log "ignoring $f"; fi ;;
		esac
	done
	unset MYSQL_PWD

	log "Stopping temporary server"
	temp_server_stop
	log "Temporary server stopped"
	log "MariaDB init process done. Ready for start up."
}

# Options only (docker run IMAGE --foo): they are for the server.
if [ "${1:0:1}" = '-' ]; then
	set -- mariadbd "$@"
fi

if [ "$1" = mariadbd ] || [ "$1" = mysqld ]; then
	if [ "$(id -u)" = 0 ]; then
		mkdir -p "$DATADIR" /run/mysqld
		find "$DATADIR" /run/mysqld \! -user mysql -exec chown mysql:mysql '{}' +
		exec setpriv --reuid=mysql --regid=mysql --init-groups "$BASH_SOURCE" "$@"
	fi
	if [ ! -d "$DATADIR/mysql" ]; then
		init_database "$@"
	else
		log "Database already initialized; reusing it"
	fi
fi

exec "$@"
