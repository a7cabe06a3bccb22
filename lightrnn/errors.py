"""Errors the command line prints as one line (no traceback; LIGHTRNN_DEBUG=1 shows it)."""

from __future__ import annotations


class UsageError(Exception):
    """A bad option or input named in a message that says what to do; printed without a traceback."""
