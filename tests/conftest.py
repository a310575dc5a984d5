"""One Spark session for the whole suite, configured like Delta's own test base: local, UI off,
few shuffle partitions. Tables live in tmp_path."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings
from pyspark.sql import SparkSession

from downbeat.pipelines.lakehouse import DeltaSettings
from downbeat.pipelines.spark import SparkSettings, spark_session

settings.register_profile(
    "fast", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
# `HYPOTHESIS_PROFILE=thorough make test`: the parsers' properties at 200 files each
settings.register_profile(
    "thorough", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    session = spark_session(
        SparkSettings(
            master="local[2]",
            app_name="downbeat-tests",
            driver_memory="2g",
            shuffle_partitions=2,
            log_level="ERROR",
            conf={"spark.ui.enabled": "false", "spark.sql.adaptive.enabled": "false"},
        ),
        # The connector from the set-up cache (`make test` resolves it first): both engines are available.
        DeltaSettings(engine="auto", packages=None, jars_dir=None),
    )
    yield session
    session.stop()


@pytest.fixture(autouse=True)
def _session_settings_restored() -> Iterator[None]:
    """Commands run through the CLI apply their config to the running session; undo that after."""
    yield
    session = SparkSession.getActiveSession()
    if session is not None:
        session.conf.set("spark.sql.shuffle.partitions", "2")
        session.conf.set("spark.sql.adaptive.enabled", "false")


@pytest.fixture(autouse=True)
def _no_stream_handler_outlives_its_test() -> Iterator[None]:
    """A test that opens a fresh MLflow store outside downbeat's own calls (which keep the logging
    setup: models/tracking.py kept_logging) lets alembic's fileConfig put on the root logger a
    handler bound to that test's captured stderr; a later test would log into the closed stream."""
    root = logging.getLogger()
    before = set(root.handlers)
    yield
    for handler in list(root.handlers):
        if handler not in before and type(handler) is logging.StreamHandler:
            root.removeHandler(handler)


_FAILED: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.failed:
        _FAILED.append(f"{report.nodeid} ({report.when})")


def pytest_unconfigure(config: pytest.Config) -> None:
    """The failed tests' ids, one line each, after everything pytest prints: a log read from its
    tail (CI's) names them even when an assertion's diff fills the summary above."""
    if _FAILED:
        print("\nfailed:\n" + "\n".join(f"  {name}" for name in _FAILED), flush=True)
