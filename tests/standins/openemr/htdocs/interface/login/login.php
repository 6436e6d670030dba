<?php

/**
 * Shuttle test stand-in for OpenEMR's login page.
 *
 * POST authUser/clearPass: success regenerates the session and redirects (302) to the main page; a
 * failure answers 401, so a failed login is visible in the reverse proxy's access log (which is what
 * Shuttle's fail2ban jail reads), and is also written to the error log with the forwarded client address.
 */

declare(strict_types=1);

require_once __DIR__ . '/../../library/standin.inc.php';

$conf = oe_sqlconf();
if (!$conf['configured']) {
    oe_page('OpenEMR Login', "<h1>OpenEMR Login</h1>\n<p id=\"not-configured\">This OpenEMR site is not configured yet.</p>");
}

$error = '';
$status = 200;
if (($_SERVER['REQUEST_METHOD'] ?? 'GET') === 'POST') {
    $user = (string) ($_POST['authUser'] ?? '');
    $pass = (string) ($_POST['clearPass'] ?? '');
    $db = oe_db($conf); // kept in a variable: a statement does not keep its connection open
    $stmt = $db->prepare('SELECT password FROM users WHERE username = ? AND active = 1');
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
    $error = '<p id="login-error">Invalid username or password</p>';
    $status = 401;
}

oe_page('OpenEMR Login', <<<HTML
<h1>OpenEMR Login</h1>
$error
<form method="post" action="/interface/login/login.php">
  <label>Username <input type="text" name="authUser" autocomplete="username"></label>
  <label>Password <input type="password" name="clearPass" autocomplete="current-password"></label>
  <button type="submit">Login</button>
</form>
HTML, $status);
