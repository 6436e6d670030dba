<?php

// Shuttle test stand-in for OpenEMR's main screen: only reachable with a logged-in session.

declare(strict_types=1);

require_once __DIR__ . '/../../library/standin.inc.php';

if (!oe_sqlconf()['configured']) {
    oe_not_configured('OpenEMR');
}
$user = oe_require_login(false);
oe_page('OpenEMR', '<h1>OpenEMR</h1><p id="welcome">Welcome ' . oe_h($user) . '</p>');
