"""`downbeat doctor`: checks that this machine can run downbeat: a scratch table written, read back
and deleted under the lakehouse root (local or remote), the MLflow tracking store read, and a probe
file through MLflow's artifact store. A storage or tracking check that fails is exit 2, one line.

Also runnable as `spark-submit jobs/doctor.py [--conf FILE] [--set key=value]`.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pyarrow.fs as pafs
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from downbeat.jobs.common import config_from, job_main
from downbeat.jobs.config import Config
from downbeat.models.contract import Tables
from downbeat.pipelines.errors import InputError, first_line
from downbeat.pipelines.lakehouse import Lakehouse, connector_available
from downbeat.pipelines.lakehouse._core import file_url
from downbeat.pipelines.spark import spark_session


def run(spark: SparkSession, cfg: Config) -> list[tuple[str, str]]:
    """Each check as (name, finding); a storage or tracking check that fails is bad input (exit 2)
    naming the root or URI and the cause."""
    lakehouse = Lakehouse.from_settings(spark, cfg.lakehouse, cfg.delta)
    why = "connector classes load" if connector_available(spark) else "connector classes not on the classpath"
    return [
        ("python", f"{platform.python_version()} ({sys.executable})"),
        ("java", _java_version()),
        ("spark", f"{spark.version}, master {spark.sparkContext.master}"),
        ("delta", f"engine {lakehouse.engine} (delta.engine={cfg.delta.engine}: {why})"),
        ("lakehouse", _lakehouse_round_trip(spark, lakehouse)),
        ("mlflow", _tracking_store(cfg.mlflow.tracking_uri)),
        ("artifacts", _artifact_round_trip(cfg.mlflow.artifact_root)),
    ]


def _lakehouse_round_trip(spark: SparkSession, lakehouse: Lakehouse) -> str:
    """A scratch table under the root itself (local or remote), written twice with the configured
    engine, read back, then deleted."""
    scratch = f"{lakehouse.root}/_doctor-{uuid.uuid4().hex[:12]}"
    fs = None
    try:
        fs, base = pafs.FileSystem.from_uri(file_url(scratch))
        probe = Lakehouse(spark, scratch, lakehouse.engine)
        rows = spark.range(5).select(F.col("id"), (F.col("id") % 2 == 0).alias("even"))
        probe.write(rows, Tables.DOCTOR, mode="overwrite")
        commit = probe.write(rows.where("even"), Tables.DOCTOR, mode="append")
        read_back = probe.read(Tables.DOCTOR).count()
    except Exception as exc:
        raise InputError(
            f"lakehouse root {lakehouse.root}: a scratch table failed: {first_line(exc)}"
        ) from exc
    finally:
        if fs is not None:
            with contextlib.suppress(Exception):  # after a failure too; the check below says if it stayed
                fs.delete_dir(base)
    if read_back != 8:
        raise InputError(
            f"lakehouse root {lakehouse.root}: the scratch table read {read_back} rows, expected 8"
        )
    if fs.get_file_info(base).type != pafs.FileType.NotFound:
        raise InputError(f"lakehouse root {lakehouse.root}: the scratch table {scratch} could not be deleted")
    return f"{lakehouse.root}: wrote 5 + 3 rows, read {read_back} back at version {commit.version}, deleted"


def _tracking_store(uri: str) -> str:
    from mlflow.tracking import MlflowClient

    from downbeat.models.tracking import kept_logging

    try:
        with kept_logging():
            found = MlflowClient(uri).search_experiments(max_results=1000)
    except Exception as exc:
        raise InputError(f"mlflow.tracking_uri {uri}: {first_line(exc)}") from exc
    return f"{uri}: {len(found)} experiment(s) readable"


def _artifact_round_trip(root: str) -> str:
    """A probe file through MLflow's own artifact repository for `mlflow.artifact_root`: logged,
    listed, then deleted."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    where = root if "://" in root else str(Path(root).resolve())
    scratch = f"{where.rstrip('/')}/_doctor-{uuid.uuid4().hex[:12]}"
    try:
        repository = get_artifact_repository(scratch)
        with tempfile.TemporaryDirectory(prefix="downbeat-doctor-") as folder:
            probe = Path(folder) / "probe.txt"
            probe.write_text("downbeat doctor\n")
            repository.log_artifact(str(probe))
        try:
            listed = [a.path for a in repository.list_artifacts()]
        finally:
            repository.delete_artifacts()
        left = [a.path for a in repository.list_artifacts()]
    except Exception as exc:
        raise InputError(f"mlflow.artifact_root {root}: {first_line(exc)}") from exc
    if listed != ["probe.txt"]:
        raise InputError(f"mlflow.artifact_root {root}: a probe file was listed as {listed}")
    if left:
        raise InputError(f"mlflow.artifact_root {root}: the probe {scratch} could not be deleted")
    return f"{where}: wrote, listed and deleted a probe file"


def _java_version() -> str:
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False).stderr
    except FileNotFoundError:
        return "not found"
    return out.splitlines()[0] if out else "unknown"


def command(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    spark = spark_session(cfg.spark, cfg.delta)
    for name, finding in run(spark, cfg):
        print(f"{name:<11}{finding}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return job_main("doctor", __doc__, command, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
