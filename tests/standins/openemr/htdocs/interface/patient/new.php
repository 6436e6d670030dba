<?php

/**
 * Shuttle test stand-in API: POST fname, lname (optional DOB as YYYY-MM-DD, sex) creates a patient.
 * Answers JSON {"id": N}; requires a logged-in session (401 otherwise).
 */

declare(strict_types=1);

require_once __DIR__ . '/../../library/standin.inc.php';

if (($_SERVER['REQUEST_METHOD'] ?? 'GET') !== 'POST') {
    oe_json(['error' => 'POST only'], 405);
}
$conf = oe_sqlconf();
if (!$conf['configured']) {
    oe_json(['error' => 'not configured'], 503);
}
oe_require_login(true);

$fname = trim((string) ($_POST['fname'] ?? ''));
$lname = trim((string) ($_POST['lname'] ?? ''));
$dob = trim((string) ($_POST['DOB'] ?? $_POST['dob'] ?? ''));
$sex = trim((string) ($_POST['sex'] ?? ''));
if ($fname === '' || $lname === '') {
    oe_json(['error' => 'fname and lname are required'], 400);
}
if ($dob !== '' && !preg_match('/^\d{4}-\d{2}-\d{2}$/', $dob)) {
    oe_json(['error' => 'DOB must be YYYY-MM-DD'], 400);
}
$dob = $dob === '' ? null : $dob;

$db = oe_db($conf);
$stmt = $db->prepare('INSERT INTO patient_data (fname, lname, DOB, sex) VALUES (?, ?, ?, ?)');
$stmt->bind_param('ssss', $fname, $lname, $dob, $sex);
$stmt->execute();
oe_json(['id' => $db->insert_id, 'fname' => $fname, 'lname' => $lname]);
