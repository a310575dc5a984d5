"""Secrets kept out of what downbeat prints, logs and tracks.

A setting whose key names a secret (secret, password, token, credential, access key, private key,
in any case and anywhere in the config: `spark.conf`, `mlflow`, `lakehouse`, ...) is shown as
`***`, and so is the userinfo of any URI (`s3://user:pass@bucket` -> `s3://***@bucket`). The
values Spark and MLflow receive are the real ones: only what is printed (`config show`, `--json`
summaries, log lines) and what is tracked (MLflow params, tags, `config.yaml`, `spec.yaml`,
`tables.json`, checkpoints and the registered model's files) is redacted.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

MASK = "***"
SECRET_NAME = re.compile(
    r"secret|passw(or)?d|token|credential|access[._-]?key|private[._-]?key|session[._-]?key|api[._-]?key",
    re.IGNORECASE,
)
# scheme://userinfo@host: the userinfo is everything between '//' and the '@' before any '/', '?' or '#'
USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/?#@\s]+@")


def names_a_secret(key: str) -> bool:
    return bool(SECRET_NAME.search(key))


def redact_text(text: str) -> str:
    """`text` with every URI's userinfo masked."""
    return USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)


def redact(value: Any, key: str = "") -> Any:
    """A copy of `value` (a mapping, list or scalar found under `key`) with secret-named keys'
    values masked (a whole section under such a key too) and URI userinfo masked in every string."""
    if names_a_secret(key) and value not in (None, "", {}, []):
        return _masked(value)
    if isinstance(value, Mapping):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact(v, key) for v in value)
    if isinstance(value, str):
        return redact_text(value)
    return value


def redact_assignment(assignment: str) -> str:
    """A `key=value` setting (as `--set` and a spec's `set` read) with the value masked when the
    key names a secret."""
    key, sep, _ = assignment.partition("=")
    return f"{key}{sep}{MASK}" if sep and names_a_secret(key) else redact_text(assignment)


def _masked(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _masked(v) for k, v in value.items()}
    return MASK


class RedactingFilter(logging.Filter):
    """Masks URI userinfo in every log record's message (installed on the job's log handlers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True
