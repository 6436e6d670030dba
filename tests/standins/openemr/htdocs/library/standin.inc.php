<?php

/**
 * Shuttle test stand-in for OpenEMR: what every page shares (site config, database, session, output).
 *
 * The real application reads its database settings from sites/default/sqlconf.php and treats the site
 * as set up only when that file says `$config = 1`; the stand-in does the same so that a restored
 * sites/ volume plus a restored database behave as they would with the real image.
 */

declare(strict_types=1);

const OE_ROOT = '/var/www/localhost/htdocs/openemr';
const OE_SITE = OE_ROOT . '/sites/default';
const OE_VERSION = '7.0.3 (Shuttle test stand-in)';

/** What sites/default/sqlconf.php says: ['configured' => bool, host, port, login, pass, dbase]. */
function oe_sqlconf(): array
{
    $file = OE_SITE . '/sqlconf.php';
    if (!is_readable($file)) {
        return ['configured' => false];
    }
    $config = 0;
    $host = $port = $login = $pass = $dbase = '';
    include $file;
    return [
        'configured' => ((int) $config) === 1,
        'host' => (string) $host,
        'port' => (int) ($port ?: 3306),
        'login' => (string) $login,
        'pass' => (string) $pass,
        'dbase' => (string) $dbase,
    ];
}

/** A connection that throws on every error, so no page silently works on a broken database. */
function oe_connect(string $host, int $port, string $user, string $pass, ?string $db = null): mysqli
{
    mysqli_report(MYSQLI_REPORT_ERROR | MYSQLI_REPORT_STRICT);
    $link = mysqli_init();
    $link->options(MYSQLI_OPT_CONNECT_TIMEOUT, 5);
    $link->real_connect($host, $user, $pass, $db, $port);
    $link->set_charset('utf8mb4');
    return $link;
}

function oe_db(array $conf): mysqli
{
    return oe_connect($conf['host'], $conf['port'], $conf['login'], $conf['pass'], $conf['dbase']);
}

function oe_session_start(): void
{
    if (session_status() === PHP_SESSION_ACTIVE) {
        return;
    }
    session_name('OpenEMR');
    session_set_cookie_params(['path' => '/', 'httponly' => true, 'samesite' => 'Strict']);
    session_start();
}

/** The logged-in user, or end the request: JSON callers get 401, browsers go to the login page. */
function oe_require_login(bool $json): string
{
    oe_session_start();
    $user = $_SESSION['authUser'] ?? '';
    if ($user !== '') {
        return (string) $user;
    }
    if ($json) {
        oe_json(['error' => 'not logged in'], 401);
    }
    header('Location: /interface/login/login.php', true, 302);
    exit;
}

function oe_json(array $data, int $status = 200): never
{
    http_response_code($status);
    header('Content-Type: application/json');
    header('Cache-Control: no-store');
    echo json_encode($data, JSON_UNESCAPED_SLASHES), "\n";
    exit;
}

function oe_h(string $text): string
{
    return htmlspecialchars($text, ENT_QUOTES | ENT_SUBSTITUTE, 'UTF-8');
}

function oe_page(string $title, string $body, int $status = 200): never
{
    http_response_code($status);
    header('Content-Type: text/html; charset=utf-8');
    header('Cache-Control: no-store');
    echo "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>", oe_h($title), "</title></head>\n",
        "<body>\n<!-- OpenEMR ", oe_h(OE_VERSION), " -->\n", $body, "\n</body></html>\n";
    exit;
}

/** The page a site shows before it is set up (MANUAL_SETUP=yes and no restore yet). */
function oe_not_configured(string $title): never
{
    oe_page($title, "<h1>OpenEMR</h1>\n<p id=\"not-configured\">This OpenEMR site is not configured yet.</p>");
}
