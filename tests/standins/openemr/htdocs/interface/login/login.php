<?php

/**
 * Shuttle test stand-in for OpenEMR's login page.
 *
 * Like OpenEMR 7, the form posts to /interface/main/main_screen.php?auth=login, which answers a
 * failed login with a page that sends the browser back here with ?error=1.
 */

declare(strict_types=1);

require_once __DIR__ . '/../../library/standin.inc.php';

if (!oe_sqlconf()['configured']) {
    oe_page('OpenEMR Login', "<h1>OpenEMR Login</h1>\n<p id=\"not-configured\">This OpenEMR site is not configured yet.</p>");
}

$error = isset($_GET['error']) ? '<p id="login-error">Invalid username or password</p>' : '';
oe_page('OpenEMR Login', <<<HTML
<h1>OpenEMR Login</h1>
$error
<form method="post" action="/interface/main/main_screen.php?auth=login&amp;site=default">
  <input type="hidden" name="new_login_session_management" value="1">
  <label>Username <input type="text" name="authUser" autocomplete="username"></label>
  <label>Password <input type="password" name="clearPass" autocomplete="current-password"></label>
  <button type="submit">Login</button>
</form>
HTML);
