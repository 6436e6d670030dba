<?php

/**
 * Shuttle test stand-in for OpenEMR's login handler, honouring the real one's HTTP contract.
 *
 * POST ?auth=login with authUser/clearPass: success regenerates the session and redirects (302) to
 * the main page; a failure answers 200 with a script that sends the browser back to the login page
 * with ?error=1, as OpenEMR 7's authLoginScreen() does. Shuttle's fail2ban filter counts exactly
 * this (a login POST answered 200) in the reverse proxy's access log, so the stand-in must not
 * differ from the real application here.
 */

declare(strict_types=1);

require_once __DIR__ . '/../../library/standin.inc.php';

$conf = oe_sqlconf();
if (!$conf['configured']) {
    oe_not_configured('OpenEMR');
}

if (($_GET['auth'] ?? '') === 'login' && ($_SERVER['REQUEST_METHOD'] ?? 'GET') === 'POST') {
    $user = (string) ($_POST['authUser'] ?? '');
    $pass = (string) ($_POST['clearPass'] ?? '');
    $db = oe_db($conf); // kept in a variable: a statement does not keep its connection open
    $stmt = $db->prepare(
        'SELECT s.password FROM users_secure s JOIN users u ON u.id = s.id WHERE u.username = ? AND u.active = 1'
    );
    $stmt->bind_param('s', $user);
    $stmt->execute();
    $row = $stmt->get_result()->fetch_assoc();
    if ($user !== '' && $row && password_verify($pass, $row['password'])) {
        oe_session_start();
        session_regenerate_id(true);
        $_SESSION['authUser'] = $user;
        header('Location: /interface/main/main.php', true, 302);
        exit;
    }
    $client = $_SERVER['HTTP_X_FORWARDED_FOR'] ?? $_SERVER['REMOTE_ADDR'] ?? '-';
    error_log(sprintf('OpenEMR login failure: user "%s" from %s', addcslashes($user, "\0..\37\"\\"), $client));
}

// Not a successful login: back to the login screen, the way OpenEMR does it (a script, not a redirect).
oe_page('OpenEMR', "<script>top.location.href = '/interface/login/login.php?error=1&site=default';</script>");
