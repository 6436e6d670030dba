<?php

/**
 * Shuttle test stand-in for OpenEMR's interface/globals.php: the bootstrap a command-line script requires
 * (with $ignoreAuth set and $_GET['site'] naming the site) to get the site's configuration and classes.
 */

declare(strict_types=1);

require_once __DIR__ . '/../library/standin.inc.php';
require_once __DIR__ . '/../src/Common/Crypto/CryptoGen.php';
