<?php

/**
 * Shuttle test stand-in for OpenEMR's interface/globals.php: the bootstrap a command-line script requires
 * (with $ignoreAuth set and $_GET['site'] naming the site) to get the site's configuration and classes.
 *
 * As the real one: the paths ($GLOBALS['webserver_root'], ['srcdir'] = library/, ...), the query functions
 * of library/sql.inc.php, and the site's settings from its `globals` table (gl_name => gl_value, the
 * gl_index 0 rows) in $GLOBALS, with OpenEMR's defaults for the mail settings that have no row. A site that
 * is not configured yet gets the paths and the defaults only (there is no database to read).
 *
 * Also as the real one: `gbl_time_zone`, when set, becomes PHP's default zone and the database session's
 * `time_zone` (the image has no tzdata for TZ to matter); `site_addr_oath`, when empty, is resolved from the
 * request's scheme and host, the way OpenEMR's $ResolveServerHost does, so behind a TLS proxy that talks
 * plain http to the app it comes out as http:// unless the global is set.
 */

declare(strict_types=1);

require_once __DIR__ . '/../library/standin.inc.php';

(static function (): void {
    $site = (string) ($_GET['site'] ?? 'default');
    if ($site !== basename(OE_SITE)) {
        // The stand-in has one site, as the Docker image sets up.
        die('Site ID ' . oe_h($site) . ' is missing sqlconf.php');
    }
    $GLOBALS['webserver_root'] = OE_ROOT;
    $GLOBALS['fileroot'] = OE_ROOT;
    $GLOBALS['webroot'] = '';
    $GLOBALS['srcdir'] = OE_ROOT . '/library';
    $GLOBALS['incdir'] = OE_ROOT . '/interface';
    $GLOBALS['OE_SITES_BASE'] = dirname(OE_SITE);
    $GLOBALS['OE_SITE_DIR'] = OE_SITE;
    $GLOBALS['site_id'] = $site;
})();

require_once $GLOBALS['srcdir'] . '/sql.inc.php';
require_once $GLOBALS['webserver_root'] . '/src/Common/Crypto/CryptoGen.php';

(static function (): void {
    // OpenEMR's defaults (Administration > Config > Notifications) for the settings without a row.
    $defaults = [
        'EMAIL_METHOD' => 'PHPMAIL',
        'SMTP_HOST' => 'localhost',
        'SMTP_PORT' => '25',
        'SMTP_USER' => '',
        'SMTP_PASS' => '',
        'SMTP_SECURE' => '',
        'SMTP_Auth' => '0',
        'patient_reminder_sender_email' => '',
        'practice_return_email_path' => '',
    ];
    foreach ($defaults as $name => $value) {
        $GLOBALS[$name] = $value;
    }
    if (!oe_sqlconf()['configured']) {
        return;
    }
    try {
        $rows = sqlStatement('SELECT gl_name, gl_value FROM globals WHERE gl_index = 0');
    } catch (mysqli_sql_exception $e) {
        if ($e->getCode() !== 1146) {
            throw $e;
        }
        // No `globals` table: a database from an older stand-in, not yet started again (setup.php adds it).
        return;
    }
    while (($row = sqlFetchArray($rows)) !== false) {
        $GLOBALS[(string) $row['gl_name']] = (string) $row['gl_value'];
    }
})();

(static function (): void {
    if (($GLOBALS['gbl_time_zone'] ?? '') !== '') {
        date_default_timezone_set($GLOBALS['gbl_time_zone']);
        if (oe_sqlconf()['configured']) {
            sqlStatement('SET time_zone = ?', [(new DateTime())->format('P')]);
        }
    }
    if (($GLOBALS['site_addr_oath'] ?? '') === '') {
        $host = $_SERVER['HTTP_X_FORWARDED_HOST'] ?? $_SERVER['HTTP_HOST'] ?? $_SERVER['SERVER_NAME'] ?? 'localhost';
        $GLOBALS['site_addr_oath'] = ($_SERVER['REQUEST_SCHEME'] ?? 'https') . '://' . $host;
    }
})();
