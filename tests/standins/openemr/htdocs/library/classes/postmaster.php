<?php

/**
 * Shuttle test stand-in for OpenEMR's library/classes/postmaster.php: MyMailer, what OpenEMR sends every
 * mail with, set up from the site's mail settings (Administration > Config > Notifications) in $GLOBALS.
 *
 * The real class is PHPMailer configured from those globals; this one has the part of that API OpenEMR's
 * callers use (SetFrom, AddAddress, AddReplyTo, Subject, Body, Send, ErrorInfo, isConfigured) and speaks
 * SMTP itself, over PHP streams, the way PHPMailer does with the same settings:
 *  - EMAIL_METHOD 'SMTP': SMTP_HOST, SMTP_PORT; SMTP_SECURE 'ssl' = TLS from the first byte, 'tls' = STARTTLS
 *    (required), '' = STARTTLS when the server offers it (PHPMailer's SMTPAutoTLS, on by default);
 *    SMTP_Auth on = AUTH LOGIN or PLAIN with SMTP_USER and SMTP_PASS (stored encrypted, CryptoGen);
 *  - the server's certificate is always verified, its name against SMTP_HOST, with OpenSSL's default
 *    trust store (so SSL_CERT_FILE / SSL_CERT_DIR are honoured; SSL_CERT_FILE is also passed as cafile);
 *  - other methods (PHPMAIL, SENDMAIL) need a local mail transfer agent, which the OpenEMR container does
 *    not have (openemr#14074): Send() fails, saying so.
 * Send() returns false on any failure, with ErrorInfo saying why (the server's answer line for an SMTP
 * refusal, e.g. "SMTP Error: 535 5.7.8 Authentication credentials invalid"); never the password.
 */

declare(strict_types=1);

require_once __DIR__ . '/../standin.inc.php';
require_once __DIR__ . '/../../src/Common/Crypto/CryptoGen.php';

/** Why a MyMailer send failed; its message is what ErrorInfo gets. */
final class MyMailerError extends RuntimeException
{
}

class MyMailer
{
    /** 'smtp', 'mail' (EMAIL_METHOD PHPMAIL) or 'sendmail', as PHPMailer names them. */
    public $Mailer = 'mail';
    public $SMTPAuth = false;
    public $Host = 'localhost';
    public $Port = 25;
    public $SMTPSecure = '';
    public $SMTPAutoTLS = true;
    public $Username = '';
    public $Password = '';
    /** Seconds, for the connection and for every answer. */
    public $Timeout = 30;
    /** The name this client gives in EHLO and Message-ID ('' = the server's name). */
    public $Hostname = '';
    public $CharSet = 'utf-8';
    public $From = 'root@localhost';
    public $FromName = 'Root User';
    public $Subject = '';
    public $Body = '';
    public $ErrorInfo = '';

    private bool $exceptions;
    private string $method;
    /** @var list<array{string, string}> */
    private array $to = [];
    /** @var list<array{string, string}> */
    private array $replyTo = [];
    /** @var resource|null */
    private $socket = null;
    /** EHLO keyword => its parameters, from the server's last EHLO answer. */
    private array $extensions = [];

    public function __construct($throwExceptions = false)
    {
        $this->exceptions = (bool) $throwExceptions;
        $this->emailMethod();
    }

    /** Whether the mail settings name everything the chosen method needs (for SMTP: host, port, security, login). */
    public static function isConfigured(): bool
    {
        if (($GLOBALS['EMAIL_METHOD'] ?? '') !== 'SMTP') {
            return true;
        }
        $needed = ['SMTP_HOST', 'SMTP_PORT', 'SMTP_SECURE'];
        if (!empty($GLOBALS['SMTP_Auth'])) {
            array_push($needed, 'SMTP_USER', 'SMTP_PASS');
        }
        foreach ($needed as $name) {
            if (empty($GLOBALS[$name])) {
                return false;
            }
        }
        return true;
    }

