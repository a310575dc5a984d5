"""A lakehouse the job tests share: synth (60 users, 40 days) -> ingest -> build, once per session.

Modules that train keep their own MLflow store (under a folder of their own in the same root).
They may add tables and versions (test_registry_consumers writes gold/recommendations, and
test_train_evaluate's experiment commits new versions of two gold tables), so a test reads the
versions it needs when it runs rather than assuming version 0."""

from __future__ import annotations

from pathlib import Path

import pytest

from downbeat.jobs.cli import main
from tests.jobs.small import SHORT_SPLITS


@pytest.fixture(scope="session")
def built_lakehouse(spark, tmp_path_factory) -> Path:
    """The root folder; the lakehouse is its `lh` folder."""
    root = tmp_path_factory.mktemp("built")
    raw, lh = root / "raw", root / "lh"
    common = ["--set", f"lakehouse.root={lh}", "--set", "spark.log_level=ERROR"]
    common += [x for value in SHORT_SPLITS for x in ("--set", value)]
    assert main([*common, "synth", "--users", "60", "--days", "40", "--out", str(raw)]) == 0
    assert main([*common, "ingest", "--format", "events", "--input", str(raw)]) == 0
    assert main([*common, "build"]) == 0
    return root
