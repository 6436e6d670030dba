<?php

/**
 * Shuttle test stand-in for OpenEMR's OpenEMR\Common\Crypto\CryptoGen: the same two key sets, the same
 * entry points (encryptStandard / decryptStandard) and the same failure when they do not match.
 *
 *  - the database key set: the `keys` table (a row per key, created on first use);
 *  - the drive key set: sites/default/documents/logs_and_misc/methods/sixa, itself encrypted with the
 *    database key, created on first use when the file is missing (as the real one silently does);
 *  - data is encrypted with the drive key. A drive key that the database key cannot decrypt (sites/ and
 *    the database not from one backup) stops the request, as the real collectCryptoKey() dies.
 */

declare(strict_types=1);

namespace OpenEMR\Common\Crypto;

final class CryptoGen
{
    private const PREFIX = '006';
    private const MISMATCH = 'OpenEMR Error : OpenEMR Encryption Error: Key in drive is not compatible '
        . '(ie. can not be decrypted) with key in database - Exiting.';

    private function databaseKey(): string
    {
        $db = \oe_db(\oe_sqlconf());
        $db->query('CREATE TABLE IF NOT EXISTS `keys` (id BIGINT AUTO_INCREMENT PRIMARY KEY, '
            . 'name VARCHAR(20) NOT NULL UNIQUE, value TEXT NOT NULL) ENGINE=InnoDB');
        $row = $db->query("SELECT value FROM `keys` WHERE name = 'sixa'")->fetch_row();
        if ($row !== null) {
            return base64_decode($row[0]);
        }
        $key = random_bytes(32);
        $stmt = $db->prepare("INSERT INTO `keys` (name, value) VALUES ('sixa', ?)");
        $encoded = base64_encode($key);
        $stmt->bind_param('s', $encoded);
        $stmt->execute();
        return $key;
    }

    private function driveKey(): string
    {
        $databaseKey = $this->databaseKey();
        $dir = OE_SITE . '/documents/logs_and_misc/methods';
        $file = $dir . '/sixa';
        if (!is_file($file)) {
            if (!is_dir($dir)) {
                mkdir($dir, 0770, true);
            }
            $key = random_bytes(32);
            file_put_contents($file, self::seal($key, $databaseKey));
            return $key;
        }
        $key = self::open((string) file_get_contents($file), $databaseKey);
        if ($key === false) {
            error_log(self::MISMATCH);
            die(self::MISMATCH);
        }
        return $key;
    }

    private static function seal(string $plain, string $key): string
    {
        $iv = random_bytes(16);
        $cipher = (string) openssl_encrypt($plain, 'aes-256-cbc', $key, OPENSSL_RAW_DATA, $iv);
        return base64_encode(hash_hmac('sha384', $iv . $cipher, $key, true) . $iv . $cipher);
    }

    private static function open(string $sealed, string $key): string|false
    {
        $raw = base64_decode($sealed, true);
        if ($raw === false || strlen($raw) < 64) {
            return false;
        }
        [$mac, $iv, $cipher] = [substr($raw, 0, 48), substr($raw, 48, 16), substr($raw, 64)];
        if (!hash_equals(hash_hmac('sha384', $iv . $cipher, $key, true), $mac)) {
            return false;
        }
        return openssl_decrypt($cipher, 'aes-256-cbc', $key, OPENSSL_RAW_DATA, $iv);
    }

    public function encryptStandard(?string $value, ?string $customPassword = null, string $keySource = 'drive'): string
    {
        return self::PREFIX . self::seal((string) $value, $this->driveKey());
    }

    public function decryptStandard(
        ?string $value,
        ?string $customPassword = null,
        string $keySource = 'drive',
        ?int $minimumVersion = null
    ): false|string {
        if ($value === null || !str_starts_with($value, self::PREFIX)) {
            return false;
        }
        return self::open(substr($value, strlen(self::PREFIX)), $this->driveKey());
    }
}
