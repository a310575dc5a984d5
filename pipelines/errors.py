"""Error types shared by every layer; the CLI maps them to exit codes."""

from __future__ import annotations


class InputError(Exception):
    """Bad input or configuration: a missing file, an unknown key, a schema that does not fit.

    The message is one line that names the file, row, key, table or column. Exit code 2.
    """


class ConfigError(InputError):
    """A configuration file or override that cannot be used."""


class ConflictError(RuntimeError):
    """Another writer changed a table this job was writing, and this job committed nothing there.

    The remedy is to run the job again (the jobs are idempotent). One line, exit code 2.
    """
