<?php

/**
 * Shuttle test stand-in API: POST multipart `file` plus `patient_id` (or `pid`) stores a document.
 *
 * The file goes to sites/default/documents/<patient id>/ (the volume Shuttle backs up) and its SHA-256
 * goes to the `documents` table, so a restore can be checked byte for byte (see status.php?verify=1).
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

$pid = (int) ($_POST['patient_id'] ?? $_POST['pid'] ?? 0);
$upload = $_FILES['file'] ?? null;
if (!is_array($upload) || ($upload['error'] ?? UPLOAD_ERR_NO_FILE) !== UPLOAD_ERR_OK || is_array($upload['name'])) {
    oe_json(['error' => 'a single multipart field "file" is required', 'code' => $upload['error'] ?? null], 400);
}

$db = oe_db($conf);
$stmt = $db->prepare('SELECT id FROM patient_data WHERE id = ?');
$stmt->bind_param('i', $pid);
$stmt->execute();
if (!$stmt->get_result()->fetch_assoc()) {
    oe_json(['error' => "no patient $pid"], 404);
}

$name = preg_replace('/[^A-Za-z0-9._-]/', '_', basename((string) $upload['name']));
$name = ltrim((string) $name, '.') ?: 'document';
$dir = OE_SITE . "/documents/$pid";
if (!is_dir($dir) && !mkdir($dir, 0770, true) && !is_dir($dir)) {
    oe_json(['error' => "cannot create $dir"], 500);
}
$stem = pathinfo($name, PATHINFO_FILENAME);
$ext = pathinfo($name, PATHINFO_EXTENSION);
$final = $name;
for ($n = 1; file_exists("$dir/$final"); $n++) {
    $final = $stem . "-$n" . ($ext === '' ? '' : ".$ext");
}
if (!move_uploaded_file($upload['tmp_name'], "$dir/$final")) {
    oe_json(['error' => "cannot write $dir/$final"], 500);
}
$sha256 = hash_file('sha256', "$dir/$final");
$size = filesize("$dir/$final");
$path = "documents/$pid/$final";

$stmt = $db->prepare('INSERT INTO documents (patient_id, filename, sha256, path, size) VALUES (?, ?, ?, ?, ?)');
$stmt->bind_param('isssi', $pid, $final, $sha256, $path, $size);
$stmt->execute();
oe_json(['id' => $db->insert_id, 'patient_id' => $pid, 'filename' => $final, 'sha256' => $sha256, 'path' => $path,
    'size' => $size]);
