"""Secrets masked in what is printed and tracked: by the key's name, and a URI's userinfo."""

from __future__ import annotations

import logging

from downbeat.models.redaction import MASK, RedactingFilter, redact, redact_assignment, redact_text


def test_values_under_secret_named_keys_are_masked_in_any_case_and_section():
    config = {
        "spark": {
            "conf": {
                "spark.hadoop.fs.s3a.secret.key": "s3-secret",
                "spark.hadoop.fs.s3a.access.key": "AKIA123",
                "spark.hadoop.fs.s3a.session.token": "tok",
                "spark.sql.shuffle.partitions": "4",
            }
        },
        "mlflow": {"Password": "pw", "tracking_uri": "postgresql://user:pw2@db:5432/mlflow"},
        "lakehouse": {"root": "s3://AKIA:secret@bucket/lh", "credentials": {"a": "x", "b": {"c": "y"}}},
        "model": {"dim": 8, "api_key": ""},
    }

    masked = redact(config)

    assert masked["spark"]["conf"] == {
        "spark.hadoop.fs.s3a.secret.key": MASK,
        "spark.hadoop.fs.s3a.access.key": MASK,
        "spark.hadoop.fs.s3a.session.token": MASK,
        "spark.sql.shuffle.partitions": "4",
    }
    assert masked["mlflow"] == {"Password": MASK, "tracking_uri": f"postgresql://{MASK}@db:5432/mlflow"}
    assert masked["lakehouse"] == {
        "root": f"s3://{MASK}@bucket/lh",
        "credentials": {"a": MASK, "b": {"c": MASK}},
    }
    assert masked["model"] == {"dim": 8, "api_key": ""}  # nothing to hide
    assert config["spark"]["conf"]["spark.hadoop.fs.s3a.secret.key"] == "s3-secret"  # a copy


def test_userinfo_is_masked_in_free_text_and_paths_without_it_are_left_alone():
    text = "read s3://u:p@bucket/a and https://token@host/x?y=1, wrote /tmp/a@b and s3://bucket/c@d"

    assert redact_text(text) == (
        f"read s3://{MASK}@bucket/a and https://{MASK}@host/x?y=1, wrote /tmp/a@b and s3://bucket/c@d"
    )
    assert redact_assignment("spark.conf.fs.s3a.secret.key=abc") == f"spark.conf.fs.s3a.secret.key={MASK}"
    assert redact_assignment("model.dim=8") == "model.dim=8"


def test_log_records_lose_their_userinfo():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "opened %s", ("s3://k:s@b/t",), None)

    assert RedactingFilter().filter(record)
    assert record.getMessage() == f"opened s3://{MASK}@b/t"
