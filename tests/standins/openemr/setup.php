<?php

/**
 * Shuttle test stand-in for the OpenEMR container's first-start setup (openemr.sh + auto_configure.php).
 *
 * Same decisions as the real image, much less work:
 *  - sites/default/sqlconf.php says `$config = 1`: the site is set up (maybe restored); touch nothing,
 *    only wait (bounded) for its database so the first page does not fail, and add a table that a site
 *    set up by an older stand-in lacks (`globals`), as an upgrade would.
 *  - not configured and MANUAL_SETUP=yes: leave it unconfigured (Shuttle's "empty" mode, before a restore).
 *  - otherwise: wait for MYSQL_HOST, then, as MYSQL_ROOT_USER/MYSQL_ROOT_PASS, create MYSQL_DATABASE and
 *    MYSQL_USER/MYSQL_PASS, the tables, the administrator OE_USER/OE_PASS, and finally write sqlconf.php
 *    (written last and atomically, so a setup that dies half-way is simply redone at the next start).
 * Exits non-zero when setup is needed but cannot be done, so the container fails visibly and restarts.
 */

declare(strict_types=1);

require '/var/www/localhost/htdocs/openemr/library/standin.inc.php';

function env(string $name, string $default = ''): string
{
    $value = getenv($name);
    return ($value === false || $value === '') ? $default : $value;
}

function say(string $message): void
{
    fwrite(STDERR, gmdate('Y-m-d\TH:i:s\Z') . " [openemr-standin] $message\n");
}

/** Connect once the server answers; auth errors mean "up" when $acceptDenied, else they are fatal. */
function wait_for_db(string $host, int $port, string $user, string $pass, int $timeout, bool $acceptDenied): ?mysqli
{
    $deadline = time() + $timeout;
    $last = '';
    for (;;) {
        try {
            return oe_connect($host, $port, $user, $pass);
        } catch (mysqli_sql_exception $e) {
            $denied = in_array($e->getCode(), [1044, 1045, 1049], true);
            if ($denied && $acceptDenied) {
                return null;
            }
            if ($denied) {
                say("database at $host:$port refused $user: " . $e->getMessage());
                exit(1);
            }
            if ($e->getMessage() !== $last) {
                $last = $e->getMessage();
                say("waiting for the database at $host:$port: $last");
            }
        }
        if (time() >= $deadline) {
            say("gave up waiting for the database at $host:$port after {$timeout}s");
            return null;
        }
        sleep(2);
    }
}

function sql_ident(string $name): string
{
    return '`' . str_replace('`', '``', $name) . '`';
}

/** OpenEMR's `globals` table: the site's settings (Administration > Config), a row per name and index. */
function create_globals_table(mysqli $db): void
{
    $db->query(<<<'SQL'
        CREATE TABLE IF NOT EXISTS globals (
            gl_name VARCHAR(63) NOT NULL,
            gl_index INT NOT NULL DEFAULT 0,
            gl_value LONGTEXT NOT NULL,
            PRIMARY KEY (gl_name, gl_index)
        ) ENGINE=InnoDB
        SQL);
}

/**
 * A site set up by an older stand-in has no `globals` table: add it, as an upgrade would. Only to a database
 * that holds the site's tables: an empty one (a restore still to come) is left alone.
 */
function upgrade_configured_site(mysqli $link, array $conf): void
{
    try {
        $link->select_db($conf['dbase']);
        if ($link->query("SHOW TABLES LIKE 'users'")->num_rows === 0) {
            return;
        }
        if ($link->query("SHOW TABLES LIKE 'globals'")->num_rows === 0) {
            create_globals_table($link);
            say('added the globals table (site set up by an older stand-in)');
        }
    } catch (mysqli_sql_exception $e) {
        say('could not check the site\'s tables: ' . $e->getMessage());
    } finally {
        $link->close();
    }
}

$timeout = (int) env('STANDIN_DB_WAIT_SECONDS', '600');
$conf = oe_sqlconf();

if ($conf['configured']) {
    say('site already configured (sqlconf.php has $config = 1): no setup');
    $link = wait_for_db($conf['host'], $conf['port'], $conf['login'], $conf['pass'], $timeout, true);
    if ($link !== null) {
        upgrade_configured_site($link, $conf);
    }
    exit(0);
}
if (env('MANUAL_SETUP') === 'yes') {
    say('MANUAL_SETUP=yes: leaving the site unconfigured');
    exit(0);
}

$host = env('MYSQL_HOST', 'localhost');
$port = (int) env('MYSQL_PORT', '3306');
$rootUser = env('MYSQL_ROOT_USER', 'root');
$rootPass = env('MYSQL_ROOT_PASS', 'root');
$appUser = env('MYSQL_USER', 'openemr');
$appPass = env('MYSQL_PASS', 'openemr');
$dbName = env('MYSQL_DATABASE', 'openemr');
$adminUser = env('OE_USER', 'admin');
$adminPass = env('OE_PASS', 'pass');

