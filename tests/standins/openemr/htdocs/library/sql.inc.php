<?php

/**
 * Shuttle test stand-in for OpenEMR's library/sql.inc.php: the global query functions every OpenEMR script
 * uses once interface/globals.php has loaded the site (sqlStatement, sqlQuery, sqlFetchArray).
 *
 * Same contract as the real ones: `?` placeholders bound from $binds (never spliced into the SQL),
 * sqlQuery gives the first row as an associative array or false. The real functions die on a database
 * error; here the connection throws (mysqli_sql_exception), which ends a script just as visibly.
 */

declare(strict_types=1);

require_once __DIR__ . '/standin.inc.php';

/** The site's database connection, opened on first use (sites/default/sqlconf.php must say `$config = 1`). */
function oe_sql_link(): mysqli
{
    static $link = null;
    if ($link === null) {
        $conf = oe_sqlconf();
        if (!$conf['configured']) {
            throw new RuntimeException('OpenEMR site is not configured (sqlconf.php has $config = 0): no database');
        }
        $link = oe_db($conf);
        $GLOBALS['dbh'] = $link;
    }
    return $link;
}

/**
 * Run one statement with bound parameters. Returns the mysqli_result of a statement that yields rows
 * (SELECT, SHOW, ...), true for the others.
 *
 * @param array|false|null $binds values for the `?` placeholders, in order (false/null: none, as the real default)
 */
function sqlStatement(string $statement, array|false|null $binds = []): mysqli_result|bool
{
    $binds = is_array($binds) ? array_values($binds) : [];
    $stmt = oe_sql_link()->prepare($statement);
    if ($binds !== []) {
        $types = '';
        foreach ($binds as $i => $value) {
            if (is_bool($value)) {
                $binds[$i] = (int) $value;
                $types .= 'i';
            } elseif (is_int($value)) {
                $types .= 'i';
            } elseif (is_float($value)) {
                $types .= 'd';
            } else {
                $binds[$i] = $value === null ? null : (string) $value;
                $types .= 's';
            }
        }
        $stmt->bind_param($types, ...$binds);
    }
    $stmt->execute();
    $result = $stmt->get_result();
    $stmt->close();
    return $result === false ? true : $result;
}

/** The first row of a query as an associative array (column => value), or false when there is none. */
function sqlQuery(string $statement, array|false|null $binds = []): array|false
{
    $result = sqlStatement($statement, $binds);
    if (!$result instanceof mysqli_result) {
        return false;
    }
    $row = $result->fetch_assoc();
    $result->free();
    return $row ?? false;
}

/** The next row of a sqlStatement() result as an associative array, or false after the last one. */
function sqlFetchArray(mixed $result): array|false
{
    if (!$result instanceof mysqli_result) {
        return false;
    }
    return $result->fetch_assoc() ?? false;
}
