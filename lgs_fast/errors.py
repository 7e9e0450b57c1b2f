"""One exception family: the CLI turns any `LgsError` into a one-line message and exit code."""

from __future__ import annotations


class LgsError(Exception):
    """Base of every error lgs_fast raises on purpose (bad input, bad configuration)."""

    exit_code = 1


class InputError(LgsError):
    """An input file does not fit the canonical schema; the message names file, row and column."""

    exit_code = 2


class LakeError(LgsError):
    """The lake is missing, unreadable or its manifest does not match its files."""

    exit_code = 3


class SourceError(LgsError):
    """A database source failed (connection, missing table or column, server gone)."""

    exit_code = 4
