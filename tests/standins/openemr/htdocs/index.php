<?php

// Shuttle test stand-in for OpenEMR's front page: the real one redirects to the login page (or to setup).

declare(strict_types=1);

require_once __DIR__ . '/library/standin.inc.php';

if (!oe_sqlconf()['configured']) {
    oe_not_configured('OpenEMR');
}
header('Location: /interface/login/login.php', true, 302);
