"""The nightly DAG as Airflow loads it (`make test-deploy`: Airflow in its own virtual environment)."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[1] / "airflow"


@pytest.fixture(scope="module")
def dag(tmp_path_factory):
    import os

    home = tmp_path_factory.mktemp("airflow")
    os.environ.update({"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})
    from airflow.models.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS), include_examples=False)
    assert bag.import_errors == {}
    return bag.dags["downbeat_nightly"]


def test_the_chain_is_ingest_build_train_evaluate_then_the_champion_gate(dag):
    order = ["ingest", "build", "train", "evaluate", "champion_gate"]
    assert sorted(dag.task_ids) == sorted(order)
    for upstream, downstream in itertools.pairwise(order):
        assert dag.get_task(upstream).downstream_task_ids == {downstream}
    assert dag.max_active_runs == 1 and not dag.catchup


def test_the_run_at_0230_utc_handles_the_day_before(dag):
    import pendulum

    run_after = pendulum.datetime(2026, 11, 24, 2, 30, tz="UTC")
    interval = dag.timetable.infer_manual_data_interval(run_after=run_after)
    assert interval.start.to_date_string() == "2026-11-23"  # {{ ds }}: the day ingested and rebuilt
    assert interval.end == run_after
    after = dag.timetable.next_dagrun_info(last_automated_data_interval=interval, restriction=_unclipped())
    assert after is not None and after.run_after == run_after.add(days=1)
    assert after.data_interval.start.to_date_string() == "2026-11-24"


def _unclipped():
    """A restriction that answers from the interval it is given: with catchup=False the timetable
    skips ahead to the latest run before *now* (the wall clock), so the answer would depend on the
    day the test runs. The DAG's own catchup=False is asserted in the chain test."""
    from airflow.timetables.base import TimeRestriction

    return TimeRestriction(earliest=None, latest=None, catchup=True)


def test_each_task_submits_one_job_file_with_retries_and_prints_its_summary(dag):
    jobs = {t.task_id: t for t in dag.tasks}
    for task in jobs.values():
        assert type(task).__name__ == "SparkSubmitOperator"
        assert task.retries >= 1 and task.retry_delay == dt.timedelta(minutes=10)
        assert task.application_args[-1] == "--json"
        assert task.application_args[0] == "--conf"
        assert "io.delta:delta-spark_2.13:4.0.1,org.apache.hadoop:hadoop-aws:3.4.1" in task.packages
    assert jobs["ingest"].application.endswith("/jobs/ingest.py")
    assert jobs["champion_gate"].application.endswith("/jobs/compare.py")
    # the day's range, from the run's logical date, so that a rerun of a day rebuilds that day
    build_args = jobs["build"].application_args
    assert build_args[2:6] == ["--from-date", "{{ ds }}", "--to-date", "{{ ds }}"]
    assert "{{ ds }}" in jobs["ingest"].application_args[5]
