"""The two ways a command ends without doing what was asked, and the exit codes they map to."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_REFUSED = 2


class Refused(Exception):
    """The request cannot be carried out as asked, and nothing was changed (exit 2)."""


class Failed(Exception):
    """The work started and did not finish (exit 1); the message says where it stopped."""