    /** Take the sending method and its settings from the site's globals. */
    public function emailMethod(): void
    {
        $this->method = (string) ($GLOBALS['EMAIL_METHOD'] ?? 'PHPMAIL');
        switch ($this->method) {
            case 'SMTP':
                $this->Mailer = 'smtp';
                $this->SMTPAuth = !empty($GLOBALS['SMTP_Auth']);
                $this->Host = (string) ($GLOBALS['SMTP_HOST'] ?? '');
                $this->Port = (int) ($GLOBALS['SMTP_PORT'] ?? 25);
                $this->SMTPSecure = (string) ($GLOBALS['SMTP_SECURE'] ?? '');
                $this->Username = (string) ($GLOBALS['SMTP_USER'] ?? '');
                $stored = (string) ($GLOBALS['SMTP_PASS'] ?? '');
                $plain = (new OpenEMR\Common\Crypto\CryptoGen())->decryptStandard($stored);
                $this->Password = $plain === false ? '' : $plain;
                break;
            case 'SENDMAIL':
                $this->Mailer = 'sendmail';
                break;
            default:
                $this->Mailer = 'mail';
        }
    }

    public function SetFrom($address, $name = '', $auto = true): bool
    {
        $address = trim((string) $address);
        if (!self::validAddress($address) || preg_match('/[\r\n]/', (string) $name)) {
            return $this->refuse("Invalid address: (From): $address");
        }
        $this->From = $address;
        $this->FromName = trim((string) $name);
        return true;
    }

    public function AddAddress($address, $name = ''): bool
    {
        return $this->add($this->to, 'to', $address, $name);
    }

    public function AddReplyTo($address, $name = ''): bool
    {
        return $this->add($this->replyTo, 'Reply-To', $address, $name);
    }

    public function Send(): bool
    {
        $this->ErrorInfo = '';
        try {
            if ($this->to === []) {
                throw new MyMailerError('You must provide at least one recipient email address.');
            }
            if ($this->Mailer !== 'smtp') {
                throw new MyMailerError(
                    "EMAIL_METHOD {$this->method} cannot send from this stand-in: the OpenEMR container has no local "
                    . 'mail transfer agent (openemr#14074); set EMAIL_METHOD to SMTP'
                );
            }
            $this->smtpSend($this->message());
            return true;
        } catch (MyMailerError $e) {
            $this->smtpClose();
            $this->ErrorInfo = $e->getMessage();
            if ($this->exceptions) {
                throw $e;
            }
            return false;
        }
    }

    /** Say goodbye to the server (without waiting: a dead one must not cost another timeout) and hang up. */
    public function smtpClose(): void
    {
        if ($this->socket !== null) {
            @fwrite($this->socket, "QUIT\r\n");
            @fclose($this->socket);
            $this->socket = null;
        }
    }

    private function refuse(string $why): bool
    {
        $this->ErrorInfo = $why;
        if ($this->exceptions) {
            throw new MyMailerError($why);
        }
        return false;
    }

    private function add(array &$list, string $kind, $address, $name): bool
    {
        $address = trim((string) $address);
        if (!self::validAddress($address) || preg_match('/[\r\n]/', (string) $name)) {
            return $this->refuse("Invalid address: ($kind): $address");
        }
        foreach ($list as [$known]) {
            if (strcasecmp($known, $address) === 0) {
                return false;
            }
        }
        $list[] = [$address, trim((string) $name)];
        return true;
    }

    private static function validAddress(string $address): bool
    {
        return filter_var($address, FILTER_VALIDATE_EMAIL) !== false;
    }

    // --- the message ------------------------------------------------------------------------------------

    private function hostname(): string
    {
        $candidates = [(string) $this->Hostname, (string) ($_SERVER['SERVER_NAME'] ?? ''), (string) gethostname()];
        foreach ($candidates as $name) {
            if ($name !== '' && preg_match('/^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$/', $name)) {
                return $name;
            }
        }
        return 'localhost.localdomain';
    }

    private function encodeHeader(string $text): string
    {
        $text = trim((string) preg_replace('/[\r\n]+/', ' ', $text));
        if (!preg_match('/[^\x20-\x7E]/', $text)) {
            return $text;
        }
        return '=?' . $this->CharSet . '?B?' . base64_encode($text) . '?=';
    }

    private function mailbox(array $entry): string
    {
        [$address, $name] = $entry;
        if ($name === '') {
            return $address;
        }
        $encoded = $this->encodeHeader($name);
        $shown = $encoded === $name ? '"' . addcslashes($name, '"\\') . '"' : $encoded;
        return "$shown <$address>";
    }

