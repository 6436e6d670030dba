#!/bin/bash
# Shuttle test stand-in for the official mariadb image's /usr/local/bin/healthcheck.sh.
#
# Accepts the official command line; implements the tests a single-server stack uses:
#   --connect              the server accepts TCP connections (the init-time temporary server does not
#                          listen on TCP, so this fails until initialisation is complete)
#   --innodb_initialized   InnoDB is up (asked with the healthcheck user the entrypoint created)
#   --innodb_buffer_pool_loaded, --mariadbupgrade   accepted and treated as passed once InnoDB is up
# Any other test fails loudly rather than passing silently. Exit 0 only when every test passes.
set -uo pipefail

datadir=/var/lib/mysql
tests=()
for arg in "$@"; do
	case "$arg" in
	--datadir=*) datadir=${arg#*=} ;;
	--su=* | --su-mysql | --no-defaults | --defaults-file=* | --defaults-extra-file=* | --defaults-group-suffix=* | --verbose) ;;
	--connect | --innodb_initialized | --innodb_buffer_pool_loaded | --mariadbupgrade) tests+=("${arg#--}") ;;
	*) echo "healthcheck.sh (Shuttle stand-in): unsupported option $arg" >&2; exit 2 ;;
	esac
done
[ ${#tests[@]} -gt 0 ] || tests=(connect)

cnf="$datadir/.my-healthcheck.cnf"
client() {
	if [ -r "$cnf" ]; then
		mariadb --defaults-file="$cnf" "$@"
	else
		mariadb --no-defaults -uhealthcheck "$@"
	fi
}

connect() {
	local out
	out=$(client -h 127.0.0.1 -P 3306 --protocol=tcp --connect-timeout=3 -e 'SELECT 1' 2>&1) && return 0
	# Refused or dropped means down; any answer from the server (even "access denied") means it is up.
	if grep -qE "Can't connect|Lost connection|Unknown MySQL server host" <<<"$out"; then
		echo "healthcheck connect failed: $out" >&2
		return 1
	fi
	return 0
}

innodb_initialized() {
	local out
	if [ ! -r "$cnf" ]; then
		echo "healthcheck: no $cnf; only checking that the server answers" >&2
		connect
		return
	fi
	out=$(client --protocol=socket --skip-column-names -e \
		"SELECT 1 FROM information_schema.ENGINES WHERE engine='innodb' AND support IN ('YES','DEFAULT','ENABLED')" 2>&1)
	if [ "$out" = 1 ]; then
		return 0
	fi
	echo "healthcheck innodb_initialized failed: $out" >&2
	return 1
}

for test in "${tests[@]}"; do
	case "$test" in
	connect) connect || exit 1 ;;
	*) innodb_initialized || exit 1 ;;
	esac
done
exit 0
