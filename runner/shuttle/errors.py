"""Errors the CLI turns into exit codes (the README's table: 0 done, 1 host failed, 2 bad input, 3 unreachable).

130 means interrupted.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_HOST_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130


class BadInput(Exception):
    """Something the user gave is wrong; raised before any host is touched. Message: one line per problem."""
