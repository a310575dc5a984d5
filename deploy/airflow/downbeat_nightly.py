"""Airflow DAG `downbeat_nightly`: the nightly chain through `spark-submit`.

ingest the day's files -> build that day's range -> train -> evaluate the candidate -> champion
gate. The day is the start of the run's data interval: the run at 02:30 UTC handles the day
before. Each task runs one downbeat job file (`jobs/<name>.py`) with `SparkSubmitOperator`, so the
cluster's `spark-submit` settings (master, deploy mode, executors) come from the Airflow Spark
connection, and the job ends with its `--json` run summary in the task log.

Every task can be retried or the whole day rerun: ingest merges on event ids (the same files add
nothing), build rewrites the day's range from silver/plays, evaluate and compare only read. A
retried train logs a second run and registers a second candidate version. The gate itself is in
train: only a candidate better on validation data takes the champion alias. The last task,
`champion_gate`, compares candidate with champion on the test tables for the record (the task
log), and fails the run (exit 2) when either alias is missing.

The first night needs silver/plays: run one full `build` (no dates) before enabling the DAG;
`build --from-date` without it is exit 2 saying so. A day's folder should hold that day's events:
build rebuilds the day's range only (a late event of another day waits for a rebuild of its day).

Settings (Airflow Variables, read when a task runs, with these defaults):
    downbeat_home      /opt/downbeat               the checkout (jobs/, conf/) on the workers, where
                                                   downbeat is also installed (`pip install .`)
    downbeat_conf      /opt/downbeat/conf/cluster.yaml   the config file (an absolute path)
    downbeat_landing   /data/landing               the day's files arrive in {landing}/{ds}/
    downbeat_format    events                      ingest --format
    downbeat_model     hybrid                      train --model
    downbeat_registered_model  downbeat            mlflow.registered_model of the config
    downbeat_packages  io.delta:delta-spark_2.13:4.0.1,org.apache.hadoop:hadoop-aws:3.4.1
                       spark-submit --packages: the Delta connector and S3A for s3:// roots
Spark connection: `spark_default` (e.g. spark://host:7077 or yarn).
"""

from __future__ import annotations

import datetime as dt

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.timetables.interval import CronDataIntervalTimetable

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG

DAG_ID = "downbeat_nightly"
# The day whose files are ingested and rebuilt: the start of the run's data interval, which the
# schedule below makes the day before the run (Airflow 3's default cron timetable would make it
# the run's own day).
DAY = "{{ ds }}"


def var(name: str, default: str) -> str:
    """An Airflow Variable, read when the task runs (a template), not each time the DAG is parsed."""
    return f"{{{{ var.value.get('{name}', '{default}') }}}}"


HOME = var("downbeat_home", "/opt/downbeat")
CONF = var("downbeat_conf", "/opt/downbeat/conf/cluster.yaml")
LANDING = var("downbeat_landing", "/data/landing")
FORMAT = var("downbeat_format", "events")
MODEL = var("downbeat_model", "hybrid")
REGISTERED = var("downbeat_registered_model", "downbeat")
PACKAGES = var("downbeat_packages", "io.delta:delta-spark_2.13:4.0.1,org.apache.hadoop:hadoop-aws:3.4.1")


def job(task_id: str, name: str, *args: str, retries: int = 2) -> SparkSubmitOperator:
    """One downbeat job through spark-submit; its last log line is its --json summary."""
    return SparkSubmitOperator(
        task_id=task_id,
        application=f"{HOME}/jobs/{name}.py",
        application_args=["--conf", CONF, *args],
        name=f"downbeat-{task_id}-{DAY}",
        conn_id="spark_default",
        packages=PACKAGES,  # under spark-submit the driver JVM's classpath is spark-submit's
        retries=retries,
        retry_delay=dt.timedelta(minutes=10),
        retry_exponential_backoff=True,
    )


with DAG(
    dag_id=DAG_ID,
    description="downbeat: ingest, build, train, evaluate and the champion gate, once a day",
    schedule=CronDataIntervalTimetable("30 2 * * *", timezone="UTC"),  # 02:30 UTC, for the day before
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,  # one night at a time: each run's build reads the previous one's tables
    default_args={"owner": "downbeat"},
    tags=["downbeat"],
) as dag:
    ingest = job("ingest", "ingest", "--format", FORMAT, "--input", f"{LANDING}/{DAY}", "--json")
    build = job("build", "build", "--from-date", DAY, "--to-date", DAY, "--json")
    train = job("train", "train", "--model", MODEL, "--json", retries=1)
    evaluate = job("evaluate", "evaluate", "--model-uri", f"models:/{REGISTERED}@candidate", "--json")
    gate = job(
        "champion_gate",
        "compare",
        "--model-uri",
        f"models:/{REGISTERED}@candidate",
        "--model-uri",
        f"models:/{REGISTERED}@champion",
        "--json",
    )
    ingest >> build >> train >> evaluate >> gate
