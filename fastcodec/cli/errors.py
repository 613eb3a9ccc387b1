"""How the command reports problems: its exit statuses, the usage error (status 2) and a one-line
description of any exception."""

from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """A problem with the command line itself (exit status 2), found before any file is written."""


def describe_error(exc: BaseException) -> str:
    """One line saying what went wrong."""
    text = str(exc).strip() or type(exc).__name__
    if not isinstance(exc, (OSError, ValueError, TypeError)):
        text = f"{type(exc).__name__}: {text}"
    return " ".join(text.split())