    /** The message as sent after DATA: headers, body, CRLF line ends, dot-stuffed, without the final dot. */
    private function message(): string
    {
        $body = str_replace(["\r\n", "\r"], "\n", (string) $this->Body);
        $body = str_replace("\n", "\r\n", $body);
        $longLine = (bool) preg_match('/[^\r\n]{999,}/', $body);
        $plain = !$longLine && !preg_match('/[^\x09\x0A\x0D\x20-\x7E]/', $body);
        $headers = [
            'Date: ' . date('r'),
            'To: ' . implode(', ', array_map([$this, 'mailbox'], $this->to)),
            'From: ' . $this->mailbox([$this->From, $this->FromName]),
        ];
        if ($this->replyTo !== []) {
            $headers[] = 'Reply-To: ' . implode(', ', array_map([$this, 'mailbox'], $this->replyTo));
        }
        array_push(
            $headers,
            'Subject: ' . $this->encodeHeader((string) $this->Subject),
            'Message-ID: <' . bin2hex(random_bytes(16)) . '@' . $this->hostname() . '>',
            'MIME-Version: 1.0',
            'Content-Type: text/plain; charset=' . $this->CharSet,
            'Content-Transfer-Encoding: ' . ($plain ? '7bit' : 'quoted-printable'),
        );
        if (!$plain) {
            $body = quoted_printable_encode($body);
        }
        if ($body !== '' && !str_ends_with($body, "\r\n")) {
            $body .= "\r\n";
        }
        $data = implode("\r\n", $headers) . "\r\n\r\n" . $body;
        return (string) preg_replace('/^\./m', '..', $data);
    }

    // --- SMTP -------------------------------------------------------------------------------------------

    private function smtpSend(string $data): void
    {
        $host = trim((string) $this->Host);
        $port = (int) $this->Port > 0 ? (int) $this->Port : 25;
        $secure = strtolower(trim((string) $this->SMTPSecure));
        if (!in_array($secure, ['', 'tls', 'ssl'], true)) {
            throw new MyMailerError("SMTP Error: SMTP_SECURE '$secure' is none of '', 'tls', 'ssl'");
        }
        if ($host === '') {
            throw new MyMailerError('SMTP Error: no SMTP host (SMTP_HOST is empty)');
        }
        $this->connect($host, $port);
        if ($secure === 'ssl') {
            $this->startTls($host);
        }
        $this->expect(null, [220]);
        $this->ehlo();
        if ($secure === 'tls' || ($secure === '' && $this->SMTPAutoTLS && isset($this->extensions['STARTTLS']))) {
            if (!isset($this->extensions['STARTTLS'])) {
                throw new MyMailerError("SMTP Error: $host does not offer STARTTLS (SMTP_SECURE is 'tls')");
            }
            $this->expect('STARTTLS', [220]);
            $this->startTls($host);
            $this->ehlo();
        }
        if ($this->SMTPAuth) {
            $this->authenticate();
        }
        $this->expect('MAIL FROM:<' . $this->From . '>', [250]);
        foreach ($this->to as [$address]) {
            $this->expect("RCPT TO:<$address>", [250, 251]);
        }
        $this->expect('DATA', [354]);
        $this->expect($data . ".\r\n", [250]);
        $this->write("QUIT\r\n");
        try {
            $this->reply();
        } catch (MyMailerError) {
            // The message is accepted; how the server says goodbye does not matter.
        }
        fclose($this->socket);
        $this->socket = null;
    }

    private function connect(string $host, int $port): void
    {
        $ssl = [
            'verify_peer' => true,
            'verify_peer_name' => true,
            'peer_name' => $host,
            'allow_self_signed' => false,
            'SNI_enabled' => true,
        ];
        // Without cafile (and openssl.cafile unset), PHP uses OpenSSL's default verify paths, which read
        // SSL_CERT_FILE and SSL_CERT_DIR; the file is also named here so it holds whatever PHP does.
        $bundle = getenv('SSL_CERT_FILE');
        if (is_string($bundle) && $bundle !== '') {
            $ssl['cafile'] = $bundle;
        }
        $address = str_contains($host, ':') && !str_starts_with($host, '[') ? "[$host]" : $host;
        $errno = 0;
        $errstr = '';
        $socket = @stream_socket_client(
            "tcp://$address:$port",
            $errno,
            $errstr,
            (float) $this->Timeout,
            STREAM_CLIENT_CONNECT,
            stream_context_create(['ssl' => $ssl])
        );
        if ($socket === false) {
            throw new MyMailerError("SMTP Error: Could not connect to SMTP host $host:$port: $errstr ($errno)");
        }
        stream_set_timeout($socket, (int) $this->Timeout);
        $this->socket = $socket;
    }

