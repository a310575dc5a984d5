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


def first_line(exc: BaseException) -> str:
    """One line that says what went wrong: for a JVM error, its root cause's message; for a failed
    Python task, its exception's own line."""
    java = getattr(exc, "java_exception", None)
    if java is not None:
        try:
            while java.getCause() is not None:
                java = java.getCause()
            text = str(java.getMessage() or java.getClass().getName())
        except Exception:
            text = str(exc)
    else:
        text = str(exc)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if any(line.startswith("Traceback") for line in lines):
        return lines[-1][:300]
    return lines[0][:300]
