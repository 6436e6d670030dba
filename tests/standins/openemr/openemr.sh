#!/bin/bash
# Shuttle test stand-in for the OpenEMR container's start script: set up (or not) then serve.
#
# Apache is exec'd directly rather than through apache2ctl: Debian's apache2ctl runs apache2 as a child
# of /bin/sh, which as PID 1 would ignore SIGTERM and make every `docker stop` wait for the kill.
set -Eeuo pipefail

OE=/var/www/localhost/htdocs/openemr

# An empty bind mount (rather than a named volume that Docker fills from the image) gets the shipped skeleton.
if [ ! -e "$OE/sites/default/sqlconf.php" ]; then
	echo "[openemr-standin] sites/ is empty: copying the default site skeleton" >&2
	cp -an /usr/local/share/openemr-standin/sites/. "$OE/sites/"
	chown -R www-data:www-data "$OE/sites"
fi

php /usr/local/lib/openemr-standin/setup.php

# Debian's envvars reads unset variables on purpose.
set +u
# shellcheck disable=SC1091
. /etc/apache2/envvars
set -u
mkdir -p "$APACHE_RUN_DIR" "$APACHE_LOCK_DIR" "$APACHE_LOG_DIR"
chown www-data:www-data "$APACHE_LOCK_DIR"
rm -f "$APACHE_PID_FILE"
exec apache2 -D FOREGROUND "$@"