$root = wait_for_db($host, $port, $rootUser, $rootPass, $timeout, false);
if ($root === null) {
    exit(1);
}
say("setting up database $dbName on $host:$port");
$q = static fn (string $s): string => "'" . $root->real_escape_string($s) . "'";
$root->query('CREATE DATABASE IF NOT EXISTS ' . sql_ident($dbName) . ' CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci');
$root->query("CREATE USER IF NOT EXISTS {$q($appUser)}@'%' IDENTIFIED BY {$q($appPass)}");
$root->query("ALTER USER {$q($appUser)}@'%' IDENTIFIED BY {$q($appPass)}");
$root->query('GRANT ALL PRIVILEGES ON ' . sql_ident($dbName) . ".* TO {$q($appUser)}@'%'");
$root->close();

// Tables are created as the application user: this also proves the grants work before the site says "configured".
$db = oe_connect($host, $port, $appUser, $appPass, $dbName);
$db->query(<<<'SQL'
    CREATE TABLE IF NOT EXISTS users (
        id BIGINT AUTO_INCREMENT PRIMARY KEY,
        username VARCHAR(255) NOT NULL UNIQUE,
        is_admin TINYINT(1) NOT NULL DEFAULT 0,
        active TINYINT(1) NOT NULL DEFAULT 1,
        created TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
    ) ENGINE=InnoDB
    SQL);
// As in OpenEMR: password hashes (PHP password_hash) live apart from the users, keyed by the same id.
$db->query(<<<'SQL'
    CREATE TABLE IF NOT EXISTS users_secure (
        id BIGINT PRIMARY KEY,
        username VARCHAR(255) NOT NULL UNIQUE,
        password VARCHAR(255) NOT NULL,
        last_update_password DATETIME NULL
    ) ENGINE=InnoDB
    SQL);
$db->query(<<<'SQL'
    CREATE TABLE IF NOT EXISTS patient_data (
        id BIGINT AUTO_INCREMENT PRIMARY KEY,
        fname VARCHAR(255) NOT NULL,
        lname VARCHAR(255) NOT NULL,
        DOB DATE NULL,
        sex VARCHAR(30) NOT NULL DEFAULT '',
        created TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
    ) ENGINE=InnoDB
    SQL);
$db->query(<<<'SQL'
    CREATE TABLE IF NOT EXISTS documents (
        id BIGINT AUTO_INCREMENT PRIMARY KEY,
        patient_id BIGINT NOT NULL,
        filename VARCHAR(255) NOT NULL,
        sha256 CHAR(64) NOT NULL,
        path VARCHAR(1024) NOT NULL,
        size BIGINT NOT NULL DEFAULT 0,
        created TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
        KEY patient (patient_id)
    ) ENGINE=InnoDB
    SQL);
create_globals_table($db);
$hash = password_hash($adminPass, PASSWORD_DEFAULT);
$stmt = $db->prepare(
    'INSERT INTO users (username, is_admin, active) VALUES (?, 1, 1) '
    . 'ON DUPLICATE KEY UPDATE is_admin = 1, active = 1'
);
$stmt->bind_param('s', $adminUser);
$stmt->execute();
$stmt = $db->prepare(
    'INSERT INTO users_secure (id, username, password, last_update_password) '
    . 'SELECT id, username, ?, NOW() FROM users WHERE username = ? '
    . 'ON DUPLICATE KEY UPDATE password = VALUES(password), last_update_password = NOW()'
);
$stmt->bind_param('ss', $hash, $adminUser);
$stmt->execute();
$db->close();

$v = static fn (string $s): string => var_export($s, true);
$sqlconf = <<<PHP
    <?php

    //  OpenEMR
    //  MySQL Config
    //  (written by the Shuttle test stand-in's setup)

    global \$disable_utf8_flag;
    \$disable_utf8_flag = false;

    \$host   = {$v($host)};
    \$port   = {$v((string) $port)};
    \$login  = {$v($appUser)};
    \$pass   = {$v($appPass)};
    \$dbase  = {$v($dbName)};
    \$db_encoding = 'utf8mb4';

    \$sqlconf = array();
    global \$sqlconf;
    \$sqlconf["host"] = \$host;
    \$sqlconf["port"] = \$port;
    \$sqlconf["login"] = \$login;
    \$sqlconf["pass"] = \$pass;
    \$sqlconf["dbase"] = \$dbase;
    \$sqlconf["db_encoding"] = \$db_encoding;

    //////////////////////////
    //////////////////////////
    //////////////////////////
    //////DO NOT TOUCH THIS///
    \$config = 1; /////////////
    //////////////////////////
    //////////////////////////
    //////////////////////////

    PHP;
$target = OE_SITE . '/sqlconf.php';
$tmp = OE_SITE . '/.sqlconf.php.tmp';
file_put_contents($tmp, $sqlconf);
chmod($tmp, 0640);
chown($tmp, 'www-data');
chgrp($tmp, 'www-data');
rename($tmp, $target);

// As the real setup: the site's encryption keys exist once it is configured (the database set in `keys`,
// the drive set under documents/), and the upgrade marker says which upgrade scripts the site has had.
require_once OE_ROOT . '/src/Common/Crypto/CryptoGen.php';
unset($sqlconf); // sqlconf.php declares a global of that name
(new OpenEMR\Common\Crypto\CryptoGen())->encryptStandard('site set up');
file_put_contents(OE_SITE . '/docker-version', trim((string) file_get_contents('/root/docker-version')) . "\n");
foreach ([OE_SITE . '/docker-version', OE_SITE . '/documents'] as $owned) {
    exec('chown -R www-data:www-data ' . escapeshellarg($owned));
}
say("site configured; administrator is $adminUser");