    private function startTls(string $host): void
    {
        // PHP says why in warnings (the OpenSSL error, a name mismatch), then "Failed to enable crypto": keep them all.
        $warnings = [];
        set_error_handler(static function (int $no, string $message) use (&$warnings): bool {
            $message = preg_replace(['/^stream_socket_enable_crypto\(\): /', '/\s+/'], ['', ' '], $message);
            $warnings[] = trim((string) $message);
            return true;
        });
        try {
            $methods = STREAM_CRYPTO_METHOD_TLSv1_2_CLIENT | STREAM_CRYPTO_METHOD_TLSv1_3_CLIENT;
            $done = stream_socket_enable_crypto($this->socket, true, $methods);
        } finally {
            restore_error_handler();
        }
        if ($done !== true) {
            $why = $warnings === [] ? 'no reason given' : implode('; ', $warnings);
            throw new MyMailerError("SMTP Error: TLS with $host failed: $why");
        }
    }

    private function ehlo(): void
    {
        [$code, $lines] = $this->command('EHLO ' . $this->hostname());
        if ($code !== 250) {
            // A server without ESMTP: plain HELO, no extensions.
            $this->expect('HELO ' . $this->hostname(), [250]);
            $this->extensions = [];
            return;
        }
        $this->extensions = [];
        foreach (array_slice($lines, 1) as $line) {
            $words = preg_split('/[\s=]+/', strtoupper(trim(substr($line, 4))), -1, PREG_SPLIT_NO_EMPTY);
            if ($words !== false && $words !== []) {
                $keyword = array_shift($words);
                $this->extensions[$keyword] = array_merge($this->extensions[$keyword] ?? [], $words);
            }
        }
    }

    private function authenticate(): void
    {
        $offered = $this->extensions['AUTH'] ?? null;
        if ($offered === null) {
            throw new MyMailerError('SMTP Error: the server offers no authentication (AUTH), yet SMTP_Auth is on');
        }
        $user = (string) $this->Username;
        $pass = (string) $this->Password;
        if (in_array('LOGIN', $offered, true)) {
            $this->expect('AUTH LOGIN', [334]);
            $this->expect(base64_encode($user), [334]);
            $this->expect(base64_encode($pass), [235]);
        } elseif (in_array('PLAIN', $offered, true)) {
            $this->expect('AUTH PLAIN ' . base64_encode("\0$user\0$pass"), [235]);
        } else {
            throw new MyMailerError(
                'SMTP Error: the server offers neither LOGIN nor PLAIN to authenticate (it offers '
                . implode(' ', $offered) . ')'
            );
        }
    }

    /** Send a line (or a DATA block: $line already ends in CRLF) and return the answer: [code, lines]. */
    private function command(?string $line): array
    {
        if ($line !== null) {
            $this->write(str_ends_with($line, "\r\n") ? $line : "$line\r\n");
        }
        return $this->reply();
    }

    /** A command whose answer must have one of $codes; any other fails with the server's answer line. */
    private function expect(?string $line, array $codes): array
    {
        [$code, $lines] = $this->command($line);
        if (!in_array($code, $codes, true)) {
            throw new MyMailerError('SMTP Error: ' . end($lines));
        }
        return [$code, $lines];
    }

    private function write(string $bytes): void
    {
        while ($bytes !== '') {
            $sent = @fwrite($this->socket, $bytes);
            if ($sent === false || $sent === 0) {
                throw new MyMailerError('SMTP Error: the connection to the server was lost while sending');
            }
            $bytes = substr($bytes, $sent);
        }
    }

    /** One answer, all its lines ("250-..." continues, "250 ..." ends it): [code, lines]. */
    private function reply(): array
    {
        $lines = [];
        for (;;) {
            $line = @fgets($this->socket);
            if ($line === false) {
                if (stream_get_meta_data($this->socket)['timed_out']) {
                    throw new MyMailerError("SMTP Error: no answer from the server within {$this->Timeout} s");
                }
                throw new MyMailerError('SMTP Error: the server closed the connection'
                    . ($lines === [] ? '' : ' after: ' . end($lines)));
            }
            $line = rtrim($line, "\r\n");
            $lines[] = $line;
            if (strlen($line) < 4 || $line[3] !== '-') {
                return [(int) substr($line, 0, 3), $lines];
            }
        }
    }
}
