"""deploy/cron/nightly.sh: what it refuses before any job starts (exit 2, one line naming why), and
how a failing job stops the chain.

The Airflow DAG is checked by `make test-deploy`, in a virtual environment of its own."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from downbeat.jobs.config import PROJECT_ROOT
from tests.processes import run_command

SCRIPT = PROJECT_ROOT / "deploy" / "cron" / "nightly.sh"


def nightly(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    submit = tmp_path / "spark-submit"  # not Spark: it records a call, which refused input never makes
    submit.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "calls"}\nexit 99\n')
    submit.chmod(0o755)
    env = {
        **os.environ,
        "DOWNBEAT_LANDING": str(tmp_path / "landing"),
        "DOWNBEAT_LOGS": str(tmp_path / "logs"),
        "SPARK_SUBMIT": str(submit),
    }
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize(
    ("day", "message"),
    [
        ("2026-13-01", "DAY must be YYYY-MM-DD, got '2026-13-01'"),
        ("yesterday", "DAY must be YYYY-MM-DD, got 'yesterday'"),
        ("2026-11-20", "no files for 2026-11-20: {landing}/2026-11-20 is not a folder"),
        ("2026-11-21", "no files for 2026-11-21: {landing}/2026-11-21 is empty"),
    ],
)
def test_a_bad_day_or_no_files_is_exit_2_before_any_job(tmp_path, day, message):
    (tmp_path / "landing" / "2026-11-21" / "sub").mkdir(parents=True)  # a folder without files
    done = nightly(tmp_path, day)
    assert done.returncode == 2
    expected = message.format(landing=tmp_path / "landing")
    assert done.stderr.strip().splitlines() == [f"nightly.sh: error: {expected}"]
    assert not (tmp_path / "calls").exists()


def test_a_second_run_while_one_holds_the_lock_is_exit_2(tmp_path):
    (tmp_path / "landing" / "2026-11-20").mkdir(parents=True)
    (tmp_path / "landing" / "2026-11-20" / "events.csv").write_text("user_id,ts,track_id\n")
    (tmp_path / "logs").mkdir()
    with open(tmp_path / "logs" / "nightly.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        done = nightly(tmp_path, "2026-11-20")
    assert done.returncode == 2
    assert "another nightly run holds" in done.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "calls").exists()


def test_a_failing_job_under_real_spark_submit_stops_the_chain_with_its_exit_code_and_line(tmp_path):
    """The first step through pyspark's own spark-submit (local[1]): a day whose only file has no
    valid row. spark-submit merges the job's stderr into its stdout; the script still names the line."""
    day = tmp_path / "landing" / "2026-11-20"
    day.mkdir(parents=True)
    (day / "events.jsonl").write_text('{"user_id": "u1"}\nnot json\n')
    conf = tmp_path / "nightly.yaml"
    conf.write_text(
        f"extends: {PROJECT_ROOT / 'conf' / 'local.yaml'}\n"
        f"lakehouse:\n  root: {tmp_path / 'lh'}\n"
        "spark:\n  log_level: ERROR\n"
    )
    submit = Path(sys.executable).parent / "spark-submit"
    env = {
        **os.environ,
        "DOWNBEAT_CONF": str(conf),
        "DOWNBEAT_LANDING": str(tmp_path / "landing"),
        "DOWNBEAT_LOGS": str(tmp_path / "logs"),
        "SPARK_SUBMIT": f"{submit} --master local[1]",
        "PYSPARK_PYTHON": sys.executable,
    }
    done = run_command(["bash", str(SCRIPT), "2026-11-20"], env=env, timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert (
        "ingest: failed with exit 2: downbeat: error: no row is valid events in 1 of 1 input file(s)" in last
    )
    assert str(day / "events.jsonl") in last
    assert "build: started" not in done.stdout  # the chain stopped at its first failure
    assert not (tmp_path / "lh" / "bronze" / "events").exists()
