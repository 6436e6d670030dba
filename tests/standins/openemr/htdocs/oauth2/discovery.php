<?php

/**
 * Shuttle test stand-in for OpenEMR's OpenID Connect discovery document
 * (/oauth2/<site>/.well-known/openid-configuration, routed here by the Apache config).
 *
 * As the real one, every URL in it starts with the site's own address, $GLOBALS['site_addr_oath'] (see
 * interface/globals.php), followed by the web root and /oauth2/<site>: the issuer FHIR, SMART and portal
 * clients check, and the endpoints they call.
 */

declare(strict_types=1);

$ignoreAuth = true;
$_GET['site'] = 'default';
require_once __DIR__ . '/../interface/globals.php';

$issuer = $GLOBALS['site_addr_oath'] . $GLOBALS['webroot'] . '/oauth2/' . $GLOBALS['site_id'];
oe_json([
    'issuer' => $issuer,
    'authorization_endpoint' => $issuer . '/authorize',
    'token_endpoint' => $issuer . '/token',
    'jwks_uri' => $issuer . '/jwk',
    'userinfo_endpoint' => $issuer . '/userinfo',
]);
