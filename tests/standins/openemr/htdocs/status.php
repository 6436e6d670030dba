<?php

/**
 * Shuttle test stand-in: machine-readable state for tests, without authentication.
 *
 * {"configured", "admin_exists", "patients", "documents", "version"}; with ?verify=1 also
 * "documents_intact": how many recorded documents exist on disk with the recorded SHA-256.
 * Answers 503 (with "db_error") when the site is configured but its database cannot be used.
 */

declare(strict_types=1);

require_once __DIR__ . '/library/standin.inc.php';

$conf = oe_sqlconf();
$out = ['configured' => $conf['configured'], 'admin_exists' => false, 'patients' => 0, 'documents' => 0,
    'version' => OE_VERSION];
if (!$conf['configured']) {
    oe_json($out);
}
try {
    $db = oe_db($conf);
    $count = static fn (string $sql): int => (int) $db->query($sql)->fetch_row()[0];
    $out['admin_exists'] = $count('SELECT COUNT(*) FROM users WHERE is_admin = 1 AND active = 1') > 0;
    $out['patients'] = $count('SELECT COUNT(*) FROM patient_data');
    $out['documents'] = $count('SELECT COUNT(*) FROM documents');
    if (isset($_GET['verify'])) {
        $intact = 0;
        foreach ($db->query('SELECT path, sha256 FROM documents') as $doc) {
            $file = OE_SITE . '/' . $doc['path'];
            if (is_file($file) && hash_equals($doc['sha256'], hash_file('sha256', $file))) {
                $intact++;
            }
        }
        $out['documents_intact'] = $intact;
    }
} catch (mysqli_sql_exception $e) {
    $out['db_error'] = $e->getMessage();
    oe_json($out, 503);
}
oe_json($out);
