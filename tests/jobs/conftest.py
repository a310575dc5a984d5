"""A lakehouse built once per session: synth (60 users, 40 days) -> ingest -> build.

No test writes to it: each module that trains or writes takes its own copy (`small.own_copy`),
and tests that need a table or registry in a known state make their own, so tests pass alone and
in any order. (test_train_evaluate's experiment commits new versions into its module's copy;
the module's other tests read the versions they need when they run.)"""

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
